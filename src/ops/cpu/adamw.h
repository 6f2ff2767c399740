// AdamW with decoupled weight decay (Loshchilov & Hutter): w -= lr·(m̂/(sqrt(v̂)+eps) + wd·w).
#pragma once
#include <cstdint>

namespace txs::cpu {

struct AdamWParams {
  float lr = 1e-3f, beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, weight_decay = 0.1f;
  int64_t step = 1;  // 1-based, for the bias corrections
};

void adamw_update(float* w, const float* g, float* m, float* v, int64_t n, const AdamWParams& p, bool decay);

// Σ g² (in double) for global-norm clipping, and g *= scale.
double sum_squares(const float* g, int64_t n);
void scale_inplace(float* g, int64_t n, float scale);

}  // namespace txs::cpu
