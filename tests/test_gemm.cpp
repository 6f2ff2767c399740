// gemm (oneDNN sgemm / OpenBLAS dgemm) and the Linear layer built on it.
#include <omp.h>

#include <filesystem>

#include "core/error.h"
#include "kernel_check.h"
#include "ops/cpu/gemm.h"

using namespace txs;
using namespace txs::test;

namespace {

// Plain triple loop in double: the reference for every transpose / stride / alpha / beta case.
std::vector<double> naive_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha,
                               const std::vector<double>& A, int64_t lda, const std::vector<double>& B, int64_t ldb,
                               double beta, std::vector<double> C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k)
        s += (ta ? A[k * lda + i] : A[i * lda + k]) * (tb ? B[j * ldb + k] : B[k * ldb + j]);
      C[i * ldc + j] = alpha * s + beta * C[i * ldc + j];
    }
  return C;
}

int thread_count() {
  int n = 0;
  for (auto& e : std::filesystem::directory_iterator("/proc/self/task")) n += e.exists() ? 1 : 0;
  return n;
}

}  // namespace

// Every transpose combination with padded leading dimensions, alpha and beta, in float and double.
TEST(Gemm, MatchesNaiveForAllTransposes) {
  Rng rng(1);
  const int64_t M = 37, N = 29, K = 41, pad = 3;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      const int64_t lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
      auto A = random_vector(rng, size_t((ta ? K : M) * lda));
      auto B = random_vector(rng, size_t((tb ? N : K) * ldb));
      auto C = random_vector(rng, size_t(M * ldc));
      const auto ref = naive_gemm(ta, tb, M, N, K, 0.7, A, lda, B, ldb, -0.3, C, ldc);

      auto Cd = C;
      cpu::gemm<double>(ta, tb, M, N, K, 0.7, A.data(), lda, B.data(), ldb, -0.3, Cd.data(), ldc);
      EXPECT_LT(rel_error(Cd, ref), 1e-14) << "double ta=" << ta << " tb=" << tb;

      auto Af = cast<float>(A), Bf = cast<float>(B), Cf = cast<float>(C);
      cpu::gemm<float>(ta, tb, M, N, K, 0.7f, Af.data(), lda, Bf.data(), ldb, -0.3f, Cf.data(), ldc);
      EXPECT_LT(rel_error(to_double(Cf.data(), Cf.size()), ref), 2e-6) << "float ta=" << ta << " tb=" << tb;
    }
}

// beta = 0 must ignore C's old contents (BLAS convention: even NaN), K = 0 leaves beta·C.
TEST(Gemm, BetaZeroAndEmptyK) {
  Rng rng(2);
  const int64_t M = 5, N = 6, K = 7;
  auto A = random_vector(rng, M * K), B = random_vector(rng, K * N);
  std::vector<double> C(M * N, NAN);
  cpu::gemm<double>(false, false, M, N, K, 1.0, A.data(), K, B.data(), N, 0.0, C.data(), N);
  EXPECT_LT(rel_error(C, naive_gemm(false, false, M, N, K, 1, A, K, B, N, 0, std::vector<double>(M * N), N)), 1e-14);
  std::vector<float> Cf(M * N, NAN), Af = cast<float>(A), Bf = cast<float>(B);
  cpu::gemm<float>(false, false, M, N, K, 1.f, Af.data(), K, Bf.data(), N, 0.f, Cf.data(), N);
  for (float c : Cf) EXPECT_TRUE(std::isfinite(c));

  std::vector<float> Ck(M * N, 2.f);
  cpu::gemm<float>(false, false, M, N, 0, 1.f, nullptr, 1, nullptr, N, 0.5f, Ck.data(), N);
  for (float c : Ck) EXPECT_EQ(c, 1.f);
  std::vector<double> Cz(M * N, NAN);
  cpu::gemm<double>(false, false, M, N, 0, 1.0, nullptr, 1, nullptr, N, 0.0, Cz.data(), N);
  for (double c : Cz) EXPECT_EQ(c, 0.0);
}

TEST(Gemm, BadArgumentsThrow) {
  std::vector<float> a(16), b(16), c(16);
  EXPECT_THROW(cpu::gemm<float>(false, false, -1, 4, 4, 1.f, a.data(), 4, b.data(), 4, 0.f, c.data(), 4), Error);
  EXPECT_THROW(cpu::gemm<float>(false, false, 4, 4, 4, 1.f, a.data(), 3, b.data(), 4, 0.f, c.data(), 4), Error);
  EXPECT_THROW(cpu::gemm<float>(false, true, 4, 4, 4, 1.f, a.data(), 4, b.data(), 3, 0.f, c.data(), 4), Error);
  EXPECT_THROW(cpu::gemm<float>(false, false, 4, 4, 4, 1.f, a.data(), 4, b.data(), 4, 0.f, c.data(), 2), Error);
}

// Called from inside a parallel region every thread gets a correct product of its own, and no thread
// team is nested under ours even when nesting is allowed (that would oversubscribe the cores).
TEST(Gemm, NestedInsideOpenMPRegion) {
  const int saved_levels = omp_get_max_active_levels();
  omp_set_max_active_levels(4);
  const int nt = std::max(2, omp_get_max_threads());
  const int64_t M = 96, N = 80, K = 112;
  Rng rng(3);
  std::vector<std::vector<double>> A(nt), B(nt), refs(nt);
  for (int t = 0; t < nt; ++t) {
    A[t] = random_vector(rng, M * K);
    B[t] = random_vector(rng, K * N);
    refs[t] = naive_gemm(false, true, M, N, K, 1, A[t], K, B[t], K, 0, std::vector<double>(M * N), N);
  }
  std::vector<std::vector<float>> Cf(nt, std::vector<float>(M * N));
  std::vector<std::vector<double>> Cd(nt, std::vector<double>(M * N));
  // Threads are counted inside the region, before and after the calls: a team nested by the library
  // would show up as extra threads (nested teams' threads stay pooled after their region ends).
  int before = 0, during = 0;
#pragma omp parallel num_threads(nt)
  {
#pragma omp single
    before = thread_count();  // the whole outer team exists here; the single's barrier holds everyone
    const int t = omp_get_thread_num();
    auto Af = cast<float>(A[t]), Bf = cast<float>(B[t]);
    for (int rep = 0; rep < 3; ++rep) {
      cpu::gemm<float>(false, true, M, N, K, 1.f, Af.data(), K, Bf.data(), K, 0.f, Cf[t].data(), N);
      cpu::gemm<double>(false, true, M, N, K, 1.0, A[t].data(), K, B[t].data(), K, 0.0, Cd[t].data(), N);
    }
    const int n = thread_count();
#pragma omp critical
    during = std::max(during, n);
  }
  omp_set_max_active_levels(saved_levels);
  EXPECT_LE(during, before) << "gemm started extra threads inside a parallel region";
  for (int t = 0; t < nt; ++t) {
    EXPECT_LT(rel_error(to_double(Cf[t].data(), Cf[t].size()), refs[t]), 2e-6) << "thread " << t;
    EXPECT_LT(rel_error(Cd[t], refs[t]), 1e-14) << "thread " << t;
  }
}

// Linear: central differences of L = Σ dy ⊙ (x·Wᵀ) for every element of x and W, in double.
TEST(Linear, GradientCheck) {
  Rng rng(4);
  const int64_t rows = 5, in = 7, out = 6;
  auto x = random_vector(rng, rows * in), W = random_vector(rng, out * in), dy = random_vector(rng, rows * out);
  std::vector<double> y(rows * out);
  auto loss = [&] {
    cpu::linear_forward(x.data(), W.data(), y.data(), rows, in, out);
    return dot(y, dy);
  };
  std::vector<double> dx(rows * in, 123.0), dW(out * in, 0.0);
  cpu::linear_backward(dy.data(), x.data(), W.data(), dx.data(), dW.data(), rows, in, out);
  EXPECT_LT(rel_error(dx, numeric_grad(loss, x)), 1e-8);
  EXPECT_LT(rel_error(dW, numeric_grad(loss, W)), 1e-8);

  // accumulate_dx adds onto dx; dW always accumulates; dx may be null.
  auto dx2 = dx, dW2 = dW;
  cpu::linear_backward(dy.data(), x.data(), W.data(), dx2.data(), dW2.data(), rows, in, out, true);
  cpu::linear_backward<double>(dy.data(), x.data(), W.data(), nullptr, dW2.data(), rows, in, out);
  for (size_t i = 0; i < dx.size(); ++i) EXPECT_NEAR(dx2[i], 2 * dx[i], 1e-12);
  for (size_t i = 0; i < dW.size(); ++i) EXPECT_NEAR(dW2[i], 3 * dW[i], 1e-12);
}

TEST(Linear, MatchesTorchAndFloat) {
  Rng rng(5);
  const int64_t rows = 9, in = 12, out = 10;
  auto x = random_vector(rng, rows * in), W = random_vector(rng, out * in), dy = random_vector(rng, rows * out);
  auto ref = torch_oracle("gemm",
                          {{"x", tensor({rows, in}, x)}, {"W", tensor({out, in}, W)}, {"dy", tensor({rows, out}, dy)}});
  ASSERT_EQ(ref.size(), 3u);
  std::vector<double> y(rows * out), dx(rows * in), dW(out * in, 0.0);
  cpu::linear_forward(x.data(), W.data(), y.data(), rows, in, out);
  cpu::linear_backward(dy.data(), x.data(), W.data(), dx.data(), dW.data(), rows, in, out);
  EXPECT_LT(rel_error(y, ref["y"].data), 1e-12);
  EXPECT_LT(rel_error(dx, ref["dx"].data), 1e-12);
  EXPECT_LT(rel_error(dW, ref["dW"].data), 1e-12);

  auto xf = cast<float>(x), Wf = cast<float>(W), dyf = cast<float>(dy);
  std::vector<float> yf(rows * out), dxf(rows * in), dWf(out * in, 0.f);
  cpu::linear_forward(xf.data(), Wf.data(), yf.data(), rows, in, out);
  cpu::linear_backward(dyf.data(), xf.data(), Wf.data(), dxf.data(), dWf.data(), rows, in, out);
  EXPECT_LT(rel_error(to_double(yf.data(), yf.size()), y), 2e-6);
  EXPECT_LT(rel_error(to_double(dxf.data(), dxf.size()), dx), 2e-6);
  EXPECT_LT(rel_error(to_double(dWf.data(), dWf.size()), dW), 2e-6);
}
