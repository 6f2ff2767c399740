// Causal depthwise conv + SiLU bodies (semantics: ops/cpu/conv1d.h). x, y, dy, dx are [batch·seq, C] with
// row strides; row r is time t = r % seq of sequence r / seq, and x before time 0 is zero. w is [C, W]
// contiguous. One thread per (row, channel), channels fastest (coalesced).
// Backward, in four kernels: g = dy ⊙ silu'(pre) into scratch [rows, C]; dw/dbias partials per row block
// (column_sum.h) over the column index e = j·C + c (j < W: tap j of dw; j = W: dbias); their finish; dx from
// g and w. dx is written last, so it may alias x or dy as on the CPU.
#pragma once
#include "ops/cuda/bodies/column_sum.h"

namespace txs::cuda {

// bias[c] + Σ_j w[c, j]·x[t − W + 1 + j, c] over the taps inside the sequence, in tap order.
TXS_HD float conv1d_preactivation(const float* x, int64_t x_stride, const float* w, const float* bias, int64_t seq,
                                  int64_t width, int64_t r, int64_t c) {
  const int64_t t = r % seq;
  float pre = bias ? bias[c] : 0.0f;
  for (int64_t j = (width - 1 - t > 0 ? width - 1 - t : 0); j < width; ++j)
    pre += w[c * width + j] * x[(r - width + 1 + j) * x_stride + c];
  return pre;
}

TXS_HD void conv1d_silu_forward_element(const float* x, int64_t x_stride, const float* w, const float* bias, float* y,
                                        int64_t y_stride, int64_t seq, int64_t width, int64_t r, int64_t c) {
  const float pre = conv1d_preactivation(x, x_stride, w, bias, seq, width, r, c);
  y[r * y_stride + c] = pre / (1.0f + expf(-pre));
}

// g[r, c] = dy · silu'(pre), silu'(p) = σ(p)·(1 + p·(1 − σ(p))); g is contiguous [rows, C].
TXS_HD void conv1d_silu_grad_element(const float* dy, int64_t dy_stride, const float* x, int64_t x_stride,
                                     const float* w, const float* bias, float* g, int64_t seq, int64_t channels,
                                     int64_t width, int64_t r, int64_t c) {
  const float p = conv1d_preactivation(x, x_stride, w, bias, seq, width, r, c);
  const float s = 1.0f / (1.0f + expf(-p));
  g[r * channels + c] = dy[r * dy_stride + c] * s * (1.0f + p * (1.0f - s));
}

// Pass 1 of dw (e = j·C + c, j < W: Σ g[r, c]·x[r − W + 1 + j, c] over rows whose tap j is inside the
// sequence) and dbias (e = W·C + c: Σ g[r, c]), over rows [r0, r1).
TXS_HD double conv1d_param_grad_part(const float* g, const float* x, int64_t x_stride, int64_t seq, int64_t channels,
                                     int64_t width, int64_t e, int64_t r0, int64_t r1) {
  const int64_t j = e / channels, c = e % channels;
  double s = 0;
  if (j == width) {
    for (int64_t r = r0; r < r1; ++r) s += double(g[r * channels + c]);
    return s;
  }
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t t = r % seq;
    if (j >= width - 1 - t) s += double(g[r * channels + c]) * double(x[(r - width + 1 + j) * x_stride + c]);
  }
  return s;
}

// Pass 2: dw[c, j] += Σ (when dw given), dbias[c] += Σ (when dbias given).
TXS_HD void conv1d_param_grad_finish(const double* partial, int64_t blocks, int64_t channels, int64_t width, int64_t e,
                                     float* dw, float* dbias) {
  const int64_t j = e / channels, c = e % channels;
  const float total = float(sum_partials(partial, blocks, (width + 1) * channels, e));
  if (j == width) {
    if (dbias) dbias[c] += total;
  } else if (dw) {
    dw[c * width + j] += total;
  }
}

// dx[τ, c] = Σ_j g[τ + W − 1 − j, c]·w[c, j] over the outputs of the same sequence that τ feeds.
TXS_HD void conv1d_dx_element(const float* g, const float* w, float* dx, int64_t x_stride, int64_t seq,
                              int64_t channels, int64_t width, int64_t r, int64_t c) {
  const int64_t tau = r % seq;
  float acc = 0.0f;
  for (int64_t j = (tau + width - seq > 0 ? tau + width - seq : 0); j < width; ++j)
    acc += g[(r + width - 1 - j) * channels + c] * w[c * width + j];
  dx[r * x_stride + c] = acc;
}

}  // namespace txs::cuda
