// Small pointwise kernels of the blocks: SiLU-gated products, residual scales, Δ = softplus(dt + bias),
// embedding lookup.
// bf16 mode: all fp32 (memory-bound pointwise work on fp32 activations), except that embedding_forward
// reads a bf16 table (the matrices are stored bf16 in that mode) and widens each row exactly.
#pragma once
#include <cstdint>

#include "ops/bf16.h"

namespace txs::cpu {

// out[r,i] = silu(gate[r,i]) · up[r,i] for i < n (SwiGLU and Mamba-2's y ⊙ silu(z)).
template <class T>
void silu_mul_forward(const T* gate, int64_t gate_stride, const T* up, int64_t up_stride, T* out,
                      int64_t out_stride, int64_t rows, int64_t n);
// dgate, dup written with the strides of gate and up.
template <class T>
void silu_mul_backward(const T* dout, int64_t out_stride, const T* gate, int64_t gate_stride, const T* up,
                       int64_t up_stride, T* dgate, T* dup, int64_t rows, int64_t n);

// out = w ⊙ skip + branch  ([rows,dim]; w [dim] or null for w = 1). out may alias skip or branch.
template <class T>
void residual_forward(const T* skip, const T* w, const T* branch, T* out, int64_t rows, int64_t dim);
// dskip = w ⊙ dout (written; may alias dout), dw += Σ_rows dout ⊙ skip (when w given). dbranch = dout.
template <class T>
void residual_backward(const T* dout, const T* skip, const T* w, T* dskip, T* dw, int64_t rows, int64_t dim);

// dt[r,h] = softplus(raw[r,h] + bias[h]) (bias may be null); raw has row stride raw_stride, dt is [rows,H].
template <class T>
void softplus_forward(const T* raw, int64_t raw_stride, const T* bias, T* dt, int64_t rows, int64_t heads);
// draw written (stride raw_stride) = ddt · sigmoid(raw + bias); dbias += Σ_rows draw.
template <class T>
void softplus_backward(const T* ddt, const T* raw, int64_t raw_stride, const T* bias, T* draw, T* dbias,
                       int64_t rows, int64_t heads);

// out[r,:] = table[ids[r],:]; ids must already be validated (< vocab). The table is T, or bf16 (bf16 mode).
template <class TT, class T>
void embedding_forward(const int32_t* ids, const TT* table, T* out, int64_t rows, int64_t dim);
// dtable[ids[r],:] += dout[r,:].
template <class T>
void embedding_backward(const int32_t* ids, const T* dout, T* dtable, int64_t rows, int64_t dim);

}  // namespace txs::cpu
