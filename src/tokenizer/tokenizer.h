// Byte-level BPE tokenizer, id-for-id compatible with Hugging Face `tokenizers` for tokenizer.json files
// of the GPT-2 / GPT-NeoX family (BPE model, ByteLevel pre-tokenizer, optional Unicode normaliser,
// added and special tokens), and for OpenAI-style vocab.json + merges.txt pairs.
//
// Encoding follows Hugging Face's order of operations:
//   1. added tokens with normalized=false are matched (leftmost-longest) on the raw text;
//   2. each remaining piece is normalised (NFC for GPT-NeoX), then added tokens with normalized=true
//      are matched on the normalised text;
//   3. each remaining piece is split with the pre-tokenizer regex (GPT-2's pattern by default);
//   4. each split is BPE-merged over its UTF-8 bytes, lowest merge rank first, leftmost on ties.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace txs {

class Tokenizer {
 public:
  // `path` is a tokenizer.json, a vocab.json (with merges.txt beside it), or a folder holding either.
  // Throws txs::Error naming the file on any problem.
  static Tokenizer from_file(const std::string& path);
  // `origin` names the source in error messages.
  static Tokenizer from_json(const nlohmann::json& j, const std::string& origin);
  static Tokenizer from_json_text(std::string_view text, const std::string& origin);
  static Tokenizer from_vocab_merges(const std::string& vocab_json, const std::string& merges_txt);

  // Text must be valid UTF-8 (throws txs::Error with the byte offset otherwise). Large texts are
  // encoded in parallel chunks (OpenMP, txs::num_threads()); the ids do not depend on the thread count.
  std::vector<int32_t> encode(std::string_view text) const;
  // Single-threaded encode, appending to `out`; safe to call from many threads at once.
  void encode_into(std::string_view text, std::vector<int32_t>& out) const;
  // Hugging Face's pre-tokenisation without the BPE step (the trainer counts these): on_piece gets
  // each pre-token's bytes, on_added each added token's id, in text order. Text must be valid UTF-8.
  void pre_tokenize(std::string_view text, const std::function<void(std::string_view)>& on_piece,
                    const std::function<void(int32_t)>& on_added) const;
  // The raw bytes the ids stand for (Hugging Face's ByteLevel decoder without the lossy UTF-8 step).
  // Throws txs::Error for an id outside the vocabulary.
  std::string decode(const std::vector<int32_t>& ids) const;
  // Bytes of one token.
  const std::string& token_bytes(int32_t id) const;
  bool has_id(int32_t id) const;

  int64_t vocab_size() const;  // max id + 1, added tokens included
  int32_t eos_id() const;      // <|endoftext|>, <|end_of_text|>, </s> or <eos>; -1 if none
  // id of a token given by its text (added token content, or the token's bytes); nullopt if none.
  std::optional<int32_t> token_to_id(std::string_view text) const;
  // Stable hash of what determines the ids (vocabulary, merges, added tokens, normaliser, pattern),
  // not of the file's bytes: the same tokenizer written differently hashes the same.
  std::string hash() const;
  const std::string& origin() const;

  // Positions at which `text` can be cut so that encoding the pieces separately and concatenating
  // gives exactly the ids of the whole: between a printable ASCII character and an ASCII space, tab,
  // CR or LF, where no pre-token, normaliser composition or added token can span the cut (the proof is
  // in tokenizer.cpp, at `chunkable`). Empty when the tokenizer's configuration gives no such
  // guarantee (a custom split pattern, add_prefix_space, added tokens with lstrip/rstrip/single_word).
  // Returns ascending cut offsets (not including 0 or text.size()) about `target_bytes` apart.
  std::vector<size_t> safe_cuts(std::string_view text, size_t target_bytes) const;
  // The first safe cut at or after `pos`, or text.size() if there is none.
  size_t next_safe_cut(std::string_view text, size_t pos) const;

  // Decodes a stream of ids for generation: push() returns the bytes that are ready, holding back a
  // UTF-8 sequence that is not finished yet (its remaining bytes may come with the next token).
  // Bytes that can never become valid UTF-8 are passed through as they are, so the concatenation of
  // every push() and the final flush() equals decode(all ids).
  class StreamDecoder {
   public:
    explicit StreamDecoder(const Tokenizer& tok) : tok_(&tok) {}
    std::string push(int32_t id);
    std::string flush();

   private:
    const Tokenizer* tok_;
    std::string pending_;
  };

  struct Impl;

 private:
  explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

}  // namespace txs
