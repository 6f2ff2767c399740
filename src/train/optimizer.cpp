#include "train/optimizer.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace txs {

AdamW::AdamW(Backend& backend, ParamStore& store, AdamWConfig config, int64_t shard_lo, int64_t shard_hi)
    : be_(backend), store_(store), config_(config), lo_(shard_lo),
      m_(backend, DType::F32, (shard_hi < 0 ? store.size() : shard_hi) - shard_lo),
      v_(backend, DType::F32, (shard_hi < 0 ? store.size() : shard_hi) - shard_lo) {
  m_.zero();
  v_.zero();
}

float* AdamW::host_pointer(const DeviceBuffer& b) const {
  if (be_.device() != Device::Cpu)
    fail("internal: a host pointer into the AdamW moments in {} memory (backend {})", device_name(be_.device()),
         be_.name());
  return b.data<float>();
}

double AdamW::step(double lr) {
  const double norm = grad_norm();
  apply(lr, norm);
  return norm;
}

double AdamW::grad_norm() const { return std::sqrt(be_.sum_squares(store_.all_grads())); }

double AdamW::shard_sum_squares() const { return be_.sum_squares(store_.all_grads().col_slice(lo_, m_.size())); }

void AdamW::apply(double lr, double norm) {
  const Tensor grads = store_.all_grads();
  const int64_t lo = lo_, hi = lo_ + m_.size();
  if (config_.clip_norm > 0 && norm > config_.clip_norm)
    be_.scale(grads.col_slice(lo, hi - lo), float(config_.clip_norm / (norm + 1e-6)));
  ++step_;
  AdamWParams p;
  p.lr = float(lr), p.beta1 = float(config_.beta1), p.beta2 = float(config_.beta2), p.eps = float(config_.eps);
  p.weight_decay = float(config_.weight_decay), p.step = step_;
  // Every parameter's part in this process's shard [lo, hi), as runs of the shard: one multi-tensor update.
  segments_.clear();
  for (auto& prm : store_.params()) {
    const int64_t a = std::max(prm.offset, lo), b = std::min(prm.offset + prm.numel, hi);
    if (a < b) segments_.push_back(AdamWSegment{a - lo, b - a, prm.decay});
  }
  be_.adamw_update_segments(store_.all_weights().col_slice(lo, hi - lo), grads.col_slice(lo, hi - lo), m_.flat(),
                            v_.flat(), segments_, p);
}

}  // namespace txs
