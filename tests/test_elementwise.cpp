// Pointwise kernels: SiLU-gated product, residual scale, softplus Δ, embedding.
#include <omp.h>

#include "core/error.h"
#include "kernel_check.h"
#include "ops/cpu/elementwise.h"

using namespace txs;
using namespace txs::test;

TEST(SiluMul, GradientCheckWithStrides) {
  const int64_t rows = 4, n = 6, gs = 9, us = 7, os = 8;  // gate and up may be slices of one wider row
  Rng rng(1);
  auto gate = random_vector(rng, rows * gs, 2.0), up = random_vector(rng, rows * us),
       dout = random_vector(rng, rows * os);
  std::vector<double> out(rows * os, 0.0);
  auto loss = [&] {
    cpu::silu_mul_forward(gate.data(), gs, up.data(), us, out.data(), os, rows, n);
    return dot(out, dout);
  };
  std::vector<double> dgate(rows * gs, 0.0), dup(rows * us, 0.0);
  cpu::silu_mul_backward(dout.data(), os, gate.data(), gs, up.data(), us, dgate.data(), dup.data(), rows, n);
  EXPECT_LT(rel_error(dgate, numeric_grad(loss, gate)), 1e-8);
  EXPECT_LT(rel_error(dup, numeric_grad(loss, up)), 1e-8);
}

TEST(Residual, GradientCheckAndAliasing) {
  const int64_t rows = 5, dim = 7;
  Rng rng(2);
  auto skip = random_vector(rng, rows * dim), w = random_vector(rng, dim), branch = random_vector(rng, rows * dim);
  auto dout = random_vector(rng, rows * dim);
  std::vector<double> out(rows * dim);
  auto loss = [&] {
    cpu::residual_forward(skip.data(), w.data(), branch.data(), out.data(), rows, dim);
    return dot(out, dout);
  };
  std::vector<double> dskip(rows * dim), dw(dim, 0.0);
  cpu::residual_backward(dout.data(), skip.data(), w.data(), dskip.data(), dw.data(), rows, dim);
  EXPECT_LT(rel_error(dskip, numeric_grad(loss, skip)), 1e-8);
  EXPECT_LT(rel_error(dw, numeric_grad(loss, w)), 1e-8);
  EXPECT_LT(rel_error(dout, numeric_grad(loss, branch)), 1e-8);  // dbranch = dout

  // out may alias skip; dskip may alias dout (dw must still see the original dout).
  std::vector<double> s2 = skip;
  cpu::residual_forward(s2.data(), w.data(), branch.data(), s2.data(), rows, dim);
  loss();
  EXPECT_EQ(s2, out);
  std::vector<double> d2 = dout, dw2(dim, 0.0);
  cpu::residual_backward(d2.data(), skip.data(), w.data(), d2.data(), dw2.data(), rows, dim);
  EXPECT_EQ(d2, dskip);
  EXPECT_EQ(dw2, dw);

  // w = null means w = 1 and no dw.
  std::vector<double> o1(rows * dim), ds1(rows * dim);
  cpu::residual_forward(skip.data(), static_cast<const double*>(nullptr), branch.data(), o1.data(), rows, dim);
  cpu::residual_backward(dout.data(), skip.data(), static_cast<const double*>(nullptr), ds1.data(),
                         static_cast<double*>(nullptr), rows, dim);
  for (size_t i = 0; i < o1.size(); ++i) EXPECT_EQ(o1[i], skip[i] + branch[i]);
  EXPECT_EQ(ds1, dout);
}

TEST(Softplus, GradientCheckIncludingLargeInputs) {
  const int64_t rows = 6, H = 4, rs = 7;
  Rng rng(3);
  auto raw = random_vector(rng, rows * rs, 3.0), bias = random_vector(rng, H), ddt = random_vector(rng, rows * H);
  raw[0] = 40.0;    // softplus(v) ≈ v: must not overflow
  raw[rs] = -40.0;  // ≈ exp(v): must keep the tiny value, not 0 from log(1 + tiny)
  std::vector<double> dt(rows * H);
  auto loss = [&] {
    cpu::softplus_forward(raw.data(), rs, bias.data(), dt.data(), rows, H);
    return dot(dt, ddt);
  };
  loss();
  EXPECT_NEAR(dt[0], 40.0 + bias[0], 1e-12);
  EXPECT_NEAR(dt[H] / std::exp(-40.0 + bias[0]), 1.0, 1e-12);
  std::vector<double> draw(rows * rs, 0.0), dbias(H, 0.0);
  cpu::softplus_backward(ddt.data(), raw.data(), rs, bias.data(), draw.data(), dbias.data(), rows, H);
  EXPECT_LT(rel_error(draw, numeric_grad(loss, raw)), 1e-8);
  EXPECT_LT(rel_error(dbias, numeric_grad(loss, bias)), 1e-8);
  // No bias: softplus(raw) and no dbias.
  std::vector<double> dt0(rows * H);
  cpu::softplus_forward(raw.data(), rs, static_cast<const double*>(nullptr), dt0.data(), rows, H);
  EXPECT_NEAR(dt0[1], std::log1p(std::exp(raw[1])), 1e-14);
}

// Repeated ids under OpenMP: the scatter-add must be race-free and not depend on the thread count.
TEST(Embedding, BackwardRaceFreeWithRepeatedIds) {
  const int64_t vocab = 7, dim = 160, rows = 600;  // rows·dim above the parallel threshold
  Rng rng(4);
  std::vector<int32_t> ids(rows);
  for (auto& id : ids) id = int32_t(rng.below(3));  // few distinct ids: many collisions
  ids[5] = 6;
  auto table = random_vector(rng, vocab * dim), dout = random_vector(rng, rows * dim);
  std::vector<double> out(rows * dim);
  cpu::embedding_forward(ids.data(), table.data(), out.data(), rows, dim);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < dim; ++i) ASSERT_EQ(out[r * dim + i], table[ids[r] * dim + i]);

  std::vector<double> ref(vocab * dim, 1.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < dim; ++i) ref[ids[r] * dim + i] += dout[r * dim + i];  // serial, in row order
  const int saved = omp_get_max_threads();
  for (int nt : {1, 2, 3}) {
    omp_set_num_threads(nt);
    std::vector<double> dtable(vocab * dim, 1.0);
    cpu::embedding_backward(ids.data(), dout.data(), dtable.data(), rows, dim);
    EXPECT_EQ(dtable, ref) << nt << " threads";
    std::vector<float> dtf(vocab * dim, 1.f), doutf = cast<float>(dout);
    cpu::embedding_backward(ids.data(), doutf.data(), dtf.data(), rows, dim);
    EXPECT_LT(rel_error(to_double(dtf.data(), dtf.size()), ref), 1e-6);
  }
  omp_set_num_threads(saved);
  int32_t bad = -1;
  EXPECT_THROW(cpu::embedding_forward(&bad, table.data(), out.data(), 1, dim), Error);
}

// All four against PyTorch (F.silu, F.softplus, F.embedding, autograd), and float against double on
// shapes large enough for the threaded paths.
TEST(Elementwise, MatchesTorchAndFloat) {
  const int64_t rows = 300, n = 64, H = 5, vocab = 11;
  Rng rng(5);
  auto gate = random_vector(rng, rows * n, 2.0), up = random_vector(rng, rows * n), dout = random_vector(rng, rows * n);
  auto skip = random_vector(rng, rows * n), w = random_vector(rng, n), branch = random_vector(rng, rows * n);
  auto rdout = random_vector(rng, rows * n);
  auto raw = random_vector(rng, rows * H, 3.0), bias = random_vector(rng, H), ddt = random_vector(rng, rows * H);
  std::vector<int32_t> ids(rows);
  std::vector<double> idsd(rows);
  for (int64_t r = 0; r < rows; ++r) idsd[r] = ids[r] = int32_t(rng.below(vocab));
  auto table = random_vector(rng, vocab * n), edout = random_vector(rng, rows * n);
  auto ref = torch_oracle("elementwise", {{"gate", tensor({rows, n}, gate)},
                                          {"up", tensor({rows, n}, up)},
                                          {"dout", tensor({rows, n}, dout)},
                                          {"skip", tensor({rows, n}, skip)},
                                          {"res_w", tensor({n}, w)},
                                          {"branch", tensor({rows, n}, branch)},
                                          {"res_dout", tensor({rows, n}, rdout)},
                                          {"raw", tensor({rows, H}, raw)},
                                          {"dt_bias", tensor({H}, bias)},
                                          {"ddt", tensor({rows, H}, ddt)},
                                          {"ids", tensor({rows}, idsd)},
                                          {"table", tensor({vocab, n}, table)},
                                          {"emb_dout", tensor({rows, n}, edout)}});
  ASSERT_EQ(ref.size(), 11u);

  // Runs every kernel in precision T; returns the outputs by the oracle's names.
  auto run = [&]<class T>(T) {
    std::map<std::string, std::vector<double>> got;
    auto g = cast<T>(gate), u = cast<T>(up), d = cast<T>(dout), s = cast<T>(skip), wv = cast<T>(w);
    auto b = cast<T>(branch), rd = cast<T>(rdout), rw = cast<T>(raw), bi = cast<T>(bias), dd = cast<T>(ddt);
    auto tb = cast<T>(table), ed = cast<T>(edout);
    std::vector<T> o(rows * n), dg(rows * n), du(rows * n), ro(rows * n), ds(rows * n), dwv(n, T(0));
    std::vector<T> dt(rows * H), dr(rows * H), db(H, T(0)), eo(rows * n), dtab(vocab * n, T(0));
    cpu::silu_mul_forward(g.data(), n, u.data(), n, o.data(), n, rows, n);
    cpu::silu_mul_backward(d.data(), n, g.data(), n, u.data(), n, dg.data(), du.data(), rows, n);
    cpu::residual_forward(s.data(), wv.data(), b.data(), ro.data(), rows, n);
    cpu::residual_backward(rd.data(), s.data(), wv.data(), ds.data(), dwv.data(), rows, n);
    cpu::softplus_forward(rw.data(), H, bi.data(), dt.data(), rows, H);
    cpu::softplus_backward(dd.data(), rw.data(), H, bi.data(), dr.data(), db.data(), rows, H);
    cpu::embedding_forward(ids.data(), tb.data(), eo.data(), rows, n);
    cpu::embedding_backward(ids.data(), ed.data(), dtab.data(), rows, n);
    auto put = [&](const char* name, const std::vector<T>& v) { got[name] = to_double(v.data(), v.size()); };
    put("silu_out", o), put("dgate", dg), put("dup", du), put("res_out", ro), put("dskip", ds), put("dres_w", dwv);
    put("dt", dt), put("draw", dr), put("ddt_bias", db), put("emb_out", eo), put("dtable", dtab);
    return got;
  };
  auto d64 = run(double{}), f32 = run(float{});
  for (auto& [name, t] : ref) {
    EXPECT_LT(rel_error(d64[name], t.data), 1e-13) << name;
    EXPECT_LT(rel_error(f32[name], t.data), 1e-5) << name;
  }
}
