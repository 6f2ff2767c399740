// AdamW with decoupled weight decay (Loshchilov & Hutter): w -= lr·(m̂/(sqrt(v̂)+eps) + wd·w).
// bf16 mode: fp32 — it updates the fp32 masters from fp32 gradients and moments (an update of lr·1e-3
// relative size would vanish when added to a bf16 weight, whose spacing is 2^-8 relative).
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
