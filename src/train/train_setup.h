// Set-up of a training run, done by every process: the one place that merges options (the config file,
// its "train" object, command-line flags, a resumed run's saved options), then loads the data and builds
// or loads the model and the optimizer state.
#pragma once
#include <memory>
#include <set>
#include <string>

#include "model/model.h"
#include "train/checkpointing.h"
#include "train/data_parallel.h"
#include "train/run_role.h"
#include "train/optimizer.h"
#include "train/trainer.h"
#include "train/training_data.h"

namespace txs {

// What the command line asked for.
struct TrainRequest {
  TrainOptions flags;           // flag values, defaults where a flag was not given
  std::set<std::string> given;  // names of the given flags as option keys ("--seq-len" -> "seq_len")
  std::string config_file;      // --config
  std::string resume_dir;       // --resume
  DistOptions dist;             // --zero1, --dist-timeout, --bucket-mb (not saved: any run may change them)
  // Where the run computes: --device (cpu | cuda). Not saved either: a run may resume on another device.
  std::string device = "cpu";
  Backend* backend = nullptr;  // when set, used instead of `device` (tests: a fake device)
};

// Fresh run: the config file's "train" object, overridden by the given flags; the default corpus when no
// data is named. Resumed run: the saved options (the config file is not read again); a given --steps
// extends or shortens the run (not below the checkpoint's step), a given --nonfinite or --max-skips
// replaces the policy. The result is validated.
TrainOptions resolve_options(const TrainRequest& request, const ResumePoint& resume);

// The model of a fresh run: arch and size preset, the config file's model fields, then model_overrides;
// vocab_size defaults to the data's vocabulary padded to 64.
ModelConfig resolve_model_config(const TrainOptions& options, int64_t data_vocab_size);

struct TrainRun {
  TrainOptions options;
  ResumePoint resume;  // empty() for a fresh run
  TrainingData data;
  std::unique_ptr<Model> model;
  std::unique_ptr<AdamW> opt;
  int64_t consecutive_skips = 0;  // non-finite steps skipped in a row up to now (saved in the checkpoint)
  std::string progress_label;     // shown on every progress line (train()'s progress_label); not saved
  int64_t start_step() const { return resume.step; }
};

// role: this process's place in the run. With --zero1 on more than one process the optimizer holds the
// moments of this process's shard only (DataParallel::shard_lo/hi).
TrainRun set_up_run(const TrainRequest& request, const RunRole& role = {});

}  // namespace txs
