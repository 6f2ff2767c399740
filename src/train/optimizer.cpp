#include "train/optimizer.h"

#include <cmath>


namespace txs {

AdamW::AdamW(Backend& backend, ParamStore& store, AdamWConfig config)
    : be_(backend), store_(store), config_(config) {
  m_.resize(size_t(store.size()));
  v_.resize(size_t(store.size()));
  m_.zero();
  v_.zero();
}

double AdamW::step(double lr) {
  const int64_t n = store_.size();
  const double norm = std::sqrt(be_.sum_squares(store_.grads(), n));
  if (config_.clip_norm > 0 && norm > config_.clip_norm)
    be_.scale_inplace(store_.grads(), n, float(config_.clip_norm / (norm + 1e-6)));
  ++step_;
  cpu::AdamWParams p;
  p.lr = float(lr), p.beta1 = float(config_.beta1), p.beta2 = float(config_.beta2), p.eps = float(config_.eps);
  p.weight_decay = float(config_.weight_decay), p.step = step_;
  for (auto& prm : store_.params())
    be_.adamw_update(store_.weights() + prm.offset, store_.grads() + prm.offset, m_.data() + prm.offset,
                      v_.data() + prm.offset, prm.numel, p, prm.decay);
  return norm;
}

}  // namespace txs
