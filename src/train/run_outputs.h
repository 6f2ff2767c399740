// Everything only the first process of a run writes: the run directory, metrics.jsonl, the progress line,
// loss.svg, checkpoints and the sample text. This is the one place that consults RunRole::writes_outputs():
// on other processes every method does nothing, so the driver calls them unconditionally.
#pragma once
#include <cstdint>
#include <fstream>
#include <optional>
#include <string>

#include "train/plot.h"
#include "train/progress.h"
#include "train/run_role.h"
#include "train/train_setup.h"
#include "train/train_step.h"

namespace txs {

class RunOutputs {
 public:
  // Creates the run directory, starts metrics.jsonl (a resumed run keeps its lines up to the checkpoint)
  // and prints the model, data and training lines.
  RunOutputs(RunRole role, const TrainRun& run);
  void validation(int64_t step, double val_loss);  // the step-0 validation
  void step(int64_t done, const StepStats& s, double elapsed_s, std::optional<double> val_loss);
  // m, v: the whole moments gathered from a sharded optimizer (--zero1), or null.
  void checkpoint(int64_t done, const TrainRun& run, const float* m = nullptr, const float* v = nullptr);
  void picture();
  std::string sample(Model& model);  // the demo text (sample_tokens, sample_prompt)
  TrainResult finish();

 private:
  bool on_;
  int world_;
  const TrainOptions& o_;
  int64_t start_;
  std::string arch_, metrics_path_, curve_path_, label_;
  std::optional<Progress> progress_;
  std::ofstream metrics_;
  LossCurve curve_;
  TrainResult result_;
};

}  // namespace txs
