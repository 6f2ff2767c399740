// Dense matrix products: fp32 through oneDNN's sgemm, fp64 through OpenBLAS (or a plain loop inside
// OpenMP regions, see gemm_f64_loop).
#include "ops/cpu/gemm.h"

#include <cblas.h>
#include <immintrin.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>

#include <algorithm>
#include <climits>
#include <map>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <tuple>
#include <type_traits>

#include "core/buffer.h"

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
  // y[rows,out] = x[rows,in] · W[out,in]^T; a few rows (decoding) stream W once through gemv.
  if constexpr (std::is_same_v<T, float>)
    if (rows > 0 && rows <= kGemvMaxRows && !omp_in_parallel()) return gemv(rows, out, in, x, in, W, in, false, y, out);
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

// ---- bf16 inputs, fp32 accumulation ------------------------------------------------------------------------

namespace {

// fp32 → bf16 of a stored [rows, cols] matrix (leading dimension ld) into a contiguous buffer.
void round_rows(const float* src, int64_t rows, int64_t cols, int64_t ld, bf16* dst) {
#pragma omp parallel for schedule(static) if (rows * cols > 32768)
  for (int64_t r = 0; r < rows; ++r) {
    to_bf16(src + r * ld, dst + r * cols, cols);
  }
}

// A bf16 operand: used in place when it already is bf16, else rounded into per-thread buffer `slot`.
template <class T>
const bf16* as_bf16(const T* p, int64_t rows, int64_t cols, int64_t& ld, int slot) {
  if constexpr (std::is_same_v<T, bf16>) {
    return p;
  } else {
    static thread_local Buffer<bf16> buffers[2];
    Buffer<bf16>& b = buffers[slot];
    b.resize(size_t(rows * cols));
    round_rows(p, rows, cols, ld, b.data());
    ld = cols;
    return b.data();
  }
}

// oneDNN matmul primitives are built once per shape (a few ms each) and reused.
dnnl::engine& dnnl_cpu() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

using MatmulKey = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, bool, bool, bool>;

dnnl::memory::desc desc_of(int64_t rows, int64_t cols, bool trans, int64_t ld, dnnl::memory::data_type t) {
  // The logical [rows, cols] matrix stored row-major, or stored transposed ([cols, rows] with leading dim ld).
  return dnnl::memory::desc({rows, cols}, t, trans ? dnnl::memory::dims{1, ld} : dnnl::memory::dims{ld, 1});
}

void matmul_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const bf16* A, int64_t lda,
                 const bf16* B, int64_t ldb, bool accumulate, float* C, int64_t ldc) {
  using dt = dnnl::memory::data_type;
  const MatmulKey key{M, N, K, lda, ldb, ldc, trans_a, trans_b, accumulate};
  static std::mutex mu;
  static std::map<MatmulKey, dnnl::matmul> cache;
  const auto a_md = desc_of(M, K, trans_a, lda, dt::bf16), b_md = desc_of(K, N, trans_b, ldb, dt::bf16),
             c_md = desc_of(M, N, false, ldc, dt::f32);
  dnnl::matmul prim;
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache.find(key);
    if (it == cache.end()) {
      if (cache.size() >= 512) cache.clear();  // shapes come from a model's few layer widths; bound it anyway
      dnnl::primitive_attr attr;
      if (accumulate) {
        dnnl::post_ops po;
        po.append_sum(1.0f);
        attr.set_post_ops(po);
      }
      try {
        const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_md, b_md, c_md), attr, dnnl_cpu());
        it = cache.emplace(key, dnnl::matmul(pd)).first;
      } catch (const dnnl::error& e) {
        fail("gemm_bf16: oneDNN has no bf16 matmul for M={} N={} K={} on this CPU ({})", M, N, K, e.what());
      }
    }
    prim = it->second;
  }
  static thread_local dnnl::stream stream(dnnl_cpu());
  dnnl::memory a(a_md, dnnl_cpu(), const_cast<bf16*>(A)), b(b_md, dnnl_cpu(), const_cast<bf16*>(B)),
      c(c_md, dnnl_cpu(), C);
  prim.execute(stream, {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}});
  stream.wait();
}

// One output row n for R ≤ kGemvMaxRows input rows: acc[m] = Σ_k A[m,k]·W[n,k], W fp32 or bf16 (widened to
// fp32 in registers: the products and sums are fp32 either way).
template <int R, class WT>
void gemv_row(const float* A, int64_t lda, const WT* w, int64_t K, float* acc) {
  int64_t k = 0;
#if defined(__AVX512F__)
  __m512 s[R];
  for (int m = 0; m < R; ++m) s[m] = _mm512_setzero_ps();
  // bf16 → fp32: zero-extend to 32 bits, shift into the high half. (The masked forms avoid GCC 12's
  // false -Wuninitialized on the unmasked intrinsics' _mm512_undefined operands.)
  auto load_w = [](const WT* p, __mmask16 mask) {
    if constexpr (std::is_same_v<WT, bf16>)
      return _mm512_castsi512_ps(
          _mm512_maskz_slli_epi32(0xffff, _mm512_maskz_cvtepu16_epi32(0xffff, _mm256_maskz_loadu_epi16(mask, p)), 16));
    else
      return _mm512_maskz_loadu_ps(mask, p);
  };
  for (; k + 16 <= K; k += 16) {
    const __m512 wv = load_w(w + k, 0xffff);
    for (int m = 0; m < R; ++m) s[m] = _mm512_fmadd_ps(_mm512_loadu_ps(A + m * lda + k), wv, s[m]);
  }
  if (k < K) {
    const __mmask16 mask = __mmask16((1u << (K - k)) - 1);
    const __m512 wv = load_w(w + k, mask);
    for (int m = 0; m < R; ++m) s[m] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, A + m * lda + k), wv, s[m]);
    k = K;
  }
  for (int m = 0; m < R; ++m) {
    alignas(64) float lanes[16];
    _mm512_store_ps(lanes, s[m]);
    float t = 0;
    for (float x : lanes) t += x;
    acc[m] = t;
  }
#else
  for (int m = 0; m < R; ++m) acc[m] = 0;
#endif
  for (; k < K; ++k)
    for (int m = 0; m < R; ++m) {
      if constexpr (std::is_same_v<WT, bf16>)
        acc[m] += A[m * lda + k] * to_f32(w[k]);
      else
        acc[m] += A[m * lda + k] * w[k];
    }
}

template <int R, class WT>
void gemv_rows(int64_t N, int64_t K, const float* A, int64_t lda, const WT* W, int64_t ldw, bool accumulate,
               float* C, int64_t ldc) {
#pragma omp parallel for schedule(static) if (N * K > 65536 && !omp_in_parallel())
  for (int64_t n = 0; n < N; ++n) {
    float acc[R];
    gemv_row<R>(A, lda, W + n * ldw, K, acc);
    for (int m = 0; m < R; ++m) C[m * ldc + n] = accumulate ? C[m * ldc + n] + acc[m] : acc[m];
  }
}

}  // namespace

template <class WT>
void gemv(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const WT* W, int64_t ldw, bool accumulate,
          float* C, int64_t ldc) {
  check_gemm_args(false, true, M, N, K, A, lda, W, ldw, C, ldc);
  switch (M) {
    case 0: return;
    case 1: return gemv_rows<1>(N, K, A, lda, W, ldw, accumulate, C, ldc);
    case 2: return gemv_rows<2>(N, K, A, lda, W, ldw, accumulate, C, ldc);
    case 3: return gemv_rows<3>(N, K, A, lda, W, ldw, accumulate, C, ldc);
    case 4: return gemv_rows<4>(N, K, A, lda, W, ldw, accumulate, C, ldc);
    case 5: return gemv_rows<5>(N, K, A, lda, W, ldw, accumulate, C, ldc);
    case 6: return gemv_rows<6>(N, K, A, lda, W, ldw, accumulate, C, ldc);
    case 7: return gemv_rows<7>(N, K, A, lda, W, ldw, accumulate, C, ldc);
    case 8: return gemv_rows<8>(N, K, A, lda, W, ldw, accumulate, C, ldc);
    default: fail("gemv: {} rows, at most {} supported", M, kGemvMaxRows);
  }
}
template void gemv<float>(int64_t, int64_t, int64_t, const float*, int64_t, const float*, int64_t, bool, float*,
                          int64_t);
template void gemv<bf16>(int64_t, int64_t, int64_t, const float*, int64_t, const bf16*, int64_t, bool, float*,
                         int64_t);

template <class TA, class TB>
void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const TA* A, int64_t lda, const TB* B,
               int64_t ldb, bool accumulate, float* C, int64_t ldc) {
  check_gemm_args(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc);
  if (M == 0 || N == 0) return;
  if (K == 0) return scale_c(M, N, accumulate ? 1.0f : 0.0f, C, ldc);
  if constexpr (std::is_same_v<TA, float> && std::is_same_v<TB, bf16>)
    if (!trans_a && trans_b && M <= kGemvMaxRows) {
      // The activations are rounded to bf16 here too, so a row's result does not depend on how many rows
      // share the call (a decode batch of 8 and one of 9 give the same logits).
      static thread_local Buffer<float> rounded;
      rounded.resize(size_t(M * K));
      for (int64_t m = 0; m < M; ++m)
        for (int64_t k = 0; k < K; ++k) rounded[size_t(m * K + k)] = round_bf16(A[m * lda + k]);
      return gemv(M, N, K, rounded.data(), K, B, ldb, accumulate, C, ldc);
    }
  const bf16* a = as_bf16(A, trans_a ? K : M, trans_a ? M : K, lda, 0);
  const bf16* b = as_bf16(B, trans_b ? N : K, trans_b ? K : N, ldb, 1);
  matmul_bf16(trans_a, trans_b, M, N, K, a, lda, b, ldb, accumulate, C, ldc);
}

void linear_forward_bf16(const float* x, const bf16* W, float* y, int64_t rows, int64_t in, int64_t out) {
  gemm_bf16(false, true, rows, out, in, x, in, W, in, false, y, out);
}

void linear_backward_bf16(const float* dy, const float* x, const bf16* W, float* dx, float* dW, int64_t rows,
                          int64_t in, int64_t out, bool accumulate_dx) {
  if (rows == 0) return;
  check_gemm_args(false, false, rows, in, out, dy, out, W, in, dx ? dx : dy, in);
  int64_t ld_dy = out;
  const bf16* dy16 = as_bf16(dy, rows, out, ld_dy, 0);  // rounded once, read by both products
  if (dx) matmul_bf16(false, false, rows, in, out, dy16, ld_dy, W, in, accumulate_dx, dx, in);
  if (dW) {
    int64_t ld_x = in;
    const bf16* x16 = as_bf16(x, rows, in, ld_x, 1);
    matmul_bf16(true, false, out, in, rows, dy16, ld_dy, x16, ld_x, true, dW, in);
  }
}

template void gemm_bf16<float, bf16>(bool, bool, int64_t, int64_t, int64_t, const float*, int64_t, const bf16*,
                                     int64_t, bool, float*, int64_t);
template void gemm_bf16<float, float>(bool, bool, int64_t, int64_t, int64_t, const float*, int64_t, const float*,
                                      int64_t, bool, float*, int64_t);
template void gemm_bf16<bf16, float>(bool, bool, int64_t, int64_t, int64_t, const bf16*, int64_t, const float*,
                                     int64_t, bool, float*, int64_t);
template void gemm_bf16<bf16, bf16>(bool, bool, int64_t, int64_t, int64_t, const bf16*, int64_t, const bf16*,
                                    int64_t, bool, float*, int64_t);

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
