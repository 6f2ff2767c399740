// Softplus Δ bodies (semantics: ops/cpu/elementwise.h): dt = softplus(raw + bias), one thread per (row, head);
// raw and draw have raw's row stride, dt and ddt are contiguous [rows, H]; dbias = Σ_rows draw is a column
// reduction (column_sum.h) over the written draw, as on the CPU.
#pragma once
#include "ops/cuda/bodies/column_sum.h"

namespace txs::cuda {

// dt[r, h] = softplus(raw[r, h] + bias[h]) (bias null: 0), dt contiguous [rows, H]; softplus(v) =
// max(v, 0) + log1p(exp(−|v|)): no overflow for large v, the exact tail for very negative v.
TXS_HD void softplus_forward_element(const float* raw, int64_t raw_stride, const float* bias, float* dt, int64_t heads,
                                     int64_t r, int64_t h) {
  const float v = raw[r * raw_stride + h] + (bias ? bias[h] : 0.0f);
  dt[r * heads + h] = (v > 0.0f ? v : 0.0f) + log1pf(expf(-fabsf(v)));
}

// draw[r, h] (stride raw_stride) = ddt[r, h]·σ(raw + bias); dbias is reduced afterwards from draw.
TXS_HD void softplus_backward_element(const float* ddt, const float* raw, int64_t raw_stride, const float* bias,
                                      float* draw, int64_t heads, int64_t r, int64_t h) {
  const float v = raw[r * raw_stride + h] + (bias ? bias[h] : 0.0f);
  draw[r * raw_stride + h] = ddt[r * heads + h] * sigmoid_f32(v);
}
TXS_HD double softplus_dbias_part(const float* draw, int64_t raw_stride, int64_t h, int64_t r0, int64_t r1) {
  double s = 0;
  for (int64_t r = r0; r < r1; ++r) s += double(draw[r * raw_stride + h]);
  return s;
}
TXS_HD void softplus_dbias_finish(const double* partial, int64_t blocks, int64_t heads, int64_t h, float* dbias) {
  dbias[h] += float(sum_partials(partial, blocks, heads, h));
}

}  // namespace txs::cuda
