// Where training tokens come from: plain text files (UTF-8 bytes as tokens, or a tokenizer.json) split
// into train and validation, or the shards of `transxssm prepare`. Batches are windows drawn by a
// seed-driven, position-addressable sampler, so a run's data position is just its step number.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/token_source.h"

namespace txs {

struct TrainingData {
  std::unique_ptr<TokenSource> train, val;
  int64_t vocab_size = 256;  // tokens the data can hold (before padding)
  std::string description;   // shown to the user and stored in the train state
  std::string tokenizer;     // tokenizer.json path, or "" for UTF-8 bytes
  bool utf8_bytes = false;   // text read as UTF-8 bytes (no tokenizer); false for prepared shards
};

// paths: text files or directories of .txt files, or one directory written by `transxssm prepare`.
TrainingData load_training_data(const std::vector<std::string>& paths, const std::string& tokenizer_path,
                                double val_fraction);

// Expands files and directories (recursively, *.txt and extension-less text files) in sorted order.
std::vector<std::string> expand_text_paths(const std::vector<std::string>& paths);
// Reads a file and checks it is valid UTF-8 (error names the file and byte offset).
std::string read_utf8_file(const std::string& path);

// Fills ids/targets [batch, seq] for micro-batch `index` of the run (index = step·accum + micro) with
// windows at offsets hash(seed, index, row) of `source`.
void sample_batch(const TokenSource& source, uint64_t seed, int64_t index, int64_t batch, int64_t seq,
                  int32_t* ids, int32_t* targets);
// Rows [row_begin, row_end) of that micro-batch (row r's window is a pure function of seed, index and r),
// written to ids/targets [row_end − row_begin, seq]: one process's share of a data-parallel batch.
void sample_rows(const TokenSource& source, uint64_t seed, int64_t index, int64_t row_begin, int64_t row_end,
                 int64_t seq, int32_t* ids, int32_t* targets);
// The validation windows are fixed: batch b of `count` takes evenly spaced windows over the split.
void validation_batch(const TokenSource& source, int64_t b, int64_t count, int64_t batch, int64_t seq, int32_t* ids,
                      int32_t* targets);
// Rows [row_begin, row_end) of validation batch b.
void validation_rows(const TokenSource& source, int64_t b, int64_t count, int64_t batch, int64_t seq,
                     int64_t row_begin, int64_t row_end, int32_t* ids, int32_t* targets);

}  // namespace txs
