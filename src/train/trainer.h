// `transxssm train`: the training options and the driver loop. The parts live beside it:
//   train_setup.h   options (config file, flags, resume), data, model and optimizer state
//   train_step.h    one optimizer step with gradient accumulation; validation loss
//   run_outputs.h   metrics.jsonl, progress line, loss.svg, checkpoints, sample (first process only)
//   checkpointing.h atomic checkpoint save, resume lookup, metrics truncation
//   run_role.h      which process does what, and what data parallelism adds
//   data_parallel.h the N-process additions (mpirun -np N): row shares, gradient buckets, ZeRO-1
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "train/optimizer.h"
#include "train/run_role.h"
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
  // "fp32", or "bf16": products with bf16 inputs and fp32 accumulation; fp32 master weights, gradients and
  // AdamW moments (model/params.h). May change when a run resumes: the checkpoint holds the fp32 masters.
  std::string precision = "fp32";
  // A step whose loss or gradient norm is NaN/inf never reaches the weights. "stop": the run ends with an
  // error naming the step (the last good checkpoint stays); "skip": the step's update is dropped, logged
  // in metrics.jsonl, and the run goes on, ending only after more than max_skips consecutive skips.
  std::string nonfinite = "stop";
  int64_t max_skips = 10;
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

struct TrainRequest;  // train_setup.h

// Runs (or, with request.resume_dir, resumes) training. A resumed run continues bit-identically.
// progress_label, when given, is shown on every progress line (e.g. "study 2/6 mamba2").
TrainResult train(const TrainRequest& request, RunRole role = {}, const std::string& progress_label = "");

}  // namespace txs
