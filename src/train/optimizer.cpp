#include "train/optimizer.h"

#include <cmath>

namespace txs {

AdamW::AdamW(Backend& backend, ParamStore& store, AdamWConfig config)
    : be_(backend), store_(store), config_(config), m_(backend, DType::F32, store.size()),
      v_(backend, DType::F32, store.size()) {
  m_.zero();
  v_.zero();
}

double AdamW::step(double lr) {
  const double norm = grad_norm();
  apply(lr, norm);
  return norm;
}

double AdamW::grad_norm() const { return std::sqrt(be_.sum_squares(store_.all_grads())); }

void AdamW::apply(double lr, double norm) {
  const Tensor grads = store_.all_grads();
  if (config_.clip_norm > 0 && norm > config_.clip_norm) be_.scale(grads, float(config_.clip_norm / (norm + 1e-6)));
  ++step_;
  AdamWParams p;
  p.lr = float(lr), p.beta1 = float(config_.beta1), p.beta2 = float(config_.beta2), p.eps = float(config_.eps);
  p.weight_decay = float(config_.weight_decay), p.step = step_;
  const Tensor w = store_.all_weights(), m = m_.flat(), v = v_.flat();
  for (auto& prm : store_.params())
    be_.adamw_update(w.col_slice(prm.offset, prm.numel), grads.col_slice(prm.offset, prm.numel),
                     m.col_slice(prm.offset, prm.numel), v.col_slice(prm.offset, prm.numel), p, prm.decay);
}

}  // namespace txs
