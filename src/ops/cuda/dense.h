// The products on the GPU, through cuBLASLt: linear layers and the LM head fused with cross-entropy, with the
// semantics of the CPU backend's ops (ops/backend.h, ops/cpu/gemm.h, ops/cpu/cross_entropy.h).
// Precision: W (and the LM head's table) is fp32 or bf16 (w_bf16: raw bf16 bits). fp32 W: fp32 GEMMs
// (CUBLAS_COMPUTE_32F, no TF32, so results match the CPU within fp32 tolerance). bf16 W: the fp32 operands
// (x, dy) are rounded to bf16 into device scratch and the GEMM runs on tensor cores with fp32 accumulation —
// the rounding the CPU's bf16 mode does. Gradients and outputs are fp32. All pointers are device pointers,
// all matrices contiguous row-major unless a stride is given; launches on the default stream.
#pragma once
#include <cstdint>

#include "ops/shapes.h"

namespace txs::cuda {

// y[rows,out] = x[rows,in] · W[out,in]ᵀ.
void linear_forward(const float* x, const void* W, bool w_bf16, float* y, int64_t rows, int64_t in, int64_t out);
// dx = dy·W (written, or accumulated when accumulate_dx; dx may be null), dW += dyᵀ·x (dW fp32, may be null).
void linear_backward(const float* dy, const float* x, const void* W, bool w_bf16, float* dx, bool accumulate_dx,
                     float* dW, int64_t rows, int64_t in, int64_t out);

// Fused LM head + cross-entropy in row blocks (never rows × vocab in memory at once): h [rows, dim],
// W [vocab, dim], targets [rows] (−1: not counted), target_logprob [rows] or null. With dh non-null the
// backward runs: dh written, dW accumulated, both scaled by grad_scale (the gradient of grad_scale · Σ loss).
CrossEntropyResult lm_head_cross_entropy(const float* h, const void* W, bool w_bf16, const int32_t* targets,
                                         float* target_logprob, float* dh, float* dW, float grad_scale,
                                         int64_t rows, int64_t dim, int64_t vocab);
// logits [rows, vocab] (row stride logits_stride) = h · Wᵀ.
void lm_head_logits(const float* h, const void* W, bool w_bf16, float* logits, int64_t logits_stride, int64_t rows,
                    int64_t dim, int64_t vocab);

}  // namespace txs::cuda
