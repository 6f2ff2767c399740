// SiLU-gated product bodies (semantics: ops/cpu/elementwise.h): out = silu(gate) ⊙ up, one thread per
// element (r, c), every operand with its own row stride (gate and up are often column slices of one GEMM output).
#pragma once
#include "ops/cuda/portable.h"

namespace txs::cuda {

// out = silu(gate) ⊙ up, each operand with its own row stride.
TXS_HD void silu_mul_forward_element(const float* gate, int64_t gate_stride, const float* up, int64_t up_stride,
                                     float* out, int64_t out_stride, int64_t r, int64_t c) {
  const float g = gate[r * gate_stride + c];
  out[r * out_stride + c] = g * sigmoid_f32(g) * up[r * up_stride + c];
}

// dgate, dup with the strides of gate and up. Both inputs are read before either output is written, so
// dgate/dup may alias gate/up.
TXS_HD void silu_mul_backward_element(const float* dout, int64_t out_stride, const float* gate, int64_t gate_stride,
                                      const float* up, int64_t up_stride, float* dgate, float* dup, int64_t r,
                                      int64_t c) {
  const float g = gate[r * gate_stride + c], u = up[r * up_stride + c], d = dout[r * out_stride + c];
  const float s = sigmoid_f32(g);
  dgate[r * gate_stride + c] = d * u * s * (1.0f + g * (1.0f - s));
  dup[r * up_stride + c] = d * g * s;
}

}  // namespace txs::cuda
