// RoPE body (semantics: ops/cpu/rope.h): one thread per rotated pair k ↔ (row r, head h, element i < dim/2)
// of x, rotated in place; row r starts at x + r·stride and sits at position pos[r]. A position outside the table
// is not read: the body sets bad[0] = 1 and bad[1] = that position, a deferred error (ops/cuda/pointwise.h).
#pragma once
#include "ops/cuda/portable.h"

namespace txs::cuda {

TXS_HD void rope_pair(float* x, int64_t stride, const int32_t* pos, const float* cos_table, const float* sin_table,
                      int64_t dim, int64_t positions, int64_t heads, bool inverse, int64_t k, int32_t* bad) {
  const int64_t half = dim / 2, per_row = heads * half;
  const int64_t r = k / per_row, h = (k % per_row) / half, i = k % half;
  const int32_t p = pos[r];
  if (p < 0 || p >= positions) {
    bad[0] = 1;
    bad[1] = p;
    return;
  }
  float* lo = x + r * stride + h * dim;
  float* hi = lo + half;
  // The inverse (backward) rotation is the transpose: the same table with the sine negated.
  const float c = cos_table[p * half + i], s = inverse ? -sin_table[p * half + i] : sin_table[p * half + i];
  const float a = lo[i], b = hi[i];
  lo[i] = a * c - b * s;
  hi[i] = b * c + a * s;
}

}  // namespace txs::cuda
