// RMSNorm forward/backward: finite differences, PyTorch, float vs double.
#include "core/error.h"
#include "kernel_check.h"
#include "ops/cpu/rmsnorm.h"

using namespace txs;
using namespace txs::test;

namespace {
struct Case {
  int64_t rows = 6, dim = 11;
  double eps = 1e-2;  // large enough that a kernel dropping (or misplacing) eps fails the checks
  std::vector<double> x, gain, dy;
  explicit Case(uint64_t seed, int64_t r = 6, int64_t d = 11) : rows(r), dim(d) {
    Rng rng(seed);
    x = random_vector(rng, rows * dim);
    gain = random_vector(rng, dim);
    dy = random_vector(rng, rows * dim);
  }
};
}  // namespace

TEST(RmsNorm, GradientCheck) {
  Case c(1);
  std::vector<double> y(c.rows * c.dim), rstd(c.rows);
  auto loss = [&] {
    cpu::rmsnorm_forward(c.x.data(), c.gain.data(), y.data(), rstd.data(), c.rows, c.dim, c.eps);
    return dot(y, c.dy);
  };
  loss();
  std::vector<double> dx(c.rows * c.dim, 7.0), dgain(c.dim, 0.0);
  cpu::rmsnorm_backward(c.dy.data(), c.x.data(), c.gain.data(), rstd.data(), dx.data(), dgain.data(), c.rows, c.dim);
  EXPECT_LT(rel_error(dx, numeric_grad(loss, c.x)), 1e-8);
  EXPECT_LT(rel_error(dgain, numeric_grad(loss, c.gain)), 1e-8);
  // rstd is the saved 1/sqrt(mean(x²) + eps).
  for (int64_t r = 0; r < c.rows; ++r) {
    double ss = 0;
    for (int64_t i = 0; i < c.dim; ++i) ss += c.x[r * c.dim + i] * c.x[r * c.dim + i];
    EXPECT_NEAR(rstd[r], 1 / std::sqrt(ss / c.dim + c.eps), 1e-14);
  }
}

TEST(RmsNorm, MatchesTorch) {
  Case c(2, 5, 24);
  auto ref = torch_oracle(
      "rmsnorm",
      {{"x", tensor({c.rows, c.dim}, c.x)}, {"gain", tensor({c.dim}, c.gain)}, {"dy", tensor({c.rows, c.dim}, c.dy)}},
      {{"eps", c.eps}});
  ASSERT_EQ(ref.size(), 3u);
  std::vector<double> y(c.rows * c.dim), rstd(c.rows), dx(c.rows * c.dim), dgain(c.dim, 0.0);
  cpu::rmsnorm_forward(c.x.data(), c.gain.data(), y.data(), rstd.data(), c.rows, c.dim, c.eps);
  cpu::rmsnorm_backward(c.dy.data(), c.x.data(), c.gain.data(), rstd.data(), dx.data(), dgain.data(), c.rows, c.dim);
  EXPECT_LT(rel_error(y, ref["y"].data), 1e-13);
  EXPECT_LT(rel_error(dx, ref["dx"].data), 1e-13);
  EXPECT_LT(rel_error(dgain, ref["dgain"].data), 1e-13);
}

// Large enough to run multithreaded (rows·dim > the parallel threshold): float agrees with double, and the
// gain gradient accumulates onto what is there.
TEST(RmsNorm, FloatMatchesDoubleAndAccumulates) {
  Case c(3, 300, 96);
  c.eps = 1e-6;
  std::vector<double> y(c.rows * c.dim), rstd(c.rows), dx(c.rows * c.dim), dgain(c.dim, 0.0);
  cpu::rmsnorm_forward(c.x.data(), c.gain.data(), y.data(), rstd.data(), c.rows, c.dim, c.eps);
  cpu::rmsnorm_backward(c.dy.data(), c.x.data(), c.gain.data(), rstd.data(), dx.data(), dgain.data(), c.rows, c.dim);

  auto xf = cast<float>(c.x), gf = cast<float>(c.gain), dyf = cast<float>(c.dy);
  std::vector<float> yf(y.size()), rf(c.rows), dxf(dx.size()), dgf(c.dim, 1.0f);
  cpu::rmsnorm_forward(xf.data(), gf.data(), yf.data(), rf.data(), c.rows, c.dim, c.eps);
  cpu::rmsnorm_backward(dyf.data(), xf.data(), gf.data(), rf.data(), dxf.data(), dgf.data(), c.rows, c.dim);
  for (auto& g : dgf) g -= 1.0f;
  EXPECT_LT(rel_error(to_double(yf.data(), yf.size()), y), 1e-6);
  EXPECT_LT(rel_error(to_double(dxf.data(), dxf.size()), dx), 1e-5);
  EXPECT_LT(rel_error(to_double(dgf.data(), dgf.size()), dgain), 1e-5);

  // A zero row stays finite thanks to eps.
  std::vector<float> z(c.dim, 0.f), zy(c.dim), zr(1);
  cpu::rmsnorm_forward(z.data(), gf.data(), zy.data(), zr.data(), 1, c.dim, 1e-6);
  for (float v : zy) EXPECT_EQ(v, 0.f);
  EXPECT_TRUE(std::isfinite(zr[0]));
}

TEST(RmsNorm, BadInputThrows) {
  std::vector<float> x(8), g(8), y(8);
  EXPECT_THROW(cpu::rmsnorm_forward(x.data(), g.data(), y.data(), static_cast<float*>(nullptr), 1, 0, 1e-6), Error);
  EXPECT_THROW(cpu::rmsnorm_forward(x.data(), g.data(), y.data(), static_cast<float*>(nullptr), 1, 8, -1.0), Error);
  EXPECT_THROW(
      cpu::rmsnorm_backward(x.data(), x.data(), g.data(), static_cast<const float*>(nullptr), y.data(), g.data(), 1, 8),
      Error);
}
