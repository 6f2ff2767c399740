// Fused LM head + cross-entropy: finite differences, PyTorch, block sizes, ignored targets.
#include "core/error.h"
#include "kernel_check.h"
#include "ops/cpu/cross_entropy.h"

using namespace txs;
using namespace txs::test;

namespace {
struct Case {
  int64_t rows, dim, vocab;
  std::vector<double> h, W;
  std::vector<int32_t> targets;
  Case(uint64_t seed, int64_t r, int64_t d, int64_t v) : rows(r), dim(d), vocab(v) {
    Rng rng(seed);
    h = random_vector(rng, rows * dim);
    W = random_vector(rng, vocab * dim, 0.7);
    targets.resize(size_t(rows));
    for (auto& t : targets) t = int32_t(rng.below(uint64_t(vocab)));
    targets[1] = -1;  // no target: contributes nothing
    if (rows > 4) targets[4] = -1;
  }
  template <class T>
  cpu::CrossEntropyResult run(std::vector<T>& logprob, std::vector<T>* dh, std::vector<T>* dW, T scale,
                              int64_t block) const {
    auto hv = cast<T>(h), Wv = cast<T>(W);
    logprob.assign(size_t(rows), T(0));
    if (dh) dh->assign(size_t(rows * dim), T(99));  // written, not accumulated
    if (dW) dW->assign(size_t(vocab * dim), T(0));
    return cpu::lm_head_cross_entropy(hv.data(), Wv.data(), targets.data(), rows, dim, vocab, logprob.data(),
                                      dh ? dh->data() : nullptr, dW ? dW->data() : nullptr, scale, block);
  }
};
}  // namespace

// d(scale·loss_sum)/dh and /dW by central differences, every element, in double, with blocks of 2 rows.
TEST(CrossEntropy, GradientCheck) {
  Case c(1, 5, 4, 9);
  const double scale = 1.0 / 3.0;
  std::vector<double> lp, dh, dW;
  auto res = c.run<double>(lp, &dh, &dW, scale, 2);
  EXPECT_EQ(res.counted, 3);
  std::vector<double> h = c.h, W = c.W;
  auto loss = [&] {
    std::vector<double> tl(c.rows);
    return scale * cpu::lm_head_cross_entropy(h.data(), W.data(), c.targets.data(), c.rows, c.dim, c.vocab, tl.data(),
                                              static_cast<double*>(nullptr), static_cast<double*>(nullptr), 1.0, 2)
                       .loss_sum;
  };
  EXPECT_LT(rel_error(dh, numeric_grad(loss, h)), 1e-8);
  EXPECT_LT(rel_error(dW, numeric_grad(loss, W)), 1e-8);
  // Rows without a target: log-prob 0, zero gradient.
  EXPECT_EQ(lp[1], 0.0);
  EXPECT_EQ(lp[4], 0.0);
  for (int64_t i = 0; i < c.dim; ++i) EXPECT_EQ(dh[c.dim + i], 0.0);
}

TEST(CrossEntropy, MatchesTorch) {
  Case c(2, 13, 8, 37);
  // Large logits: without the max subtraction exp() would overflow.
  for (int64_t i = 0; i < c.dim; ++i) c.h[i] *= 200.0;
  const double scale = 1.0 / 11.0;
  std::vector<double> targets_d(c.targets.begin(), c.targets.end());
  auto ref = torch_oracle("cross_entropy",
                          {{"h", tensor({c.rows, c.dim}, c.h)},
                           {"W", tensor({c.vocab, c.dim}, c.W)},
                           {"targets", tensor({c.rows}, targets_d)}},
                          {{"grad_scale", scale}});
  ASSERT_EQ(ref.size(), 4u);
  std::vector<double> lp, dh, dW;
  auto res = c.run<double>(lp, &dh, &dW, scale, 4);
  EXPECT_EQ(res.counted, 11);
  EXPECT_NEAR(res.loss_sum, ref["loss_sum"].data[0], 1e-12 * std::abs(ref["loss_sum"].data[0]));
  EXPECT_LT(rel_error(lp, ref["target_logprob"].data), 1e-13);
  EXPECT_LT(rel_error(dh, ref["dh"].data), 1e-12);
  EXPECT_LT(rel_error(dW, ref["dW"].data), 1e-12);
}

// The block size only bounds memory: every block size gives the unblocked result. Float agrees with double.
TEST(CrossEntropy, BlockedEqualsUnblockedAndFloat) {
  Case c(3, 70, 16, 1000);  // 70 × 1000 logits: above the threshold of the threaded softmax
  std::vector<double> lp0, dh0, dW0;
  const auto r0 = c.run<double>(lp0, &dh0, &dW0, 0.01, c.rows);
  for (int64_t block : {1, 3, 16, 69, 1000}) {
    std::vector<double> lp, dh, dW;
    const auto r = c.run<double>(lp, &dh, &dW, 0.01, block);
    EXPECT_EQ(r.counted, r0.counted);
    EXPECT_NEAR(r.loss_sum, r0.loss_sum, 1e-12 * r0.loss_sum) << block;
    EXPECT_LT(rel_error(lp, lp0), 1e-13) << block;
    EXPECT_LT(rel_error(dh, dh0), 1e-12) << block;
    EXPECT_LT(rel_error(dW, dW0), 1e-12) << block;
    // Without dh the backward is skipped; the loss is the same.
    std::vector<double> lp2;
    EXPECT_NEAR(c.run<double>(lp2, nullptr, nullptr, 0.01, block).loss_sum, r0.loss_sum, 1e-12 * r0.loss_sum);
  }
  for (int64_t block : {7, 256}) {
    std::vector<float> lp, dh, dW;
    const auto r = c.run<float>(lp, &dh, &dW, 0.01f, block);
    EXPECT_NEAR(r.loss_sum, r0.loss_sum, 1e-5 * r0.loss_sum);
    EXPECT_LT(rel_error(to_double(lp.data(), lp.size()), lp0), 1e-5);
    EXPECT_LT(rel_error(to_double(dh.data(), dh.size()), dh0), 1e-5);
    EXPECT_LT(rel_error(to_double(dW.data(), dW.size()), dW0), 1e-5);
  }
}

TEST(CrossEntropy, LogitsAndBadInput) {
  Case c(4, 3, 5, 6);
  std::vector<double> logits(c.rows * c.vocab);
  cpu::lm_head_logits(c.h.data(), c.W.data(), logits.data(), c.rows, c.dim, c.vocab);
  for (int64_t r = 0; r < c.rows; ++r)
    for (int64_t v = 0; v < c.vocab; ++v) {
      double s = 0;
      for (int64_t i = 0; i < c.dim; ++i) s += c.h[r * c.dim + i] * c.W[v * c.dim + i];
      EXPECT_NEAR(logits[r * c.vocab + v], s, 1e-12);
    }
  std::vector<double> lp;
  c.targets[0] = int32_t(c.vocab);
  EXPECT_THROW(c.run<double>(lp, nullptr, nullptr, 1.0, 4), Error);
  c.targets[0] = -2;
  EXPECT_THROW(c.run<double>(lp, nullptr, nullptr, 1.0, 4), Error);
  c.targets[0] = 0;
  EXPECT_THROW(c.run<double>(lp, nullptr, nullptr, 1.0, 0), Error);
}
