// Read-only sequences of token ids for training and evaluation: an in-memory array, or the memory-mapped
// shards that `transxssm prepare` writes. Random access, so the trainer can sample windows anywhere with
// its own seed-driven sampler and resume exactly from its recorded position.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace txs {

class TokenSource {
 public:
  virtual ~TokenSource() = default;
  virtual int64_t size() const = 0;  // number of tokens
  // Copies tokens [offset, offset + n) to out; throws txs::Error when the range is outside [0, size()).
  virtual void read(int64_t offset, int64_t n, int32_t* out) const = 0;
};

class InMemoryTokens : public TokenSource {
 public:
  explicit InMemoryTokens(std::vector<int32_t> ids) : ids_(std::move(ids)) {}
  int64_t size() const override { return int64_t(ids_.size()); }
  void read(int64_t offset, int64_t n, int32_t* out) const override;
  const std::vector<int32_t>& ids() const { return ids_; }

 private:
  std::vector<int32_t> ids_;
};

// Opens the "train" or "val" split of a `transxssm prepare` output folder (manifest.json + shards),
// reading across shard boundaries transparently. When `expected_tokenizer_hash` is not empty it must
// equal the manifest's tokenizer hash (Tokenizer::hash()); otherwise a txs::Error names the folder.
std::unique_ptr<TokenSource> open_prepared(const std::string& dir, const std::string& split,
                                           const std::string& expected_tokenizer_hash = "");

// What the trainer needs to know about a prepared folder without opening its shards.
struct PreparedInfo {
  int64_t vocab_size = 0;      // the tokenizer's vocabulary size (max id + 1)
  std::string tokenizer_hash;  // Tokenizer::hash() of the tokenizer that made the shards
  int32_t eos_id = -1;         // the end-of-document token placed between documents
  std::string dtype;           // "uint16" or "uint32"
  int64_t train_tokens = 0, val_tokens = 0;
};
PreparedInfo read_prepared_info(const std::string& dir);

}  // namespace txs
