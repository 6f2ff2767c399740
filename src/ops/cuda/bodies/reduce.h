// Bodies of the whole-tensor ops of gradient clipping and the overflow check (ops/cpu/adamw.h): Σ x² in
// double, x *= s, and the non-finite test. sum_squares is deterministic: thread i of the grid sums
// elements i, i + step, … (step = grid size, fixed by n), blocks reduce in a fixed tree, a second pass adds
// the block sums in order.
#pragma once
#include "ops/cuda/portable.h"

namespace txs::cuda {

TXS_HD double sum_squares_part(const float* x, int64_t n, int64_t i0, int64_t step) {
  double s = 0;
  for (int64_t i = i0; i < n; i += step) s += double(x[i]) * double(x[i]);
  return s;
}

TXS_HD void scale_element(float* x, float s, int64_t i) { x[i] *= s; }

// Sets *bad = 1 when x[i] is ±inf or NaN (x − x is 0 only for finite x).
TXS_HD void check_finite_element(const float* x, int64_t i, int32_t* bad) {
  const float v = x[i];
  if ((v - v) != 0.0f || v != v) *bad = 1;
}

}  // namespace txs::cuda
