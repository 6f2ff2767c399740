// Causal depthwise convolution over time followed by SiLU (Mamba-2's short conv and the conv ablation):
//   y[b,t,c] = silu(bias[c] + Σ_{j<W} w[c,j] · x[b, t−W+1+j, c]),  x at negative times = 0.
// Weight layout is PyTorch Conv1d's [C, 1, W].
// bf16 mode: fp32: a 4-tap depthwise filter is memory-bound and its weights are a few KB.
#pragma once
#include <cstdint>

namespace txs::cpu {

template <class T>
void conv1d_silu_forward(const T* x, int64_t x_stride, const T* w, const T* bias, T* y, int64_t y_stride,
                         int64_t batch, int64_t seq, int64_t channels, int64_t width);

// dx written (stride x_stride), dw and dbias accumulated.
template <class T>
void conv1d_silu_backward(const T* dy, int64_t y_stride, const T* x, int64_t x_stride, const T* w, const T* bias,
                          T* dx, T* dw, T* dbias, int64_t batch, int64_t seq, int64_t channels, int64_t width);

}  // namespace txs::cpu
