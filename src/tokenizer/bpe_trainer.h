// Learns a byte-level BPE tokenizer from text files and writes it as a Hugging Face tokenizer.json
// (NFC normaliser, ByteLevel pre-tokenizer with GPT-2's pattern, BPE model), so that Hugging Face
// tokenizers and our Tokenizer load it and encode identically.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace txs {

struct BpeTrainerOptions {
  int64_t vocab_size = 8192;  // special tokens + 256 bytes + merges
  std::vector<std::string> special_tokens = {"<|endoftext|>"};  // ids 0.., never split, never merged
  int64_t min_frequency = 2;  // stop when the most frequent pair occurs fewer times than this
};

struct BpeTrainerResult {
  nlohmann::ordered_json tokenizer;  // the tokenizer.json document
  int64_t words = 0;                 // distinct pre-tokens counted
  int64_t merges = 0;
  int64_t input_bytes = 0;
};

// Reads every file (valid UTF-8 required; throws txs::Error naming a file that is not), counts its
// pre-tokens in parallel, then merges the most frequent adjacent pair until the vocabulary is full.
// Ties between equally frequent pairs go to the pair of smaller ids (ids are assigned in a fixed
// order), so the result does not depend on the thread count or on hash order.
BpeTrainerResult train_bpe(const std::vector<std::string>& files, const BpeTrainerOptions& options);

// Same, from texts in memory (used by the tests).
BpeTrainerResult train_bpe_from_texts(const std::vector<std::string>& texts, const BpeTrainerOptions& options);

}  // namespace txs
