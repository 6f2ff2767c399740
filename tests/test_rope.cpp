// Rotate-half RoPE: table, rotation properties, PyTorch, gradient (transpose) and float vs double.
#include "core/error.h"
#include "kernel_check.h"
#include "ops/cpu/rope.h"

using namespace txs;
using namespace txs::test;

namespace {
// Rotates one vector of size D at position p (one row, one head).
std::vector<double> rot(std::vector<double> v, int32_t p, const cpu::RopeTable& table, bool inverse = false) {
  cpu::rope_apply(v.data(), 1, 1, table.dim(), &p, table, inverse);
  return v;
}
}  // namespace

TEST(Rope, TableValuesAndGrowth) {
  cpu::RopeTable table(8, 10000.0);
  table.ensure(5);
  const float c3 = table.cos_row(3)[1];
  table.ensure(40);  // growing keeps the rows already computed and fills the new ones
  EXPECT_EQ(table.max_pos(), 40);
  EXPECT_EQ(table.cos_row(3)[1], c3);
  for (int64_t p : {0, 3, 39})
    for (int64_t i = 0; i < 4; ++i) {
      const double angle = double(p) * std::pow(10000.0, -2.0 * double(i) / 8.0);
      EXPECT_EQ(table.cos_row(p)[i], float(std::cos(angle)));
      EXPECT_EQ(table.sin_row(p)[i], float(std::sin(angle)));
    }
  cpu::RopeTable odd(7, 10000.0);
  EXPECT_THROW(odd.ensure(4), Error);
}

// ⟨rot(u,m), rot(v,n)⟩ depends only on n − m. The table is float32, so rotations are orthogonal only to
// float precision: the identity holds to ~1e-7, while a wrong pairing or frequency breaks it at O(1).
TEST(Rope, RelativePositionProperty) {
  cpu::RopeTable table(16, 10000.0);
  table.ensure(200);
  Rng rng(1);
  auto u = random_vector(rng, 16), v = random_vector(rng, 16);
  for (int32_t delta : {0, 1, 5, 37}) {
    const double ref = dot(rot(u, 0, table), rot(v, delta, table));
    for (int32_t m : {1, 17, 99, 150})
      EXPECT_NEAR(dot(rot(u, m, table), rot(v, m + delta, table)), ref, 2e-6) << m << " " << delta;
  }
  // It does depend on the offset (the test would be empty otherwise).
  EXPECT_GT(std::abs(dot(rot(u, 0, table), rot(v, 1, table)) - dot(rot(u, 0, table), rot(v, 0, table))), 1e-3);
}

// inverse is exactly the transpose of forward (that is what makes it the backward pass), and
// inverse∘forward is the identity up to the float rounding of the table.
TEST(Rope, InverseIsTransposeAndUndoesForward) {
  cpu::RopeTable table(12, 500.0);
  table.ensure(64);
  Rng rng(2);
  auto u = random_vector(rng, 12), v = random_vector(rng, 12);
  for (int32_t p : {0, 3, 63}) {
    EXPECT_NEAR(dot(rot(u, p, table), v), dot(u, rot(v, p, table, true)), 1e-14);
    auto back = rot(rot(u, p, table), p, table, true);
    EXPECT_LT(rel_error(back, u), 3e-7);
  }
  // Gradient check: L = Σ R ⊙ rot(x) is linear in x, so dL/dx = inverse(R).
  auto R = random_vector(rng, 12);
  std::vector<double> x = u;
  auto loss = [&] { return dot(rot(x, 41, table), R); };
  EXPECT_LT(rel_error(rot(R, 41, table, true), numeric_grad(loss, x)), 1e-9);
}

// Several rows, several heads, padded row stride, arbitrary positions per row; forward and inverse
// against a complex-multiplication formulation in PyTorch. Float agrees with double.
TEST(Rope, MatchesTorchWithStrides) {
  const int64_t rows = 7, heads = 3, D = 10, stride = heads * D + 5;
  cpu::RopeTable table(D, 10000.0);
  table.ensure(1000);
  Rng rng(3);
  auto x = random_vector(rng, rows * stride);
  std::vector<int32_t> pos = {0, 1, 2, 999, 500, 31, 7};
  std::vector<double> packed, posd(pos.begin(), pos.end());
  for (int64_t r = 0; r < rows; ++r)
    packed.insert(packed.end(), x.begin() + r * stride, x.begin() + r * stride + heads * D);
  auto ref = torch_oracle("rope", {{"x", tensor({rows, heads, D}, packed)}, {"pos", tensor({rows}, posd)}},
                          {{"theta", 10000.0}});
  ASSERT_EQ(ref.size(), 2u);
  for (bool inverse : {false, true}) {
    auto y = x;
    cpu::rope_apply(y.data(), rows, heads, stride, pos.data(), table, inverse);
    std::vector<double> got;
    for (int64_t r = 0; r < rows; ++r) {
      got.insert(got.end(), y.begin() + r * stride, y.begin() + r * stride + heads * D);
      // The padding after the heads is untouched.
      for (int64_t i = heads * D; i < stride; ++i) EXPECT_EQ(y[r * stride + i], x[r * stride + i]);
    }
    EXPECT_LT(rel_error(got, ref[inverse ? "yinv" : "y"].data), 1e-14) << "inverse=" << inverse;

    auto yf = cast<float>(x);
    cpu::rope_apply(yf.data(), rows, heads, stride, pos.data(), table, inverse);
    EXPECT_LT(rel_error(to_double(yf.data(), yf.size()), y), 1e-6);
  }
}

TEST(Rope, PositionOutsideTableThrows) {
  cpu::RopeTable table(4, 10000.0);
  table.ensure(8);
  std::vector<float> x(4);
  int32_t bad = 8, neg = -1;
  EXPECT_THROW(cpu::rope_apply(x.data(), 1, 1, 4, &bad, table, false), Error);
  EXPECT_THROW(cpu::rope_apply(x.data(), 1, 1, 4, &neg, table, false), Error);
}
