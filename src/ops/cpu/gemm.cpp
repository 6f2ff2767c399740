// Dense matrix products: fp32 through oneDNN's sgemm, fp64 through OpenBLAS (or a plain loop inside
// OpenMP regions, see gemm_f64_loop).
#include "ops/cpu/gemm.h"

#include <cblas.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>

#include <algorithm>
#include <climits>
#include <type_traits>

#include "core/error.h"

namespace txs::cpu {

namespace {

// Shapes are checked here once, so that a bad call throws a one-line error instead of reading out of
// bounds inside a BLAS library.
void check_gemm_args(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const void* A, int64_t lda,
                     const void* B, int64_t ldb, const void* C, int64_t ldc) {
  if (M < 0 || N < 0 || K < 0) fail("gemm: negative size M={} N={} K={}", M, N, K);
  const int64_t a_cols = trans_a ? M : K, b_cols = trans_b ? K : N;
  if (lda < std::max<int64_t>(1, a_cols)) fail("gemm: lda={} is smaller than A's row length {}", lda, a_cols);
  if (ldb < std::max<int64_t>(1, b_cols)) fail("gemm: ldb={} is smaller than B's row length {}", ldb, b_cols);
  if (ldc < std::max<int64_t>(1, N)) fail("gemm: ldc={} is smaller than C's row length {}", ldc, N);
  if (M > 0 && N > 0 && !C) fail("gemm: C is null");
  if (M > 0 && N > 0 && K > 0 && (!A || !B)) fail("gemm: A or B is null");
}

// C = beta·C with the BLAS convention that beta = 0 ignores whatever C held (even NaN).
template <class T>
void scale_c(int64_t M, int64_t N, T beta, T* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == T(0) ? T(0) : beta * C[i * ldc + j];
}

// Straightforward row-major product for fp64 calls made from inside an OpenMP parallel region: the
// pthread build of OpenBLAS would otherwise hand the work to its own thread pool on top of ours.
// fp64 is only used by tests, so clarity beats speed here.
void gemm_f64_loop(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha, const double* A,
                   int64_t lda, const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  scale_c(M, N, beta, C, ldc);
  for (int64_t i = 0; i < M; ++i) {
    double* c = C + i * ldc;
    for (int64_t k = 0; k < K; ++k) {
      const double a = alpha * (trans_a ? A[k * lda + i] : A[i * lda + k]);
      if (trans_b) {
        for (int64_t j = 0; j < N; ++j) c[j] += a * B[j * ldb + k];
      } else {
        const double* b = B + k * ldb;
#pragma omp simd
        for (int64_t j = 0; j < N; ++j) c[j] += a * b[j];
      }
    }
  }
}

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  // oneDNN (OpenMP runtime) runs single-threaded when called inside a parallel region, so nested
  // calls stay on the calling thread (checked by the tests).
  const dnnl_status_t st =
      dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  if (st != dnnl_success) fail("gemm: dnnl_sgemm failed with status {} (M={} N={} K={})", int(st), M, N, K);
}

void dgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
           const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  const int64_t biggest = std::max({M, N, K, lda, ldb, ldc});
  if (omp_in_parallel() || biggest > INT_MAX) {
    gemm_f64_loop(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, blasint(M),
              blasint(N), blasint(K), alpha, A, blasint(lda), B, blasint(ldb), beta, C, blasint(ldc));
}

}  // namespace

template <class T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B,
          int64_t ldb, T beta, T* C, int64_t ldc) {
  check_gemm_args(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc);
  if (M == 0 || N == 0) return;
  if (K == 0) return scale_c(M, N, beta, C, ldc);  // BLAS libraries differ on K = 0; keep it exact
  if constexpr (std::is_same_v<T, float>)
    sgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  else
    dgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

template <class T>
void linear_forward(const T* x, const T* W, T* y, int64_t rows, int64_t in, int64_t out) {
  // y[rows,out] = x[rows,in] · W[out,in]^T
  gemm<T>(false, true, rows, out, in, T(1), x, in, W, in, T(0), y, out);
}

template <class T>
void linear_backward(const T* dy, const T* x, const T* W, T* dx, T* dW, int64_t rows, int64_t in, int64_t out,
                     bool accumulate_dx) {
  // dx[rows,in] (+)= dy[rows,out] · W[out,in]
  if (dx) gemm<T>(false, false, rows, in, out, T(1), dy, out, W, in, accumulate_dx ? T(1) : T(0), dx, in);
  // dW[out,in] += dy^T[out,rows] · x[rows,in]
  if (dW) gemm<T>(true, false, out, in, rows, T(1), dy, out, x, in, T(1), dW, in);
}

template void gemm<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t,
                          float, float*, int64_t);
template void gemm<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*, int64_t, const double*,
                           int64_t, double, double*, int64_t);
template void linear_forward<float>(const float*, const float*, float*, int64_t, int64_t, int64_t);
template void linear_forward<double>(const double*, const double*, double*, int64_t, int64_t, int64_t);
template void linear_backward<float>(const float*, const float*, const float*, float*, float*, int64_t, int64_t,
                                     int64_t, bool);
template void linear_backward<double>(const double*, const double*, const double*, double*, double*, int64_t, int64_t,
                                      int64_t, bool);

}  // namespace txs::cpu
