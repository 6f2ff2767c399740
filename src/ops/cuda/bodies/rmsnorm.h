// RMSNorm bodies (semantics: ops/cpu/rmsnorm.h; x, y, dy, dx contiguous [rows, dim]). The kernels run one
// thread block per row: phase 1 has each thread sum its elements i0, i0 + step, … (step = block size), the
// block adds the partials (in double), phase 2 writes the row's elements. dgain is a column reduction
// (column_sum.h), done before dx so that dx may alias dy or x.
#pragma once
#include "ops/cuda/bodies/column_sum.h"

namespace txs::cuda {

// Forward phase 1: Σ x² over this thread's elements of row r.
TXS_HD double rmsnorm_sumsq_part(const float* x, int64_t dim, int64_t r, int64_t i0, int64_t step) {
  const float* xr = x + r * dim;
  double s = 0;
  for (int64_t i = i0; i < dim; i += step) s += double(xr[i]) * double(xr[i]);
  return s;
}

// Between the phases: the row's 1/rms from its Σ x²; stored to rstd[r] when rstd is given (thread 0 does it).
TXS_HD float rmsnorm_row_rstd(double sumsq, int64_t dim, double eps, float* rstd, int64_t r) {
  const float s = float(1.0 / sqrt(sumsq / double(dim) + eps));
  if (rstd) rstd[r] = s;
  return s;
}

// Forward phase 2: y = gain ⊙ (x · s).
TXS_HD void rmsnorm_forward_element(const float* x, const float* gain, float* y, float s, int64_t dim, int64_t r,
                                    int64_t i) {
  y[r * dim + i] = gain[i] * (x[r * dim + i] * s);
}

// Backward phase 1: Σ dy ⊙ gain ⊙ x over this thread's elements of row r.
TXS_HD double rmsnorm_dot_part(const float* dy, const float* x, const float* gain, int64_t dim, int64_t r, int64_t i0,
                               int64_t step) {
  const float* dyr = dy + r * dim;
  const float* xr = x + r * dim;
  double s = 0;
  for (int64_t i = i0; i < dim; i += step) s += double(dyr[i]) * double(gain[i]) * double(xr[i]);
  return s;
}

// Backward phase 2: dx_i = s·g_i·dy_i − (s³/dim)·x_i·dot, s = rstd[r], dot = Σ dy g x of the row.
TXS_HD void rmsnorm_backward_element(const float* dy, const float* x, const float* gain, const float* rstd, double dot,
                                     float* dx, int64_t dim, int64_t r, int64_t i) {
  const double s = double(rstd[r]);
  const float a = float(s), b = float(s * s * s * dot / double(dim));
  dx[r * dim + i] = a * gain[i] * dy[r * dim + i] - b * x[r * dim + i];
}

// dgain pass 1: Σ_{r ∈ [r0, r1)} dy[r, c]·x[r, c]·rstd[r].
TXS_HD double rmsnorm_dgain_part(const float* dy, const float* x, const float* rstd, int64_t dim, int64_t c, int64_t r0,
                                 int64_t r1) {
  double s = 0;
  for (int64_t r = r0; r < r1; ++r) s += double(dy[r * dim + c]) * double(x[r * dim + c]) * double(rstd[r]);
  return s;
}

// dgain pass 2 (accumulated).
TXS_HD void rmsnorm_dgain_finish(const double* partial, int64_t blocks, int64_t dim, int64_t c, float* dgain) {
  dgain[c] += float(sum_partials(partial, blocks, dim, c));
}

}  // namespace txs::cuda
