#include "train/train_step.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/error.h"
#include "train/training_data.h"

namespace txs {

StepStats train_step(Model& model, AdamW& opt, const TokenSource& train, const TrainOptions& o, int64_t step,
                     Batch& batch, int64_t& consecutive_skips) {
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t tokens_per_step = o.batch_size * o.seq_len * o.grad_accum;
  model.params().zero_grads();
  double loss_sum = 0;
  int64_t counted = 0;
  for (int64_t micro = 0; micro < o.grad_accum; ++micro) {
    sample_batch(train, o.seed, step * o.grad_accum + micro, o.batch_size, o.seq_len, batch.ids.data(),
                 batch.targets.data());
    // Scaled by the whole step's tokens, so the accumulated gradient is that of the mean loss.
    auto r = model.forward_backward(batch.ids.data(), batch.targets.data(), o.batch_size, o.seq_len,
                                    1.0f / float(tokens_per_step));
    loss_sum += r.loss_sum;
    counted += r.counted;
  }
  // (Data parallelism: all-reduce the gradients, loss_sum and counted here; see run_role.h.)
  StepStats s;
  s.lr = o.schedule.at(step);
  s.loss = loss_sum / double(std::max<int64_t>(counted, 1));
  s.grad_norm = opt.grad_norm();  // a finite norm means every gradient is finite
  const int64_t done = step + 1;
  if (std::isfinite(s.loss) && std::isfinite(s.grad_norm)) {
    opt.apply(s.lr, s.grad_norm);
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

double validation_loss(Model& model, const TokenSource& val, const TrainOptions& o, Batch& batch) {
  double sum = 0;
  int64_t n = 0;
  for (int64_t b = 0; b < o.val_batches; ++b) {
    validation_batch(val, b, o.val_batches, o.batch_size, o.seq_len, batch.ids.data(), batch.targets.data());
    auto r = model.forward(batch.ids.data(), batch.targets.data(), o.batch_size, o.seq_len, nullptr);
    sum += r.loss_sum;
    n += r.counted;
  }
  return sum / double(std::max<int64_t>(n, 1));
}

}  // namespace txs
