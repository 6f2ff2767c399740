// The CUDA dense ops' logic, tested on the host (no GPU needed): the row-major → column-major GEMM plans
// (ops/cuda/bodies/gemm_plan.h), run through a naive column-major GEMM and compared with the CPU backend's
// row-major products; and the LM head's per-row bodies (ops/cuda/bodies/cross_entropy.h), run with simulated
// thread blocks as dense_kernels.cu runs them, compared with plain double math and with the CPU backend's
// lm_head_cross_entropy (fp64 and the bf16 mode) through a host replica of dense.cpp's block loop.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

#include "kernel_check.h"
#include "ops/bf16.h"
#include "ops/cpu/cross_entropy.h"
#include "ops/cpu/gemm.h"
#include "ops/cuda/bodies/cross_entropy.h"
#include "ops/cuda/bodies/gemm_plan.h"

using namespace txs;
using namespace txs::test;
using cuda::ColumnMajorGemm;
using cuda::RowMajorGemm;

namespace {

// cuBLASLt's contract, naively: D(i,j) = Σ_p op(first)(i,p)·op(second)(p,j) + beta·D(i,j), column-major,
// X(i,j) at X[i + j·ld]. The layouts must describe the stored matrices (op shapes, ld ≥ rows), and every
// access is bounds-checked against the buffers, so a wrong leading dimension or swapped operand fails.
void column_major_gemm(const ColumnMajorGemm& g, const std::vector<double>& first, const std::vector<double>& second,
                       std::vector<double>& c, double beta) {
  const bool shapes_ok = (g.trans_first ? g.first_cols : g.first_rows) == g.m &&
                         (g.trans_first ? g.first_rows : g.first_cols) == g.k &&
                         (g.trans_second ? g.second_cols : g.second_rows) == g.k &&
                         (g.trans_second ? g.second_rows : g.second_cols) == g.n && g.c_rows == g.m &&
                         g.c_cols == g.n && g.ld_first >= std::max<int64_t>(1, g.first_rows) &&
                         g.ld_second >= std::max<int64_t>(1, g.second_rows) &&
                         g.ldc >= std::max<int64_t>(1, g.c_rows);
  if (!shapes_ok) throw std::invalid_argument("column-major layouts inconsistent with m, n, k");
  auto at = [](const std::vector<double>& v, int64_t i) {
    if (i < 0 || size_t(i) >= v.size()) throw std::out_of_range("column-major access outside the buffer");
    return v[size_t(i)];
  };
  for (int64_t j = 0; j < g.n; ++j)
    for (int64_t i = 0; i < g.m; ++i) {
      double s = 0;
      for (int64_t p = 0; p < g.k; ++p) {
        const double a = g.trans_first ? at(first, p + i * g.ld_first) : at(first, i + p * g.ld_first);
        const double b = g.trans_second ? at(second, j + p * g.ld_second) : at(second, p + j * g.ld_second);
        s += a * b;
      }
      const int64_t ci = i + j * g.ldc;
      if (ci >= int64_t(c.size())) throw std::out_of_range("column-major write outside C");
      c[size_t(ci)] = beta == 0 ? s : beta * c[size_t(ci)] + s;
    }
}

// Runs a row-major plan the way dense.cpp does: cuBLASLt's first operand is the row-major B, second is A.
void run_plan(const RowMajorGemm& plan, const std::vector<double>& A, const std::vector<double>& B,
              std::vector<double>& C, double beta) {
  column_major_gemm(cuda::to_column_major(plan), B, A, C, beta);
}

struct LinearShape {
  int64_t rows, in, out;
};
const LinearShape kLinearShapes[] = {{1, 1, 1}, {3, 5, 7}, {17, 9, 4}, {8, 33, 65}, {2, 64, 3}};

}  // namespace

// The plan of each product is the CPU's own row-major call; check the column-major translation against it.
TEST(CudaGemmPlan, LinearForwardMatchesCpu) {
  for (const auto& s : kLinearShapes) {
    Rng rng(uint64_t(s.rows * 100 + s.in * 10 + s.out));
    const auto x = random_vector(rng, size_t(s.rows * s.in)), W = random_vector(rng, size_t(s.out * s.in));
    std::vector<double> want(size_t(s.rows * s.out)), got(want.size(), std::nan(""));
    cpu::linear_forward<double>(x.data(), W.data(), want.data(), s.rows, s.in, s.out);
    run_plan(cuda::plan_linear_forward(s.rows, s.in, s.out), x, W, got, 0.0);  // beta 0 ignores the NaNs
    EXPECT_LT(rel_error(got, want), 1e-13) << s.rows << "x" << s.in << "->" << s.out;
  }
}

TEST(CudaGemmPlan, LinearBackwardMatchesCpu) {
  for (const auto& s : kLinearShapes)
    for (bool accumulate_dx : {false, true}) {
      Rng rng(uint64_t(s.rows * 7 + s.in * 3 + s.out));
      const auto x = random_vector(rng, size_t(s.rows * s.in)), W = random_vector(rng, size_t(s.out * s.in));
      const auto dy = random_vector(rng, size_t(s.rows * s.out));
      const auto dx0 = random_vector(rng, size_t(s.rows * s.in)), dW0 = random_vector(rng, size_t(s.out * s.in));
      std::vector<double> dx_want = dx0, dW_want = dW0, dx_got = dx0, dW_got = dW0;
      cpu::linear_backward<double>(dy.data(), x.data(), W.data(), dx_want.data(), dW_want.data(), s.rows, s.in, s.out,
                                   accumulate_dx);
      run_plan(cuda::plan_linear_dx(s.rows, s.in, s.out), dy, W, dx_got, accumulate_dx ? 1.0 : 0.0);
      run_plan(cuda::plan_linear_dw(s.rows, s.in, s.out), dy, x, dW_got, 1.0);
      EXPECT_LT(rel_error(dx_got, dx_want), 1e-13) << s.rows << "x" << s.in << "->" << s.out;
      EXPECT_LT(rel_error(dW_got, dW_want), 1e-13) << s.rows << "x" << s.in << "->" << s.out;
    }
}

// lm_head_logits writes rows with a stride above the vocabulary: the columns past it stay untouched.
TEST(CudaGemmPlan, LmHeadLogitsWithRowStride) {
  const int64_t rows = 5, dim = 7, vocab = 11, stride = 16;
  Rng rng(3);
  const auto h = random_vector(rng, size_t(rows * dim)), W = random_vector(rng, size_t(vocab * dim));
  std::vector<double> want(size_t(rows * vocab));
  cpu::lm_head_logits<double, double>(h.data(), W.data(), want.data(), rows, dim, vocab);
  std::vector<double> got(size_t(rows * stride), 42.0);
  run_plan(cuda::plan_lm_head_logits(rows, dim, vocab, stride), h, W, got, 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < stride; ++j) {
      if (j < vocab)
        EXPECT_NEAR(got[size_t(r * stride + j)], want[size_t(r * vocab + j)], 1e-12);
      else
        EXPECT_EQ(got[size_t(r * stride + j)], 42.0) << "padding column " << j << " of row " << r;
    }
}

// The LM head's gradient products (dh = dz·W, dW += dzᵀ·h) against the CPU's gemm calls.
TEST(CudaGemmPlan, LmHeadGradientProductsMatchCpu) {
  const int64_t rows = 6, dim = 5, vocab = 13;
  Rng rng(4);
  const auto h = random_vector(rng, size_t(rows * dim)), W = random_vector(rng, size_t(vocab * dim));
  const auto dz = random_vector(rng, size_t(rows * vocab)), dW0 = random_vector(rng, size_t(vocab * dim));
  std::vector<double> dh_want(size_t(rows * dim)), dW_want = dW0;
  cpu::gemm<double>(false, false, rows, dim, vocab, 1.0, dz.data(), vocab, W.data(), dim, 0.0, dh_want.data(), dim);
  cpu::gemm<double>(true, false, vocab, dim, rows, 1.0, dz.data(), vocab, h.data(), dim, 1.0, dW_want.data(), dim);
  std::vector<double> dh_got(dh_want.size(), std::nan("")), dW_got = dW0;
  run_plan(cuda::plan_lm_head_dh(rows, dim, vocab), dz, W, dh_got, 0.0);
  run_plan(cuda::plan_lm_head_dw(rows, dim, vocab), dz, h, dW_got, 1.0);
  EXPECT_LT(rel_error(dh_got, dh_want), 1e-13);
  EXPECT_LT(rel_error(dW_got, dW_want), 1e-13);
}

// A wrong plan must not pass the executor: swapping the transposes of a product is caught.
TEST(CudaGemmPlan, ExecutorRejectsAWrongLayout) {
  RowMajorGemm wrong = cuda::plan_linear_forward(3, 5, 7);
  wrong.trans_b = false;  // W [7,5] read as if it were [5,7]
  const std::vector<double> x(15, 1.0), W(35, 1.0);
  std::vector<double> y(21);
  EXPECT_THROW(run_plan(wrong, x, W, y, 0.0), std::invalid_argument);
  RowMajorGemm wrong_ld = cuda::plan_linear_dx(3, 5, 7);
  wrong_ld.ldb = 7;  // W [7,5] with its row length mistaken: reads past W
  EXPECT_THROW(run_plan(wrong_ld, std::vector<double>(21, 1.0), W, y, 0.0), std::out_of_range);
}

namespace {

// The row kernel on the host: nb rows, one simulated block of `threads` threads per row, the same three
// phases (the block reductions become loops over the threads).
void emulate_ce_rows(std::vector<float>& logits, int64_t nb, int64_t vocab, const int32_t* targets, bool backward,
                     float grad_scale, uint16_t* dz16, double* row_logprob, float* target_logprob, int threads) {
  for (int64_t row = 0; row < nb; ++row) {
    float* z = logits.data() + row * vocab;
    uint16_t* dz16_row = dz16 ? dz16 + row * vocab : nullptr;
    const int32_t target = targets[row];
    if (!cuda::ce_counted(target, vocab)) {
      if (backward)
        for (int t = 0; t < threads; ++t) cuda::ce_zero_grad(z, dz16_row, vocab, t, threads);
      row_logprob[row] = 0.0;
      if (target_logprob) target_logprob[row] = 0.0f;
      continue;
    }
    const float z_target = z[target];
    float m = -INFINITY;
    for (int t = 0; t < threads; ++t) m = std::max(m, cuda::ce_partial_max(z, vocab, t, threads));
    double sum = 0;
    for (int t = 0; t < threads; ++t) sum += cuda::ce_partial_sum_exp(z, vocab, m, t, threads);
    const double lse = cuda::ce_log_sum_exp(m, sum);
    row_logprob[row] = cuda::ce_target_logprob(z_target, lse);
    if (target_logprob) target_logprob[row] = float(row_logprob[row]);
    if (backward)
      for (int t = 0; t < threads; ++t) cuda::ce_write_grad(z, dz16_row, vocab, target, lse, grad_scale, t, threads);
  }
}

cuda::CeTotals emulate_totals(const std::vector<double>& row_logprob, const std::vector<int32_t>& targets,
                              int64_t vocab, int threads) {
  std::vector<cuda::CeTotals> shares;
  for (int t = 0; t < threads; ++t)
    shares.push_back(cuda::ce_partial_totals(row_logprob.data(), targets.data(), int64_t(targets.size()), vocab, t,
                                             threads));
  // The kernel's tree: pairs (t, t + off) for off = threads/2, …, 1 (threads a power of two).
  for (int off = threads / 2; off > 0; off /= 2)
    for (int t = 0; t < off; ++t) shares[size_t(t)] = cuda::ce_combine_totals(shares[size_t(t)], shares[size_t(t + off)]);
  return shares[0];
}

// log-softmax and its gradient in plain double.
struct RowRef {
  double logprob, lse;
  std::vector<double> grad;  // scale·(softmax − onehot)
};
RowRef reference_row(const float* z, int64_t vocab, int32_t target, double scale) {
  double m = -INFINITY;
  for (int64_t j = 0; j < vocab; ++j) m = std::max(m, double(z[j]));
  double s = 0;
  for (int64_t j = 0; j < vocab; ++j) s += std::exp(double(z[j]) - m);
  const double lse = m + std::log(s);
  RowRef r{double(z[target]) - lse, lse, std::vector<double>(size_t(vocab))};
  for (int64_t j = 0; j < vocab; ++j) r.grad[size_t(j)] = scale * (std::exp(double(z[j]) - lse) - (j == target));
  return r;
}

}  // namespace

// Ragged vocabularies against simulated blocks larger and smaller than the row; huge logits stay finite.
TEST(CudaCrossEntropyBodies, RowsMatchDoubleMath) {
  for (int threads : {1, 3, 32, 256})
    for (int64_t vocab : {1, 2, 7, 31, 300}) {
      Rng rng(uint64_t(threads * 1000 + vocab));
      const int64_t nb = 5;
      std::vector<float> logits(size_t(nb * vocab));
      for (auto& z : logits) z = float(3 * rng.normal());
      for (int64_t j = 0; j < vocab; ++j) {
        logits[size_t(2 * vocab + j)] += 1e4f;          // exp would overflow without the max subtracted
        logits[size_t(3 * vocab + j)] = float(j % 2 ? 3e38 : -3e38);  // z − m overflows to −inf: exp gives 0
      }
      std::vector<int32_t> targets = {int32_t(vocab - 1), -1, int32_t(vocab / 2), 0, int32_t(vocab / 3)};
      const float scale = 0.25f;
      const std::vector<float> original = logits;
      std::vector<double> row_logprob(size_t(nb), 99.0);
      std::vector<float> target_logprob(size_t(nb), 99.0f);
      emulate_ce_rows(logits, nb, vocab, targets.data(), true, scale, nullptr, row_logprob.data(),
                      target_logprob.data(), threads);
      for (int64_t r = 0; r < nb; ++r) {
        const float* z0 = original.data() + r * vocab;
        const float* dz = logits.data() + r * vocab;
        if (targets[size_t(r)] < 0) {
          EXPECT_EQ(row_logprob[size_t(r)], 0.0);
          EXPECT_EQ(target_logprob[size_t(r)], 0.0f);
          for (int64_t j = 0; j < vocab; ++j) EXPECT_EQ(dz[j], 0.0f);
          continue;
        }
        const RowRef ref = reference_row(z0, vocab, targets[size_t(r)], scale);
        ASSERT_TRUE(std::isfinite(row_logprob[size_t(r)])) << "row " << r << " vocab " << vocab;
        EXPECT_NEAR(row_logprob[size_t(r)], ref.logprob, 1e-5 * std::max(1.0, std::abs(ref.logprob)))
            << "row " << r << " vocab " << vocab << " threads " << threads;
        EXPECT_EQ(target_logprob[size_t(r)], float(row_logprob[size_t(r)]));
        // exp(z − float(lse)) carries lse's fp32 rounding (as the CPU's formula does): relative 2⁻²⁴·|lse|.
        const double lse_rounding = 0x1p-23 * std::abs(ref.lse);
        for (int64_t j = 0; j < vocab; ++j) {
          const double p = ref.grad[size_t(j)] + (j == targets[size_t(r)] ? scale : 0.0);
          EXPECT_NEAR(dz[j], ref.grad[size_t(j)], 2e-6 + p * lse_rounding)
              << "row " << r << " col " << j << " vocab " << vocab;
        }
      }
    }
}

// Without backward the logits stay as they were; with bf16 gradients they stay too and dz16 gets
// bf16(fp32 gradient) — the exact bits the CPU's to_bf16 gives.
TEST(CudaCrossEntropyBodies, ForwardOnlyAndBf16Gradient) {
  const int64_t nb = 4, vocab = 37;
  Rng rng(9);
  std::vector<float> logits(size_t(nb * vocab));
  for (auto& z : logits) z = float(2 * rng.normal());
  const std::vector<int32_t> targets = {3, 36, -1, 0};
  std::vector<double> lp(static_cast<size_t>(nb));
  std::vector<float> forward_only = logits;
  emulate_ce_rows(forward_only, nb, vocab, targets.data(), false, 1.0f, nullptr, lp.data(), nullptr, 8);
  EXPECT_EQ(forward_only, logits);

  std::vector<float> fp32_grad = logits, bf16_mode = logits;
  std::vector<double> lp32(static_cast<size_t>(nb)), lp16(static_cast<size_t>(nb));
  std::vector<uint16_t> dz16(size_t(nb * vocab), 0xffff);
  emulate_ce_rows(fp32_grad, nb, vocab, targets.data(), true, 0.5f, nullptr, lp32.data(), nullptr, 8);
  emulate_ce_rows(bf16_mode, nb, vocab, targets.data(), true, 0.5f, dz16.data(), lp16.data(), nullptr, 8);
  EXPECT_EQ(bf16_mode, logits);
  EXPECT_EQ(lp32, lp16);
  for (size_t i = 0; i < dz16.size(); ++i) EXPECT_EQ(dz16[i], bf16_bits(fp32_grad[i])) << i;
  // Rounding happened: some gradient is not a bf16 value already.
  size_t rounded = 0;
  for (size_t i = 0; i < dz16.size(); ++i) rounded += cuda::bf16_to_f32(dz16[i]) != fp32_grad[i];
  EXPECT_GT(rounded, dz16.size() / 2);
}

TEST(CudaCrossEntropyBodies, TotalsAndInvalidTargets) {
  const int64_t vocab = 10;
  std::vector<int32_t> targets;
  std::vector<double> lp;
  double want = 0;
  int64_t counted = 0;
  for (int r = 0; r < 1000; ++r) {
    const int32_t t = r % 7 == 3 ? -1 : int32_t(r % int(vocab));
    targets.push_back(t);
    lp.push_back(t >= 0 ? -0.001 * (r + 1) : 0.0);
    if (t >= 0) {
      want += 0.001 * (r + 1);
      ++counted;
    }
  }
  for (int threads : {1, 2, 256}) {
    const auto tot = emulate_totals(lp, targets, vocab, threads);
    EXPECT_NEAR(tot.loss_sum, want, 1e-9);
    EXPECT_EQ(tot.counted, counted);
    EXPECT_EQ(tot.first_bad_row, -1);
  }
  targets[700] = int32_t(vocab);  // out of range: reported, the smallest such row
  targets[901] = -2;
  targets[650] = 99;
  for (int threads : {1, 4, 256}) EXPECT_EQ(emulate_totals(lp, targets, vocab, threads).first_bad_row, 650);
  // The row kernel treats an invalid target as not counted (never reads z[target]).
  EXPECT_FALSE(cuda::ce_counted(int32_t(vocab), vocab));
  EXPECT_FALSE(cuda::ce_counted(-1, vocab));
  EXPECT_FALSE(cuda::ce_invalid(-1, vocab));
  EXPECT_TRUE(cuda::ce_invalid(-2, vocab));
}

TEST(CudaCrossEntropyBodies, BlockRows) {
  EXPECT_EQ(cuda::lm_head_block_rows(10000, 50304, int64_t(64) << 20), 320);  // 333 fit, kept a multiple of 64
  EXPECT_EQ(cuda::lm_head_block_rows(100, 50304, int64_t(64) << 20), 100);
  EXPECT_EQ(cuda::lm_head_block_rows(10, 1000, 4 * 1000 * 3), 3);
  EXPECT_EQ(cuda::lm_head_block_rows(10, int64_t(1) << 30, 1024), 1);  // never zero
  EXPECT_EQ(cuda::lm_head_block_rows(0, 100, 1 << 20), 1);
}

namespace {

// dense.cpp's lm_head_cross_entropy on the host: the same blocks, plans (through the column-major GEMM)
// and bodies. bf16: W holds bf16 values; h is rounded per block, the gradient goes through dz16.
struct HostLmHead {
  cuda::CeTotals totals;
  std::vector<float> target_logprob;
  std::vector<double> dh, dW;
};
HostLmHead emulate_lm_head(const std::vector<float>& h, const std::vector<float>& W, bool bf16_mode,
                           const std::vector<int32_t>& targets, int64_t rows, int64_t dim, int64_t vocab,
                           float grad_scale, int64_t budget_bytes, int threads) {
  HostLmHead out;
  out.target_logprob.assign(size_t(rows), 99.0f);
  out.dh.assign(size_t(rows * dim), 99.0);
  out.dW.assign(size_t(vocab * dim), 0.5);  // accumulated onto
  std::vector<double> row_logprob(static_cast<size_t>(rows));
  const std::vector<double> Wd(W.begin(), W.end());
  const int64_t block = cuda::lm_head_block_rows(rows, vocab, budget_bytes);
  for (int64_t r0 = 0; r0 < rows; r0 += block) {
    const int64_t nb = std::min(block, rows - r0);
    std::vector<double> hb(size_t(nb * dim));
    for (size_t i = 0; i < hb.size(); ++i) {
      const float v = h[size_t(r0 * dim) + i];
      hb[i] = bf16_mode ? cuda::bf16_to_f32(cuda::f32_to_bf16(v)) : v;
    }
    std::vector<double> logits_d(size_t(nb * vocab));
    run_plan(cuda::plan_lm_head_logits(nb, dim, vocab, vocab), hb, Wd, logits_d, 0.0);
    std::vector<float> logits(logits_d.begin(), logits_d.end());  // cuBLASLt writes fp32
    std::vector<uint16_t> dz16(bf16_mode ? size_t(nb * vocab) : 0);
    emulate_ce_rows(logits, nb, vocab, targets.data() + r0, true, grad_scale, bf16_mode ? dz16.data() : nullptr,
                    row_logprob.data() + r0, out.target_logprob.data() + r0, threads);
    std::vector<double> dz(size_t(nb * vocab));
    for (size_t i = 0; i < dz.size(); ++i) dz[i] = bf16_mode ? cuda::bf16_to_f32(dz16[i]) : logits[i];
    std::vector<double> dh_block(size_t(nb * dim), std::nan(""));
    run_plan(cuda::plan_lm_head_dh(nb, dim, vocab), dz, Wd, dh_block, 0.0);
    std::copy(dh_block.begin(), dh_block.end(), out.dh.begin() + r0 * dim);
    run_plan(cuda::plan_lm_head_dw(nb, dim, vocab), dz, hb, out.dW, 1.0);
  }
  out.totals = emulate_totals(row_logprob, targets, vocab, threads);
  return out;
}

struct LmHeadCase {
  int64_t rows, dim, vocab;
  std::vector<double> h, W;
  std::vector<int32_t> targets;
  LmHeadCase(uint64_t seed, int64_t r, int64_t d, int64_t v) : rows(r), dim(d), vocab(v) {
    Rng rng(seed);
    h = random_vector(rng, size_t(rows * dim));
    W = random_vector(rng, size_t(vocab * dim), 0.7);
    for (int64_t i = 0; i < rows; ++i) targets.push_back(i % 4 == 1 ? -1 : int32_t(rng.below(uint64_t(vocab))));
  }
};

}  // namespace

// fp32 mode: the host replica (blocks of 4 rows, the last ragged) against the CPU's fp64 template.
TEST(CudaLmHead, Fp32ReplicaMatchesCpuFp64) {
  const LmHeadCase c(11, 11, 6, 29);
  const float scale = 1.0f / 8;
  std::vector<double> lp(size_t(c.rows)), dh(size_t(c.rows * c.dim)), dW(size_t(c.vocab * c.dim), 0.5);
  const auto want = cpu::lm_head_cross_entropy<double, double>(c.h.data(), c.W.data(), c.targets.data(), c.rows,
                                                               c.dim, c.vocab, lp.data(), dh.data(), dW.data(),
                                                               double(scale), 3);
  for (int threads : {4, 256}) {
    const auto got = emulate_lm_head(cast<float>(c.h), cast<float>(c.W), false, c.targets, c.rows, c.dim, c.vocab,
                                     scale, 4 * c.vocab * int64_t(sizeof(float)), threads);
    EXPECT_EQ(got.totals.counted, want.counted);
    EXPECT_EQ(got.totals.first_bad_row, -1);
    EXPECT_NEAR(got.totals.loss_sum, want.loss_sum, 1e-5 * want.loss_sum);
    EXPECT_LT(rel_error(std::vector<double>(got.target_logprob.begin(), got.target_logprob.end()), lp), 1e-5);
    EXPECT_LT(rel_error(got.dh, dh), 1e-5);
    EXPECT_LT(rel_error(got.dW, dW), 1e-5);
  }
}

// bf16 mode: the replica (bf16 h, W and dlogits, double accumulation where cuBLASLt accumulates in fp32)
// against the CPU's bf16 mode; rounding dlogits to bf16 once is what makes the gradients agree this closely.
TEST(CudaLmHead, Bf16ReplicaMatchesCpuBf16Mode) {
  const LmHeadCase c(12, 13, 16, 41);
  const float scale = 1.0f / 9;
  std::vector<bf16> W16(c.W.size());
  std::vector<float> W_rounded(c.W.size());
  for (size_t i = 0; i < c.W.size(); ++i) {
    W16[i] = to_bf16(float(c.W[i]));
    W_rounded[i] = to_f32(W16[i]);
  }
  const auto h32 = cast<float>(c.h);
  std::vector<float> lp(size_t(c.rows)), dh(size_t(c.rows * c.dim)), dW(size_t(c.vocab * c.dim), 0.5f);
  const auto want = cpu::lm_head_cross_entropy<float, bf16>(h32.data(), W16.data(), c.targets.data(), c.rows, c.dim,
                                                            c.vocab, lp.data(), dh.data(), dW.data(), scale, 5);
  const auto got = emulate_lm_head(h32, W_rounded, true, c.targets, c.rows, c.dim, c.vocab, scale,
                                   5 * c.vocab * int64_t(sizeof(float)), 32);
  EXPECT_EQ(got.totals.counted, want.counted);
  EXPECT_NEAR(got.totals.loss_sum, want.loss_sum, 1e-5 * want.loss_sum);
  const std::vector<double> lp_d(lp.begin(), lp.end()), dh_d(dh.begin(), dh.end()), dW_d(dW.begin(), dW.end());
  EXPECT_LT(rel_error(std::vector<double>(got.target_logprob.begin(), got.target_logprob.end()), lp_d), 1e-5);
  const double dh_err = rel_error(got.dh, dh_d), dW_err = rel_error(got.dW, dW_d);
  EXPECT_LT(dh_err, 1e-4);
  EXPECT_LT(dW_err, 1e-4);

  // Without the bf16 rounding of h (the fp32 replica on the same bf16 weights) the gradients differ far more:
  // the comparison above does see the bf16 mode's roundings.
  const auto unrounded = emulate_lm_head(h32, W_rounded, false, c.targets, c.rows, c.dim, c.vocab, scale,
                                         5 * c.vocab * int64_t(sizeof(float)), 32);
  EXPECT_GT(rel_error(unrounded.dh, dh_d), 10 * dh_err);
  EXPECT_GT(rel_error(unrounded.dW, dW_d), 10 * dW_err);
}
