// AdamW body (semantics and formula: ops/cpu/adamw.cpp, decoupled weight decay, bias corrections computed
// once in double): one thread per parameter element.
#pragma once
#include "ops/cuda/portable.h"
#include "ops/shapes.h"

namespace txs::cuda {

struct AdamWCoeffs {
  float beta1, beta2, eps, lr, inv_bc1, inv_sqrt_bc2, weight_decay;
};

// The per-step constants, exactly as the CPU computes them (step ≥ 1, checked by the caller).
inline AdamWCoeffs adamw_coeffs(const AdamWParams& p, bool decay) {
  const double bc1 = 1.0 - std::pow(double(p.beta1), double(p.step));
  const double bc2 = 1.0 - std::pow(double(p.beta2), double(p.step));
  return {p.beta1, p.beta2, p.eps, p.lr, float(1.0 / bc1), float(1.0 / std::sqrt(bc2)), decay ? p.weight_decay : 0.0f};
}

TXS_HD void adamw_element(float* w, const float* g, float* m, float* v, const AdamWCoeffs& k, int64_t i) {
  const float gi = g[i];
  const float mi = k.beta1 * m[i] + (1.0f - k.beta1) * gi;
  const float vi = k.beta2 * v[i] + (1.0f - k.beta2) * gi * gi;
  m[i] = mi;
  v[i] = vi;
  const float mhat = mi * k.inv_bc1, vhat_sqrt = sqrtf(vi) * k.inv_sqrt_bc2;
  w[i] -= k.lr * (mhat / (vhat_sqrt + k.eps) + k.weight_decay * w[i]);
}

// The multi-tensor update (Backend::adamw_update_segments): one thread per element of the flat range; the
// element's parameter is found by binary search over the segments' begins (ascending), and weight decay applies
// only where that segment decays. k carries the decay coefficient; elements in no segment are left alone.
struct AdamWRun {
  int64_t begin, end;
  int32_t decay;
};
TXS_HD void adamw_segment_element(float* w, const float* g, float* m, float* v, AdamWCoeffs k, const AdamWRun* runs,
                                  int64_t nruns, int64_t i) {
  int64_t lo = 0, hi = nruns;  // the last run with begin <= i is runs[lo - 1] after the search
  while (lo < hi) {
    const int64_t mid = (lo + hi) / 2;
    if (runs[mid].begin <= i) lo = mid + 1;
    else hi = mid;
  }
  if (lo == 0 || i >= runs[lo - 1].end) return;
  if (!runs[lo - 1].decay) k.weight_decay = 0.0f;
  adamw_element(w, g, m, v, k, i);
}

}  // namespace txs::cuda
