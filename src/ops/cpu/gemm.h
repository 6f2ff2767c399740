// Dense matrix products. fp32 goes through oneDNN's sgemm (fastest measured here, see README);
// fp64 (used only by gradient-check tests) through OpenBLAS. All matrices row-major.
#pragma once
#include <cstdint>

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

}  // namespace txs::cpu
