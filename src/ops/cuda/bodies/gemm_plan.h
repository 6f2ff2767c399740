// How the CUDA backend's row-major products become cuBLASLt's column-major calls: pure functions of the
// shapes, so tests/test_cuda_dense_bodies.cpp checks the layouts on the host (it runs each plan through a
// naive column-major GEMM and compares with the CPU's row-major result). No CUDA types here.
//
// The derivation. A row-major matrix X[r,c] with row stride ld keeps X[i][j] at X + i·ld + j. A column-major
// matrix Y(R,C) with leading dimension ld keeps Y(i,j) at Y + i + j·ld. So the memory of row-major X[r,c]
// *is* the column-major matrix Xᵀ (c rows, r columns, same ld): Xᵀ(j,i) = X + j + i·ld = X[i][j].
// A row-major product C[M,N] = op(A)[M,K] · op(B)[K,N] is, transposed, Cᵀ[N,M] = op(B)ᵀ[N,K] · op(A)ᵀ[K,M],
// and Cᵀ is exactly C's memory seen column-major (N rows, M columns, ld = ldc). So cuBLASLt computes
//   D = op_a(first) · op_b(second) with m = N, n = M, k = K, first = B, second = A.
// The first factor must be op(B)ᵀ [N,K]:
//   B not transposed: B is stored row-major [K,N], i.e. column-major [N,K] = op(B)ᵀ already → op N,
//     stored layout N rows × K columns, ld = ldb.
//   B transposed: B is stored row-major [N,K], i.e. column-major [K,N] = op(B); its transpose is needed
//     → op T, stored layout K rows × N columns, ld = ldb.
// The second factor must be op(A)ᵀ [K,M]:
//   A not transposed: stored row-major [M,K] = column-major [K,M] → op N, layout K × M, ld = lda.
//   A transposed: stored row-major [K,M] = column-major [M,K] → op T, layout M × K, ld = lda.
// The output layout is column-major N rows × M columns, ld = ldc.
#pragma once
#include <cstdint>

namespace txs::cuda {

// A product as the CPU backend writes it: C[M,N] (+)= op(A)·op(B), all row-major (ops/cpu/gemm.h's gemm).
struct RowMajorGemm {
  bool trans_a = false, trans_b = false;
  int64_t M = 0, N = 0, K = 0;
  int64_t lda = 0, ldb = 0, ldc = 0;
};

// The same product as cuBLASLt's column-major D = op_a(first)·op_b(second): first is the row-major B,
// second the row-major A (see the derivation above). *_rows/*_cols are the stored matrices' layouts.
struct ColumnMajorGemm {
  int64_t m = 0, n = 0, k = 0;
  bool trans_first = false, trans_second = false;
  int64_t first_rows = 0, first_cols = 0, ld_first = 0;    // the row-major B
  int64_t second_rows = 0, second_cols = 0, ld_second = 0;  // the row-major A
  int64_t c_rows = 0, c_cols = 0, ldc = 0;
};

inline ColumnMajorGemm to_column_major(const RowMajorGemm& g) {
  ColumnMajorGemm c;
  c.m = g.N;
  c.n = g.M;
  c.k = g.K;
  c.trans_first = g.trans_b;
  c.first_rows = g.trans_b ? g.K : g.N;
  c.first_cols = g.trans_b ? g.N : g.K;
  c.ld_first = g.ldb;
  c.trans_second = g.trans_a;
  c.second_rows = g.trans_a ? g.M : g.K;
  c.second_cols = g.trans_a ? g.K : g.M;
  c.ld_second = g.lda;
  c.c_rows = g.N;
  c.c_cols = g.M;
  c.ldc = g.ldc;
  return c;
}

// The products of the dense ops, exactly the calls of ops/cpu/gemm.cpp and ops/cpu/cross_entropy.cpp.
// Linear layer, W [out,in]: y[rows,out] = x·Wᵀ (A = x, B = W).
inline RowMajorGemm plan_linear_forward(int64_t rows, int64_t in, int64_t out) {
  return {false, true, rows, out, in, in, in, out};
}
// dx[rows,in] = dy[rows,out]·W[out,in] (A = dy, B = W).
inline RowMajorGemm plan_linear_dx(int64_t rows, int64_t in, int64_t out) {
  return {false, false, rows, in, out, out, in, in};
}
// dW[out,in] += dyᵀ·x (A = dy, B = x).
inline RowMajorGemm plan_linear_dw(int64_t rows, int64_t in, int64_t out) {
  return {true, false, out, in, rows, out, in, in};
}
// LM head, W [vocab,dim]: logits[rows,vocab] (row stride logits_stride) = h[rows,dim]·Wᵀ (A = h, B = W).
inline RowMajorGemm plan_lm_head_logits(int64_t rows, int64_t dim, int64_t vocab, int64_t logits_stride) {
  return {false, true, rows, vocab, dim, dim, dim, logits_stride};
}
// dh[rows,dim] = dlogits[rows,vocab]·W (A = dlogits, B = W).
inline RowMajorGemm plan_lm_head_dh(int64_t rows, int64_t dim, int64_t vocab) {
  return {false, false, rows, dim, vocab, vocab, dim, dim};
}
// dW[vocab,dim] += dlogitsᵀ·h (A = dlogits, B = h).
inline RowMajorGemm plan_lm_head_dw(int64_t rows, int64_t dim, int64_t vocab) {
  return {true, false, vocab, dim, rows, vocab, dim, dim};
}

}  // namespace txs::cuda
