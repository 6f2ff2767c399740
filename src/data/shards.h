// Token shards on disk: each split ("train", "val") is a list of files `<split>_NNNNNN.bin` holding raw
// little-endian uint16 (vocabulary <= 65536) or uint32 ids, described by `manifest.json`:
//
//   {"format": "transxssm-tokens", "version": 1, "dtype": "uint16",
//    "tokenizer": {"hash": "...", "vocab_size": 50277, "eos_id": 0, "path": "..."},
//    "splits": {"train": {"tokens": N, "shards": [{"file": "train_000000.bin", "tokens": n}, ...]},
//               "val":   {...}},
//    "documents": D, "input_bytes": B, "val_fraction": f, "inputs": [...]}
//
// The manifest is written last, so a folder whose preparation was interrupted has none and is refused.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "data/token_source.h"
#include "tokenizer/mapped_file.h"

namespace txs {

constexpr const char* kManifestName = "manifest.json";
constexpr const char* kManifestFormat = "transxssm-tokens";
constexpr int kManifestVersion = 1;

enum class TokenDType { U16, U32 };
const char* token_dtype_name(TokenDType t);
size_t token_dtype_size(TokenDType t);
TokenDType token_dtype_for_vocab(int64_t vocab_size);

struct ShardInfo {
  std::string file;  // name inside the folder
  int64_t tokens = 0;
};

// Appends ids to `<dir>/<split>_NNNNNN.bin`, starting a new file every `shard_tokens` tokens.
class ShardWriter {
 public:
  ShardWriter(std::string dir, std::string split, TokenDType dtype, int64_t shard_tokens);
  ~ShardWriter();
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;
  void append(const int32_t* ids, size_t n);
  // Flushes and closes; returns the shards written (none when nothing was appended).
  std::vector<ShardInfo> finish();
  int64_t tokens() const { return total_; }

 private:
  void open_next();
  void close_current();
  std::string dir_, split_;
  TokenDType dtype_;
  int64_t shard_tokens_;
  std::FILE* file_ = nullptr;
  std::vector<ShardInfo> shards_;
  std::vector<uint8_t> staging_;
  int64_t total_ = 0;
};

// A split opened from its shards (see open_prepared() in token_source.h).
class ShardedTokens : public TokenSource {
 public:
  ShardedTokens(const std::string& dir, const std::vector<ShardInfo>& shards, TokenDType dtype);
  int64_t size() const override { return total_; }
  void read(int64_t offset, int64_t n, int32_t* out) const override;

 private:
  std::vector<MappedFile> files_;
  std::vector<int64_t> starts_;  // first token of each shard; starts_.back() == total_
  TokenDType dtype_;
  int64_t total_ = 0;
};

}  // namespace txs
