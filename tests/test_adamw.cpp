// AdamW against torch.optim.AdamW, and the global-norm helpers.
#include <omp.h>

#include "core/error.h"
#include "kernel_check.h"
#include "ops/cpu/adamw.h"

using namespace txs;
using namespace txs::test;

namespace {
// Runs `steps` updates from (w, m, v) at 1-based step `first_step` in the kernel (float) and in
// torch.optim.AdamW (float64), and compares the parameter change and both moments.
void compare_with_torch(uint64_t seed, int64_t first_step, int steps, bool decay) {
  const int64_t n = 257;
  Rng rng(seed);
  auto w = random_vector(rng, n, 0.02);  // initialiser scale of the model's weights
  std::vector<double> m(n, 0.0), v(n, 0.0);
  if (first_step > 1) {  // moments as left by earlier steps
    m = random_vector(rng, n, 0.01);
    for (auto& x : v) x = 1e-4 * rng.uniform(0.1, 1.0);
  }
  auto grads = random_vector(rng, size_t(steps) * n, 0.01);
  grads[3] = 0.0;  // g = 0 with v = 0: the eps keeps the step finite

  cpu::AdamWParams p;
  p.lr = 1e-2f;  // large enough that the change of w is far above float rounding of w
  p.beta1 = 0.9f, p.beta2 = 0.95f, p.eps = 1e-8f, p.weight_decay = 0.1f;
  // The oracle gets the float-rounded inputs and hyper-parameters, so that only the arithmetic differs.
  auto wf = cast<float>(w), mf = cast<float>(m), vf = cast<float>(v), gf = cast<float>(grads);
  w = to_double(wf.data(), n), m = to_double(mf.data(), n), v = to_double(vf.data(), n);
  grads = to_double(gf.data(), gf.size());
  auto ref = torch_oracle(
      "adamw",
      {{"w", tensor({n}, w)}, {"m", tensor({n}, m)}, {"v", tensor({n}, v)}, {"grads", tensor({steps, n}, grads)}},
      {{"lr", double(p.lr)},
       {"beta1", double(p.beta1)},
       {"beta2", double(p.beta2)},
       {"eps", double(p.eps)},
       {"weight_decay", decay ? double(p.weight_decay) : 0.0},
       {"step", first_step}});
  ASSERT_EQ(ref.size(), 3u);
  for (int s = 0; s < steps; ++s) {
    p.step = first_step + s;
    cpu::adamw_update(wf.data(), gf.data() + s * n, mf.data(), vf.data(), n, p, decay);
  }
  std::vector<double> dw(n), dw_ref(n);
  for (int64_t i = 0; i < n; ++i) dw[i] = double(wf[i]) - w[i], dw_ref[i] = ref["w"].data[i] - w[i];
  EXPECT_LT(rel_error(dw, dw_ref), 2e-5) << "steps " << steps << " decay " << decay;
  EXPECT_LT(rel_error(to_double(mf.data(), n), ref["m"].data), 1e-6);
  EXPECT_LT(rel_error(to_double(vf.data(), n), ref["v"].data), 1e-6);
}
}  // namespace

TEST(AdamW, OneStepMatchesTorch) { compare_with_torch(1, 1, 1, true); }
TEST(AdamW, SeveralStepsMatchTorch) { compare_with_torch(2, 5, 4, true); }
TEST(AdamW, NoDecayMatchesTorch) { compare_with_torch(3, 2, 3, false); }

// decay = false is exactly weight_decay = 0, and the decay does act otherwise.
TEST(AdamW, DecayFlag) {
  const int64_t n = 100000;  // above the parallel threshold
  Rng rng(4);
  auto w0 = cast<float>(random_vector(rng, n)), g = cast<float>(random_vector(rng, n));
  std::vector<float> m0(n, 0.f), v0(n, 0.f);
  cpu::AdamWParams p;
  auto run = [&](const cpu::AdamWParams& q, bool decay) {
    auto w = w0, m = m0, v = v0;
    cpu::adamw_update(w.data(), g.data(), m.data(), v.data(), n, q, decay);
    return w;
  };
  auto nodecay = run(p, false);
  cpu::AdamWParams p0 = p;
  p0.weight_decay = 0.f;
  EXPECT_EQ(nodecay, run(p0, true));
  EXPECT_NE(nodecay, run(p, true));
  p.step = 0;
  EXPECT_THROW(run(p, true), Error);
}

TEST(AdamW, SumSquaresAndScale) {
  const int64_t n = 100003;  // not a multiple of the chunk size
  Rng rng(5);
  auto g = cast<float>(random_vector(rng, n));
  double ref = 0;
  for (float x : g) ref += double(x) * double(x);
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const double s1 = cpu::sum_squares(g.data(), n);
  omp_set_num_threads(3);
  const double s3 = cpu::sum_squares(g.data(), n);
  omp_set_num_threads(saved);
  EXPECT_NEAR(s1, ref, 1e-12 * ref);
  EXPECT_EQ(s1, s3);  // bit-identical for any thread count (resumed runs repeat exactly)
  EXPECT_EQ(cpu::sum_squares(g.data(), 0), 0.0);

  auto h = g;
  cpu::scale_inplace(h.data(), n, 0.25f);
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(h[i], g[i] * 0.25f);
}
