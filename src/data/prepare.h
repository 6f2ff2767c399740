// `transxssm prepare`: tokenises a corpus into train/val token shards (see data/shards.h).
//
// Documents: every input file is one document, except `.jsonl` files, where each non-empty line is a
// JSON object whose `jsonl_field` string is one document. Folders are walked recursively in sorted
// order (hidden entries skipped). The end-of-document token follows every document.
//
// Validation split: the last `val_fraction` of the input bytes, in input order. The document that holds
// the split point is cut at the first exact cut point (Tokenizer::next_safe_cut) after it.
//
// Memory stays bounded for any corpus size: text files are memory-mapped, cut into ~1 MB pieces that are
// encoded in parallel (OpenMP) a batch at a time and appended to the shards in input order, so the
// shards do not depend on the thread count.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace txs {

struct PrepareOptions {
  std::vector<std::string> inputs;  // files and folders
  std::string out_dir;
  double val_fraction = 0.05;
  int64_t shard_tokens = 100'000'000;
  std::string jsonl_field = "text";
  size_t piece_bytes = size_t(1) << 20;  // target size of the pieces encoded in parallel
  size_t batch_bytes = size_t(64) << 20;  // text encoded between two writes
  std::string tokenizer_path;             // recorded in the manifest
  std::function<void(int64_t bytes_done, int64_t bytes_total)> progress;  // optional
};

struct PrepareResult {
  int64_t documents = 0, input_bytes = 0, train_tokens = 0, val_tokens = 0;
  std::string dtype;
  double seconds = 0;
};

// Lists the files an input list stands for (folders expanded); throws txs::Error for a missing path.
std::vector<std::string> expand_inputs(const std::vector<std::string>& inputs);

PrepareResult prepare(const Tokenizer& tokenizer, const PrepareOptions& options);

}  // namespace txs
