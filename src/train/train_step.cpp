#include "train/train_step.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/error.h"
#include "train/training_data.h"

namespace txs {

StepStats train_step(Model& model, AdamW& opt, const TokenSource& train, const TrainOptions& o, int64_t step,
                     Batch& batch, int64_t& consecutive_skips, DataParallel* dp) {
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t tokens_per_step = o.batch_size * o.seq_len * o.grad_accum;
  model.params().zero_grads();
  double loss_sum = 0;
  int64_t counted = 0;
  // This process's rows of each global micro-batch (all of them without data parallelism).
  const int64_t r0 = dp ? dp->row_begin(o.batch_size) : 0, r1 = dp ? dp->row_end(o.batch_size) : o.batch_size;
  if (dp) dp->begin_step();
  for (int64_t micro = 0; micro < o.grad_accum; ++micro) {
    sample_rows(train, o.seed, step * o.grad_accum + micro, r0, r1, o.seq_len, batch.ids.data(),
                batch.targets.data());
    // The last micro-batch's backward pass starts the gradient all-reduce bucket by bucket.
    const Model::GradsReady hook = dp && micro + 1 == o.grad_accum ? dp->grads_ready_hook() : Model::GradsReady{};
    // Scaled by the whole (global) step's tokens, so the accumulated gradient is that of the mean loss.
    auto r = model.forward_backward(batch.ids.data(), batch.targets.data(), r1 - r0, o.seq_len,
                                    1.0f / float(tokens_per_step), nullptr, hook);
    loss_sum += r.loss_sum;
    counted += r.counted;
  }
  if (dp) {
    dp->finish_gradients();
    dp->reduce_loss(loss_sum, counted);
  }
  StepStats s;
  s.lr = o.schedule.at(step);
  s.loss = loss_sum / double(std::max<int64_t>(counted, 1));
  // A finite norm means every gradient is finite; with dp every process sees the same loss and norm, so
  // all take the same decision below.
  s.grad_norm = dp ? dp->grad_norm(opt) : opt.grad_norm();
  const int64_t done = step + 1;
  if (std::isfinite(s.loss) && std::isfinite(s.grad_norm)) {
    opt.apply(s.lr, s.grad_norm);
    if (dp) dp->after_update();
    model.params().refresh_compute();  // the bf16 copies follow the updated masters
    consecutive_skips = 0;
    // Finite gradients with a huge lr can still overflow a weight; that cannot be undone, so stop here
    // rather than save it or train on.
    if (!model.backend().all_finite(model.params().all_weights()))
      fail("step {}: the update made the weights non-finite (lr {}); stopped, the last good checkpoint is kept; "
           "try a lower --lr",
           done, s.lr);
  } else if (o.nonfinite == "stop") {
    fail("step {}: non-finite loss {} / gradient norm {}; stopped before the update, the last good checkpoint "
         "is kept (try a lower --lr, or --nonfinite skip)",
         done, s.loss, s.grad_norm);
  } else {
    s.skipped = true;
    if (++consecutive_skips > o.max_skips)
      fail("step {}: non-finite loss {} / gradient norm {} for {} steps in a row (--max-skips {}); stopped, the "
           "last good checkpoint is kept",
           done, s.loss, s.grad_norm, consecutive_skips, o.max_skips);
  }
  s.skipped_total = done - opt.steps_done();  // a skipped step does not advance the optimizer
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  s.tokens_per_s = double(tokens_per_step) / secs;
  return s;
}

double validation_loss(Model& model, const TokenSource& val, const TrainOptions& o, Batch& batch,
                       DataParallel* dp) {
  double sum = 0;
  int64_t n = 0;
  const int64_t r0 = dp ? dp->row_begin(o.batch_size) : 0, r1 = dp ? dp->row_end(o.batch_size) : o.batch_size;
  for (int64_t b = 0; b < o.val_batches; ++b) {
    validation_rows(val, b, o.val_batches, o.batch_size, o.seq_len, r0, r1, batch.ids.data(), batch.targets.data());
    auto r = model.forward(batch.ids.data(), batch.targets.data(), r1 - r0, o.seq_len, nullptr);
    sum += r.loss_sum;
    n += r.counted;
  }
  if (dp) dp->reduce_loss(sum, n);
  return sum / double(std::max<int64_t>(n, 1));
}

}  // namespace txs
