// AdamW with decoupled weight decay (Loshchilov & Hutter): w -= lr·(m̂/(sqrt(v̂)+eps) + wd·w).
#pragma once
#include <cstdint>

#include "ops/shapes.h"

namespace txs::cpu {

using txs::AdamWParams;

void adamw_update(float* w, const float* g, float* m, float* v, int64_t n, const AdamWParams& p, bool decay);

// Σ g² (in double) for global-norm clipping, and g *= scale.
double sum_squares(const float* g, int64_t n);
void scale_inplace(float* g, int64_t n, float scale);
// True when every x[i] is finite.
bool all_finite(const float* x, int64_t n);

}  // namespace txs::cpu
