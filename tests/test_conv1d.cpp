// Causal depthwise Conv1d + SiLU: finite differences, PyTorch Conv1d, float vs double, strides.
#include "core/error.h"
#include "kernel_check.h"
#include "ops/cpu/conv1d.h"

using namespace txs;
using namespace txs::test;

namespace {
struct Case {
  int64_t batch, seq, C, W, xs, ys;  // xs, ys: row strides (> C: the kernel must skip the padding)
  std::vector<double> x, w, bias, dy;
  Case(uint64_t seed, int64_t b, int64_t s, int64_t c, int64_t width, int64_t xpad, int64_t ypad)
      : batch(b), seq(s), C(c), W(width), xs(c + xpad), ys(c + ypad) {
    Rng rng(seed);
    x = random_vector(rng, batch * seq * xs);
    w = random_vector(rng, C * W, 0.5);
    bias = random_vector(rng, C, 0.5);
    dy = random_vector(rng, batch * seq * ys);
  }
  // The strided [batch·seq, C] view of v packed densely (what the oracle sees).
  std::vector<double> pack(const std::vector<double>& v, int64_t stride) const {
    std::vector<double> out;
    for (int64_t r = 0; r < batch * seq; ++r) out.insert(out.end(), v.begin() + r * stride, v.begin() + r * stride + C);
    return out;
  }
  template <class T>
  void forward(const std::vector<T>& xv, const std::vector<T>& wv, const std::vector<T>& bv, std::vector<T>& y) const {
    y.assign(size_t(batch * seq * ys), T(0));
    cpu::conv1d_silu_forward(xv.data(), xs, wv.data(), bv.data(), y.data(), ys, batch, seq, C, W);
  }
};
}  // namespace

TEST(Conv1d, GradientCheck) {
  // seq 6 > W and seq 2 < W (every output sees the zero history).
  for (int64_t seq : {6, 2}) {
    Case c(1, 2, seq, 5, 4, 3, 2);
    std::vector<double> y;
    auto loss = [&] {
      c.forward(c.x, c.w, c.bias, y);
      return dot(y, c.dy);  // the padding of y is 0, so the padding of dy adds nothing
    };
    std::vector<double> dx(c.x.size(), 0.0), dw(c.w.size(), 0.0), db(c.C, 0.0);
    cpu::conv1d_silu_backward(c.dy.data(), c.ys, c.x.data(), c.xs, c.w.data(), c.bias.data(), dx.data(), dw.data(),
                              db.data(), c.batch, c.seq, c.C, c.W);
    auto nx = numeric_grad(loss, c.x);
    EXPECT_LT(rel_error(c.pack(dx, c.xs), c.pack(nx, c.xs)), 1e-8) << "seq " << seq;
    EXPECT_LT(rel_error(dw, numeric_grad(loss, c.w)), 1e-8) << "seq " << seq;
    EXPECT_LT(rel_error(db, numeric_grad(loss, c.bias)), 1e-8) << "seq " << seq;
  }
}

TEST(Conv1d, MatchesTorchConv1d) {
  Case c(2, 3, 9, 6, 4, 2, 0);
  auto ref = torch_oracle("conv1d", {{"x", tensor({c.batch, c.seq, c.C}, c.pack(c.x, c.xs))},
                                     {"w", tensor({c.C, 1, c.W}, c.w)},
                                     {"bias", tensor({c.C}, c.bias)},
                                     {"dy", tensor({c.batch, c.seq, c.C}, c.pack(c.dy, c.ys))}});
  ASSERT_EQ(ref.size(), 4u);
  std::vector<double> y, dx(c.x.size()), dw(c.w.size(), 0.0), db(c.C, 0.0);
  c.forward(c.x, c.w, c.bias, y);
  cpu::conv1d_silu_backward(c.dy.data(), c.ys, c.x.data(), c.xs, c.w.data(), c.bias.data(), dx.data(), dw.data(),
                            db.data(), c.batch, c.seq, c.C, c.W);
  EXPECT_LT(rel_error(c.pack(y, c.ys), ref["y"].data), 1e-13);
  EXPECT_LT(rel_error(c.pack(dx, c.xs), ref["dx"].data), 1e-13);
  EXPECT_LT(rel_error(dw, ref["dw"].data), 1e-13);
  EXPECT_LT(rel_error(db, ref["dbias"].data), 1e-13);
}

// Big enough for the multithreaded paths; float agrees with double; dw and dbias accumulate.
TEST(Conv1d, FloatMatchesDoubleAndAccumulates) {
  Case c(3, 2, 150, 70, 4, 6, 1);
  std::vector<double> y, dx(c.x.size()), dw(c.w.size(), 0.0), db(c.C, 0.0);
  c.forward(c.x, c.w, c.bias, y);
  cpu::conv1d_silu_backward(c.dy.data(), c.ys, c.x.data(), c.xs, c.w.data(), c.bias.data(), dx.data(), dw.data(),
                            db.data(), c.batch, c.seq, c.C, c.W);
  auto xf = cast<float>(c.x), wf = cast<float>(c.w), bf = cast<float>(c.bias), dyf = cast<float>(c.dy);
  std::vector<float> yf, dxf(c.x.size()), dwf(c.w.size(), 2.f), dbf(c.C, 2.f);
  c.forward(xf, wf, bf, yf);
  cpu::conv1d_silu_backward(dyf.data(), c.ys, xf.data(), c.xs, wf.data(), bf.data(), dxf.data(), dwf.data(), dbf.data(),
                            c.batch, c.seq, c.C, c.W);
  for (auto& v : dwf) v -= 2.f;
  for (auto& v : dbf) v -= 2.f;
  EXPECT_LT(rel_error(c.pack(to_double(yf.data(), yf.size()), c.ys), c.pack(y, c.ys)), 1e-6);
  EXPECT_LT(rel_error(c.pack(to_double(dxf.data(), dxf.size()), c.xs), c.pack(dx, c.xs)), 1e-5);
  EXPECT_LT(rel_error(to_double(dwf.data(), dwf.size()), dw), 1e-5);
  EXPECT_LT(rel_error(to_double(dbf.data(), dbf.size()), db), 1e-5);
}

TEST(Conv1d, BadShapeThrows) {
  std::vector<float> x(16), w(16), y(16);
  EXPECT_THROW(cpu::conv1d_silu_forward(x.data(), 2, w.data(), w.data(), y.data(), 4, 1, 4, 4, 4), Error);
  EXPECT_THROW(cpu::conv1d_silu_forward(x.data(), 4, w.data(), w.data(), y.data(), 4, 1, 4, 4, 0), Error);
}
