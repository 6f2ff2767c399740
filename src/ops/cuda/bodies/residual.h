// Residual-scale bodies (semantics: ops/cpu/elementwise.h): out = w ⊙ skip + branch over contiguous
// [rows, dim], one thread per element; dw = Σ_rows dout ⊙ skip is a column reduction (column_sum.h), done
// before dskip is written so that dskip may alias dout.
#pragma once
#include "ops/cuda/bodies/column_sum.h"

namespace txs::cuda {

// out = w ⊙ skip + branch (w null: 1); contiguous [rows, dim]; out may alias skip or branch.
TXS_HD void residual_forward_element(const float* skip, const float* w, const float* branch, float* out, int64_t dim,
                                     int64_t r, int64_t c) {
  const int64_t k = r * dim + c;
  out[k] = w ? w[c] * skip[k] + branch[k] : skip[k] + branch[k];
}

// dskip = w ⊙ dout (w null: dout); may alias dout (element-wise, and dw is reduced before).
TXS_HD void residual_dskip_element(const float* dout, const float* w, float* dskip, int64_t dim, int64_t r, int64_t c) {
  const int64_t k = r * dim + c;
  dskip[k] = w ? w[c] * dout[k] : dout[k];
}

// dw pass 1: Σ_{r ∈ [r0, r1)} dout[r, c]·skip[r, c]; pass 2 accumulates.
TXS_HD double residual_dw_part(const float* dout, const float* skip, int64_t dim, int64_t c, int64_t r0, int64_t r1) {
  double s = 0;
  for (int64_t r = r0; r < r1; ++r) s += double(dout[r * dim + c]) * double(skip[r * dim + c]);
  return s;
}
TXS_HD void residual_dw_finish(const double* partial, int64_t blocks, int64_t dim, int64_t c, float* dw) {
  dw[c] += float(sum_partials(partial, blocks, dim, c));
}

}  // namespace txs::cuda
