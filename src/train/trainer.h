// `transxssm train`: the training loop with AdamW, schedule, clipping, accumulation, periodic
// validation, progress display, metrics.jsonl, loss-curve SVG and exactly resumable checkpoints.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "train/optimizer.h"
#include "train/schedule.h"

namespace txs {

struct TrainOptions {
  // Model: a config file (arch/size/overrides) or an architecture and size preset.
  std::string config_file;
  std::string arch = "transxssm";
  std::string size = "tiny";
  nlohmann::json model_overrides = nlohmann::json::object();
  // Data.
  std::vector<std::string> data;
  std::string tokenizer;
  double val_fraction = 0.05;
  // Optimisation.
  int64_t steps = 1000, seq_len = 256, batch_size = 8, grad_accum = 1;
  LrSchedule schedule;
  AdamWConfig adamw;
  uint64_t seed = 1;
  // Bookkeeping.
  std::string out = "runs/default";
  int64_t save_every = 0;  // 0: only at the end
  int64_t val_every = 100;
  int64_t val_batches = 8;
  int threads = 0;
  // Demo sample printed at the end (0 tokens: none).
  int64_t sample_tokens = 0;
  std::string sample_prompt = "\n";

  nlohmann::json to_json() const;
  static TrainOptions from_json(const nlohmann::json& j);  // unknown keys are an error
  void validate() const;
};

struct TrainResult {
  int64_t steps_done = 0;
  double first_val_loss = 0, last_val_loss = 0, last_loss = 0;
  std::string checkpoint_dir, metrics_path, curve_path;
  std::string sample;  // generated text, if requested
};

// Runs (or, when resume_dir is non-empty, resumes) training. A resumed run continues bit-identically.
TrainResult train(TrainOptions options, const std::string& resume_dir = "", int64_t steps_override = -1);

// Where the checkpoint of a run directory lives (DIR/checkpoint).
std::string run_checkpoint_dir(const std::string& run_dir);

}  // namespace txs
