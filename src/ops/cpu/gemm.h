// Dense matrix products. fp32 goes through oneDNN's sgemm (fastest measured here, see README);
// fp64 (used only by gradient-check tests) through OpenBLAS. All matrices row-major.
#pragma once
#include <cstdint>

#include "ops/bf16.h"

namespace txs::cpu {

// C[M,N] = alpha * op(A) · op(B) + beta * C, op(A) is [M,K], op(B) is [K,N].
// Safe to call from inside an OpenMP parallel region (then it runs on the calling thread).
template <class T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
          const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

// PyTorch Linear without bias: y[rows,out] = x[rows,in] · W^T, W stored [out,in].
template <class T>
void linear_forward(const T* x, const T* W, T* y, int64_t rows, int64_t in, int64_t out);

// dx[rows,in] = dy · W (or += when accumulate_dx), dW[out,in] += dy^T · x. dx may be null.
template <class T>
void linear_backward(const T* dy, const T* x, const T* W, T* dx, T* dW, int64_t rows, int64_t in, int64_t out,
                     bool accumulate_dx = false);

// Mixed precision (the bf16 mode): C[M,N] = op(A)·op(B) (+ C when accumulate), with bf16 inputs and fp32
// accumulation and output. An fp32 operand is rounded to bf16 on the way in (into a per-thread buffer kept
// between calls), so every product sees bf16 inputs wherever it runs. Large M goes through oneDNN's bf16
// matmul (AVX512-BF16 dot products, twice the fp32 rate; primitives cached per shape); a product with few
// rows times bf16 weights stored [N,K] (decoding: x·Wᵀ) goes through gemv below instead, which is
// bound by reading W once. Call from outside OpenMP parallel regions.
template <class TA, class TB>
void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const TA* A, int64_t lda, const TB* B,
               int64_t ldb, bool accumulate, float* C, int64_t ldc);

// The bf16 mode's linear layer (W stored bf16, activations and gradients fp32, dW an fp32 accumulator).
void linear_forward_bf16(const float* x, const bf16* W, float* y, int64_t rows, int64_t in, int64_t out);
void linear_backward_bf16(const float* dy, const float* x, const bf16* W, float* dx, float* dW, int64_t rows,
                          int64_t in, int64_t out, bool accumulate_dx);

// C[m, n] (+)= Σ_k A[m,k] · W[n,k] for a few rows m (M ≤ kGemvMaxRows), W fp32 or bf16 (widened to fp32 in
// registers; gemm_bf16 rounds A to bf16 before it calls this, as its larger products do): a decoding step's products, which stream every weight once at memory bandwidth.
// fp32 linear_forward and every product with bf16 weights take this path for M ≤ kGemvMaxRows.
inline constexpr int64_t kGemvMaxRows = 8;
template <class WT>
void gemv(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const WT* W, int64_t ldw, bool accumulate,
          float* C, int64_t ldc);

}  // namespace txs::cpu
