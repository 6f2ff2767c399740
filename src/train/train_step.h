// The compute every process does: one optimizer step (micro-batches with gradient accumulation, then the
// AdamW update) and the validation loss.
#pragma once
#include <cstdint>
#include <vector>

#include "data/token_source.h"
#include "model/model.h"
#include "train/data_parallel.h"
#include "train/optimizer.h"
#include "train/trainer.h"

namespace txs {

// Token ids and next-token targets of one micro-batch, [rows, seq].
struct Batch {
  std::vector<int32_t> ids, targets;
  Batch(int64_t rows, int64_t seq) : ids(size_t(rows * seq)), targets(size_t(rows * seq)) {}
};

struct StepStats {
  double loss = 0;  // mean over the step's target tokens
  double lr = 0;
  double grad_norm = 0;  // before clipping
  double tokens_per_s = 0;
  bool skipped = false;       // non-finite loss or gradient norm: no update was applied (--nonfinite skip)
  int64_t skipped_total = 0;  // steps skipped so far in the run (all of them, not only consecutive)
};

// Update number step+1 (step is 0-based). Its micro-batches are addressed by (step, micro), so a resumed
// run draws exactly the data the uninterrupted run would have. The loss and the gradient norm are checked
// before the update: a non-finite step ends the run (--nonfinite stop) or is skipped, leaving weights and
// moments untouched; consecutive_skips counts skipped steps in a row and ends the run past max_skips.
// Weights that an update with finite gradients made non-finite end the run whatever the policy.
// dp (data parallelism, null for one process): this process computes its rows of every micro-batch, and
// the gradients, loss and token count are summed over the processes before the checks and the update.
StepStats train_step(Model& model, AdamW& opt, const TokenSource& train, const TrainOptions& o, int64_t step,
                     Batch& batch, int64_t& consecutive_skips, DataParallel* dp = nullptr);

// Mean loss over the fixed validation windows (dp: each process takes its rows, the sums are reduced).
double validation_loss(Model& model, const TokenSource& val, const TrainOptions& o, Batch& batch,
                       DataParallel* dp = nullptr);

}  // namespace txs
