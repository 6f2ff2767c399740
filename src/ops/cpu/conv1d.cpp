// Causal depthwise Conv1d + SiLU over [batch, seq, channels] rows with arbitrary row strides.
// The weights are first transposed to [W, C] so that the inner loop over channels is contiguous.
#include "ops/cpu/conv1d.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/buffer.h"
#include "core/error.h"

namespace txs::cpu {

namespace {

void check_conv_args(int64_t x_stride, int64_t y_stride, int64_t batch, int64_t seq, int64_t channels, int64_t width) {
  if (batch < 0 || seq < 0 || channels <= 0 || width <= 0)
    fail("conv1d: bad shape batch={} seq={} channels={} width={}", batch, seq, channels, width);
  if (x_stride < channels || y_stride < channels)
    fail("conv1d: row strides ({}, {}) must be >= channels {}", x_stride, y_stride, channels);
}

// wt[j*C + c] = w[c*W + j]
template <class T>
std::vector<T> transpose_weight(const T* w, int64_t channels, int64_t width) {
  std::vector<T> wt(size_t(channels * width));
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t j = 0; j < width; ++j) wt[size_t(j * channels + c)] = w[c * width + j];
  return wt;
}

// pre[c] = bias[c] + Σ_j w[c,j]·x[t−W+1+j, c] for the row at time t of one sequence (xs = its time 0).
template <class T>
void preactivation(const T* xs, int64_t x_stride, int64_t t, const T* wt, const T* bias, T* pre, int64_t channels,
                   int64_t width) {
#pragma omp simd
  for (int64_t c = 0; c < channels; ++c) pre[c] = bias ? bias[c] : T(0);
  for (int64_t j = std::max<int64_t>(0, width - 1 - t); j < width; ++j) {
    const T* xr = xs + (t - width + 1 + j) * x_stride;
    const T* wj = wt + j * channels;
#pragma omp simd
    for (int64_t c = 0; c < channels; ++c) pre[c] += wj[c] * xr[c];
  }
}

}  // namespace

template <class T>
void conv1d_silu_forward(const T* x, int64_t x_stride, const T* w, const T* bias, T* y, int64_t y_stride, int64_t batch,
                         int64_t seq, int64_t channels, int64_t width) {
  check_conv_args(x_stride, y_stride, batch, seq, channels, width);
  const std::vector<T> wt = transpose_weight(w, channels, width);
  const int64_t rows = batch * seq;
#pragma omp parallel for schedule(static) if (rows * channels * width > 32768)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t b = r / seq, t = r % seq;
    T* yr = y + r * y_stride;
    preactivation(x + b * seq * x_stride, x_stride, t, wt.data(), bias, yr, channels, width);
#pragma omp simd
    for (int64_t c = 0; c < channels; ++c) yr[c] = yr[c] / (T(1) + std::exp(-yr[c]));
  }
}

template <class T>
void conv1d_silu_backward(const T* dy, int64_t y_stride, const T* x, int64_t x_stride, const T* w, const T* bias, T* dx,
                          T* dw, T* dbias, int64_t batch, int64_t seq, int64_t channels, int64_t width) {
  check_conv_args(x_stride, y_stride, batch, seq, channels, width);
  const std::vector<T> wt = transpose_weight(w, channels, width);
  const int64_t rows = batch * seq;
  const bool big = rows * channels * width > 32768;
  // g = ∂L/∂pre = dy · silu'(pre), silu'(p) = σ(p)·(1 + p·(1 − σ(p))). Kept per calling thread and
  // grown, never freed: this buffer is as large as the activations.
  static thread_local Buffer<T> gbuf;
  gbuf.resize(size_t(rows * channels));
  T* g = gbuf.data();
#pragma omp parallel for schedule(static) if (big)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t b = r / seq, t = r % seq;
    T* gr = g + r * channels;
    const T* dyr = dy + r * y_stride;
    preactivation(x + b * seq * x_stride, x_stride, t, wt.data(), bias, gr, channels, width);
#pragma omp simd
    for (int64_t c = 0; c < channels; ++c) {
      const T p = gr[c], s = T(1) / (T(1) + std::exp(-p));
      gr[c] = dyr[c] * s * (T(1) + p * (T(1) - s));
    }
  }
  // dw[c,j] += Σ_{b,t} g[b,t,c]·x[b,t−W+1+j,c], dbias[c] += Σ g: reductions over rows, so each thread owns a
  // slice of channels (no shared writes, result independent of the thread count). Done before dx so
  // that dx may alias x.
  if (dw || dbias) {
#pragma omp parallel if (big)
    {
      const int64_t nt = omp_get_num_threads(), tid = omp_get_thread_num();
      const int64_t per = ((channels + nt - 1) / nt + 15) / 16 * 16;
      const int64_t c0 = std::min(channels, tid * per), c1 = std::min(channels, c0 + per), n = c1 - c0;
      std::vector<double> acc_w(size_t(width * n), 0.0), acc_b(size_t(n), 0.0);
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t b = r / seq, t = r % seq;
        const T* gr = g + r * channels + c0;
        for (int64_t c = 0; c < n; ++c) acc_b[size_t(c)] += double(gr[c]);
        for (int64_t j = std::max<int64_t>(0, width - 1 - t); j < width; ++j) {
          const T* xr = x + (b * seq + t - width + 1 + j) * x_stride + c0;
          double* aw = acc_w.data() + j * n;
#pragma omp simd
          for (int64_t c = 0; c < n; ++c) aw[c] += double(gr[c]) * double(xr[c]);
        }
      }
      for (int64_t c = 0; c < n; ++c) {
        if (dbias) dbias[c0 + c] += T(acc_b[size_t(c)]);
        if (dw)
          for (int64_t j = 0; j < width; ++j) dw[(c0 + c) * width + j] += T(acc_w[size_t(j * n + c)]);
      }
    }
  }
  // dx[b,τ,c] = Σ_j g[b, τ+W−1−j, c]·w[c,j] over the outputs τ feeds (those with τ+W−1−j < seq).
  if (dx) {
#pragma omp parallel for schedule(static) if (big)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t tau = r % seq;
      T* dxr = dx + r * x_stride;
#pragma omp simd
      for (int64_t c = 0; c < channels; ++c) dxr[c] = T(0);
      for (int64_t j = std::max<int64_t>(0, tau + width - seq); j < width; ++j) {
        const T* gr = g + (r + width - 1 - j) * channels;
        const T* wj = wt.data() + j * channels;
#pragma omp simd
        for (int64_t c = 0; c < channels; ++c) dxr[c] += gr[c] * wj[c];
      }
    }
  }
}

template void conv1d_silu_forward<float>(const float*, int64_t, const float*, const float*, float*, int64_t, int64_t,
                                         int64_t, int64_t, int64_t);
template void conv1d_silu_forward<double>(const double*, int64_t, const double*, const double*, double*, int64_t,
                                          int64_t, int64_t, int64_t, int64_t);
template void conv1d_silu_backward<float>(const float*, int64_t, const float*, int64_t, const float*, const float*,
                                          float*, float*, float*, int64_t, int64_t, int64_t, int64_t);
template void conv1d_silu_backward<double>(const double*, int64_t, const double*, int64_t, const double*, const double*,
                                           double*, double*, double*, int64_t, int64_t, int64_t, int64_t);

}  // namespace txs::cpu
