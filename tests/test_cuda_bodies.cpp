// The CUDA backend's kernel bodies (src/ops/cuda/bodies/*.h), run on the host over each kernel's whole index
// space, in the kernel's order of phases, and checked against the float64 CPU kernels (the semantics every
// backend is held to). Compiled by g++ without CUDA: on a machine without a GPU this is the executed evidence
// for the indexing, strides, branches (written vs accumulated, absent operands, aliasing) and formulas of the
// pointwise and row kernels of pointwise.cu. Operands are ragged and, where the op takes strides, column
// slices of wider buffers whose pad columns must come back untouched (they are compared too).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/rng.h"
#include "ops/backend.h"
#include "ops/bf16.h"
#include "ops/cpu/adamw.h"
#include "ops/cpu/conv1d.h"
#include "ops/cpu/elementwise.h"
#include "ops/cpu/rmsnorm.h"
#include "ops/cpu/rope.h"
#include "ops/cuda/bodies/adamw.h"
#include "ops/cuda/bodies/column_sum.h"
#include "ops/cuda/bodies/conv1d.h"
#include "ops/cuda/bodies/convert.h"
#include "ops/cuda/bodies/embedding.h"
#include "ops/cuda/bodies/reduce.h"
#include "ops/cuda/bodies/residual.h"
#include "ops/cuda/bodies/rmsnorm.h"
#include "ops/cuda/bodies/rope.h"
#include "ops/cuda/bodies/silu_mul.h"
#include "ops/cuda/bodies/softplus.h"

using namespace txs;
using namespace txs::cuda;

namespace {

// fp32 operands of the bodies, and the same values in double for the CPU reference.
std::vector<float> random_floats(Rng& rng, size_t n, double scale = 1.0) {
  std::vector<float> v(n);
  for (auto& x : v) x = float(scale * rng.normal());
  return v;
}
std::vector<double> widen(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

// max |a − b| / max |b|: a relative error a wrong index or formula cannot pass (fp32 vs fp64: ~1e-7).
double rel_error(const std::vector<float>& a, const std::vector<double>& b) {
  double diff = 0, ref = 1e-30;
  for (size_t i = 0; i < b.size(); ++i) {
    diff = std::max(diff, std::abs(double(a[i]) - b[i]));
    ref = std::max(ref, std::abs(b[i]));
  }
  return a.size() == b.size() ? diff / ref : INFINITY;
}
constexpr double kTol = 2e-6;

// Pass 1 + pass 2 of a column reduction as the kernels run them: partial(col, r0, r1) per (row block, col),
// then finish(partial, blocks, col) per column.
template <class Part, class Finish>
void column_reduce(int64_t rows, int64_t width, Part part, Finish finish) {
  const RowBlocks b = row_blocks(rows);
  std::vector<double> partial(size_t(b.blocks * width), std::nan(""));
  for (int64_t blk = 0; blk < b.blocks; ++blk)
    for (int64_t c = 0; c < width; ++c) {
      const int64_t r0 = blk * b.rows_per_block, r1 = std::min(rows, r0 + b.rows_per_block);
      partial[size_t(blk * width + c)] = part(c, r0, r1);
    }
  for (int64_t c = 0; c < width; ++c) finish(partial.data(), b.blocks, c);
}

// A block of `threads` threads adding per-thread partials, as block_sum does (any order: the test only needs
// the total).
template <class Part>
double block_total(int64_t threads, Part part) {
  double s = 0;
  for (int64_t t = 0; t < threads; ++t) s += part(t, threads);
  return s;
}

}  // namespace

TEST(CudaBodies, RowBlocksCoverEveryRowOnce) {
  for (int64_t rows : {1, 31, 32, 33, 64, 65, 1000, 8191, 8192, 8193, 100000, 1234567}) {
    const RowBlocks b = row_blocks(rows);
    EXPECT_GE(b.rows_per_block, 32) << rows;
    EXPECT_LE(b.blocks, 256) << rows;
    EXPECT_LT((b.blocks - 1) * b.rows_per_block, rows) << rows;  // the last block is not empty
    EXPECT_GE(b.blocks * b.rows_per_block, rows) << rows;        // every row has a block
  }
  EXPECT_EQ(row_blocks(0).blocks, 0);
}

TEST(CudaBodies, Bf16RoundingMatchesHost) {
  std::vector<float> values = {0.0f,
                               -0.0f,
                               1.0f,
                               -1.0f,
                               3.14159f,
                               65504.0f,
                               1e-30f,
                               -1e30f,
                               std::numeric_limits<float>::infinity(),
                               -std::numeric_limits<float>::infinity(),
                               std::numeric_limits<float>::quiet_NaN(),
                               std::numeric_limits<float>::signaling_NaN(),
                               std::numeric_limits<float>::denorm_min(),
                               std::numeric_limits<float>::min(),
                               std::numeric_limits<float>::max(),
                               -std::numeric_limits<float>::max()};
  // Ties (low half exactly 0x8000, even and odd upper halves), neighbours of ties, denormals, NaN payloads.
  for (uint32_t hi : {0x3f80u, 0x3f81u, 0x0000u, 0x0001u, 0x007fu, 0x7f7fu, 0xff7fu, 0x8001u, 0x7f80u, 0xff80u})
    for (uint32_t lo : {0x0000u, 0x0001u, 0x7fffu, 0x8000u, 0x8001u, 0xffffu}) {
      const uint32_t u = hi << 16 | lo;
      float f;
      std::memcpy(&f, &u, 4);
      values.push_back(f);
    }
  Rng rng(11);
  for (int i = 0; i < 200000; ++i) {
    const uint32_t u = uint32_t(rng.next());
    float f;
    std::memcpy(&f, &u, 4);
    values.push_back(f);
  }
  int64_t mismatches = 0;
  for (float f : values) {
    const uint16_t b = f32_to_bf16(f);
    mismatches += b != bf16_bits(f);
    const float back = bf16_to_f32(b), ref = to_f32(bf16{b});
    mismatches += std::memcmp(&back, &ref, 4) != 0;
  }
  EXPECT_EQ(mismatches, 0);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::signaling_NaN()))));
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::infinity()), 0x7f80);
}

TEST(CudaBodies, ConvertingCopyWithStrides) {
  const int64_t rows = 5, cols = 13, ss = 17, ds = 15;
  Rng rng(12);
  std::vector<float> src = random_floats(rng, size_t(rows * ss), 100.0);
  src[3] = std::numeric_limits<float>::quiet_NaN();
  src[ss + 4] = -std::numeric_limits<float>::infinity();
  std::vector<uint16_t> dst(size_t(rows * ds), 0xabcd);
  for (int64_t k = 0; k < rows * cols; ++k)
    convert_f32_to_bf16_element(src.data(), ss, dst.data(), ds, k / cols, k % cols);
  std::vector<float> back(size_t(rows * ss), -7.0f);
  for (int64_t k = 0; k < rows * cols; ++k)
    convert_bf16_to_f32_element(dst.data(), ds, back.data(), ss, k / cols, k % cols);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < ds; ++c) {
      const uint16_t expect = c < cols ? bf16_bits(src[size_t(r * ss + c)]) : uint16_t(0xabcd);
      EXPECT_EQ(dst[size_t(r * ds + c)], expect) << r << "," << c;
    }
    for (int64_t c = 0; c < ss; ++c) {
      const float expect = c < cols ? round_bf16(src[size_t(r * ss + c)]) : -7.0f;
      const float got = back[size_t(r * ss + c)];
      EXPECT_TRUE(std::memcmp(&got, &expect, 4) == 0) << r << "," << c;
    }
  }
}

TEST(CudaBodies, FillMatchesCpuBackendForEveryDtype) {
  const int64_t rows = 3, cols = 5, stride = 7;
  Backend& cpu = cpu_backend();
  struct Case {
    DType dtype;
    FillKind kind;
    double value;
  };
  for (const Case& c : {Case{DType::F32, FillKind::F32, -2.75}, Case{DType::F32, FillKind::F32, 1e-40},
                        Case{DType::BF16, FillKind::BF16, 1.00390625}, Case{DType::BF16, FillKind::BF16, 3.3e38},
                        Case{DType::F64, FillKind::F64, 1e300}, Case{DType::F64, FillKind::F64, -1.0 / 3.0},
                        Case{DType::I32, FillKind::I32, 7.9}, Case{DType::I32, FillKind::I32, -3.2}}) {
    const size_t es = dtype_size(c.dtype), bytes = size_t(rows * stride) * es;
    std::vector<unsigned char> ref(bytes, 0x5a), got(bytes, 0x5a);
    Tensor t{ref.data(), c.dtype, Device::Cpu, rows, cols, stride};
    cpu.fill(t, c.value);
    const FillPattern p = fill_pattern(c.kind, c.value);
    ASSERT_EQ(size_t(p.bytes), es);
    for (int64_t k = 0; k < rows * cols; ++k) {
      const int64_t r = k / cols, col = k % cols;
      if (es == 2) fill_element(reinterpret_cast<uint16_t*>(got.data()), stride, r, col, uint16_t(p.bits));
      if (es == 4) fill_element(reinterpret_cast<uint32_t*>(got.data()), stride, r, col, uint32_t(p.bits));
      if (es == 8) fill_element(reinterpret_cast<uint64_t*>(got.data()), stride, r, col, uint64_t(p.bits));
    }
    EXPECT_EQ(got, ref) << dtype_name(c.dtype) << " " << c.value;
  }
}

TEST(CudaBodies, RmsNormForwardTwoPhases) {
  const int64_t rows = 6, dim = 37, threads = 8;
  const double eps = 1e-5;
  Rng rng(13);
  std::vector<float> x = random_floats(rng, size_t(rows * dim), 2.0), gain = random_floats(rng, size_t(dim));
  std::vector<double> y_ref(size_t(rows * dim)), rstd_ref(static_cast<size_t>(rows));
  const std::vector<double> xd = widen(x), gd = widen(gain);
  cpu::rmsnorm_forward(xd.data(), gd.data(), y_ref.data(), rstd_ref.data(), rows, dim, eps);
  for (bool with_rstd : {true, false}) {
    std::vector<float> y(size_t(rows * dim), NAN), rstd(size_t(rows), -1.0f);
    for (int64_t r = 0; r < rows; ++r) {  // one block per row
      const double ss =
          block_total(threads, [&](int64_t t, int64_t step) { return rmsnorm_sumsq_part(x.data(), dim, r, t, step); });
      float s = 0;
      for (int64_t t = 0; t < threads; ++t)
        s = rmsnorm_row_rstd(ss, dim, eps, t == 0 && with_rstd ? rstd.data() : nullptr, r);
      for (int64_t t = 0; t < threads; ++t)
        for (int64_t i = t; i < dim; i += threads)
          rmsnorm_forward_element(x.data(), gain.data(), y.data(), s, dim, r, i);
    }
    EXPECT_LT(rel_error(y, y_ref), kTol);
    if (with_rstd)
      EXPECT_LT(rel_error(rstd, rstd_ref), kTol);
    else
      EXPECT_EQ(rstd, std::vector<float>(size_t(rows), -1.0f));  // absent rstd: nothing stored
  }
}

TEST(CudaBodies, RmsNormBackwardDgainAccumulatesAndDxMayAlias) {
  const int64_t rows = 70, dim = 37, threads = 8;  // 70 rows: three row blocks in the dgain reduction
  Rng rng(14);
  std::vector<float> x = random_floats(rng, size_t(rows * dim), 2.0), gain = random_floats(rng, size_t(dim)),
                     dy = random_floats(rng, size_t(rows * dim)), dgain0 = random_floats(rng, size_t(dim));
  std::vector<float> rstd(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) rstd[size_t(r)] = float(0.5 + 0.01 * double(r));
  const std::vector<double> xd = widen(x), gd = widen(gain), dyd = widen(dy), rd = widen(rstd);
  std::vector<double> dx_ref(size_t(rows * dim)), dgain_ref = widen(dgain0);
  cpu::rmsnorm_backward(dyd.data(), xd.data(), gd.data(), rd.data(), dx_ref.data(), dgain_ref.data(), rows, dim);

  for (bool alias : {false, true}) {
    std::vector<float> dy_buf = dy, dgain = dgain0, dx_own(size_t(rows * dim), NAN);
    float* dx = alias ? dy_buf.data() : dx_own.data();  // dx may alias dy
    column_reduce(
        rows, dim,
        [&](int64_t c, int64_t r0, int64_t r1) {
          return rmsnorm_dgain_part(dy_buf.data(), x.data(), rstd.data(), dim, c, r0, r1);
        },
        [&](const double* partial, int64_t blocks, int64_t c) {
          rmsnorm_dgain_finish(partial, blocks, dim, c, dgain.data());
        });
    for (int64_t r = 0; r < rows; ++r) {
      const double dot = block_total(threads, [&](int64_t t, int64_t step) {
        return rmsnorm_dot_part(dy_buf.data(), x.data(), gain.data(), dim, r, t, step);
      });
      for (int64_t t = 0; t < threads; ++t)
        for (int64_t i = t; i < dim; i += threads)
          rmsnorm_backward_element(dy_buf.data(), x.data(), gain.data(), rstd.data(), dot, dx, dim, r, i);
    }
    EXPECT_LT(rel_error(alias ? dy_buf : dx_own, dx_ref), kTol) << "alias " << alias;
    EXPECT_LT(rel_error(dgain, dgain_ref), kTol) << "alias " << alias;
  }
}

TEST(CudaBodies, RopeForwardInverseAndBadPositions) {
  const int64_t rows = 7, heads = 3, dim = 8, stride = 29, positions = 20, half = dim / 2;
  cpu::RopeTable table(dim, 10000.0);
  table.ensure(positions);
  const RopeCoeffs c = table.coeffs();
  Rng rng(15);
  std::vector<float> x0 = random_floats(rng, size_t(rows * stride));
  std::vector<int32_t> pos(static_cast<size_t>(rows));
  for (auto& p : pos) p = int32_t(rng.next() % uint64_t(positions));
  pos[2] = positions - 1;
  for (bool inverse : {false, true}) {
    std::vector<double> ref = widen(x0);
    cpu::rope_apply(ref.data(), rows, heads, stride, pos.data(), c, inverse);
    std::vector<float> x = x0;
    int32_t bad[2] = {0, 0};
    for (int64_t k = 0; k < rows * heads * half; ++k)
      rope_pair(x.data(), stride, pos.data(), c.cos, c.sin, dim, c.positions, heads, inverse, k, bad);
    EXPECT_LT(rel_error(x, ref), kTol) << "inverse " << inverse;
    EXPECT_EQ(bad[0], 0);
  }
  // Positions outside the table: flagged, never read, their rows untouched; the other rows still rotate.
  for (int32_t wrong : {int32_t(positions), -1}) {
    std::vector<int32_t> p2 = pos;
    p2[4] = wrong;
    std::vector<float> x = x0;
    int32_t bad[2] = {0, 0};
    for (int64_t k = 0; k < rows * heads * half; ++k)
      rope_pair(x.data(), stride, p2.data(), c.cos, c.sin, dim, c.positions, heads, false, k, bad);
    EXPECT_EQ(bad[0], 1);
    EXPECT_EQ(bad[1], wrong);
    for (int64_t i = 0; i < stride; ++i) EXPECT_EQ(x[size_t(4 * stride + i)], x0[size_t(4 * stride + i)]);
    EXPECT_NE(x[0], x0[0]);
  }
}

TEST(CudaBodies, Conv1dSiluForward) {
  const int64_t C = 5, W = 4, xs = 9, ys = 8;
  Rng rng(16);
  const std::vector<float> w = random_floats(rng, size_t(C * W)), bias = random_floats(rng, size_t(C));
  // seq < W (every output clipped at the start) and seq > W.
  for (auto [batch, seq] : {std::pair<int64_t, int64_t>{2, 7}, {3, 2}}) {
    const int64_t rows = batch * seq;
    const std::vector<float> x = random_floats(rng, size_t(rows * xs));
    for (bool with_bias : {true, false}) {
      const float* b = with_bias ? bias.data() : nullptr;
      const std::vector<double> xd = widen(x), wd = widen(w), bd = widen(bias);
      std::vector<double> ref(size_t(rows * ys), 5.0);
      cpu::conv1d_silu_forward(xd.data(), xs, wd.data(), with_bias ? bd.data() : nullptr, ref.data(), ys, batch, seq, C,
                               W);
      std::vector<float> y(size_t(rows * ys), 5.0f);
      for (int64_t k = 0; k < rows * C; ++k)
        conv1d_silu_forward_element(x.data(), xs, w.data(), b, y.data(), ys, seq, W, k / C, k % C);
      EXPECT_LT(rel_error(y, ref), kTol) << batch << "x" << seq << " bias " << with_bias;
    }
  }
}

TEST(CudaBodies, Conv1dSiluBackwardAllBranches) {
  const int64_t C = 5, W = 4, xs = 9, ys = 8;
  Rng rng(17);
  const std::vector<float> w = random_floats(rng, size_t(C * W)), bias = random_floats(rng, size_t(C)),
                           dw0 = random_floats(rng, size_t(C * W)), db0 = random_floats(rng, size_t(C));
  const std::vector<double> wd = widen(w), bd = widen(bias);
  // 3 × 23 rows: three row blocks in the dw/dbias reduction; 2 × 3: sequences shorter than the filter.
  for (auto [batch, seq] : {std::pair<int64_t, int64_t>{3, 23}, {2, 3}}) {
    const int64_t rows = batch * seq;
    const std::vector<float> x = random_floats(rng, size_t(rows * xs)), dy = random_floats(rng, size_t(rows * ys));
    const std::vector<double> xd = widen(x), dyd = widen(dy);
    // (bias, dw, dbias, dx aliasing x)
    for (int variant = 0; variant < 4; ++variant) {
      const bool with_bias = variant != 1, with_dw = variant != 2, with_db = variant != 3, alias = variant == 3;
      std::vector<double> x_ref = xd, dx_ref(size_t(rows * xs), 3.0), dw_ref = widen(dw0), db_ref = widen(db0);
      double* dx_r = alias ? x_ref.data() : dx_ref.data();
      cpu::conv1d_silu_backward(dyd.data(), ys, xd.data(), xs, wd.data(), with_bias ? bd.data() : nullptr, dx_r,
                                with_dw ? dw_ref.data() : nullptr, with_db ? db_ref.data() : nullptr, batch, seq, C, W);

      std::vector<float> x_buf = x, dx_own(size_t(rows * xs), 3.0f), dw = dw0, db = db0, g(size_t(rows * C), NAN);
      float* dx = alias ? x_buf.data() : dx_own.data();
      const float* b = with_bias ? bias.data() : nullptr;
      for (int64_t k = 0; k < rows * C; ++k)
        conv1d_silu_grad_element(dy.data(), ys, x_buf.data(), xs, w.data(), b, g.data(), seq, C, W, k / C, k % C);
      if (with_dw || with_db)
        column_reduce(
            rows, (W + 1) * C,
            [&](int64_t e, int64_t r0, int64_t r1) {
              return conv1d_param_grad_part(g.data(), x_buf.data(), xs, seq, C, W, e, r0, r1);
            },
            [&](const double* partial, int64_t blocks, int64_t e) {
              conv1d_param_grad_finish(partial, blocks, C, W, e, with_dw ? dw.data() : nullptr,
                                       with_db ? db.data() : nullptr);
            });
      for (int64_t k = 0; k < rows * C; ++k) conv1d_dx_element(g.data(), w.data(), dx, xs, seq, C, W, k / C, k % C);

      const char* what = alias ? "dx aliasing x" : "dx";
      EXPECT_LT(rel_error(alias ? x_buf : dx_own, alias ? x_ref : dx_ref), kTol) << what << " variant " << variant;
      EXPECT_LT(rel_error(dw, dw_ref), kTol) << "dw variant " << variant;
      EXPECT_LT(rel_error(db, db_ref), kTol) << "dbias variant " << variant;
    }
  }
}

TEST(CudaBodies, SiluMulWithStridesAndAliasing) {
  const int64_t rows = 4, n = 11, gs = 13, us = 12, os = 14;
  Rng rng(18);
  const std::vector<float> gate = random_floats(rng, size_t(rows * gs), 2.0),
                           up = random_floats(rng, size_t(rows * us)), dout = random_floats(rng, size_t(rows * os));
  const std::vector<double> gd = widen(gate), ud = widen(up), dd = widen(dout);
  std::vector<double> out_ref(size_t(rows * os), 9.0), dg_ref(size_t(rows * gs), 9.0), du_ref(size_t(rows * us), 9.0);
  cpu::silu_mul_forward(gd.data(), gs, ud.data(), us, out_ref.data(), os, rows, n);
  cpu::silu_mul_backward(dd.data(), os, gd.data(), gs, ud.data(), us, dg_ref.data(), du_ref.data(), rows, n);
  std::vector<float> out(size_t(rows * os), 9.0f);
  for (int64_t k = 0; k < rows * n; ++k)
    silu_mul_forward_element(gate.data(), gs, up.data(), us, out.data(), os, k / n, k % n);
  EXPECT_LT(rel_error(out, out_ref), kTol);
  std::vector<float> dg(size_t(rows * gs), 9.0f), du(size_t(rows * us), 9.0f);
  for (int64_t k = 0; k < rows * n; ++k)
    silu_mul_backward_element(dout.data(), os, gate.data(), gs, up.data(), us, dg.data(), du.data(), k / n, k % n);
  EXPECT_LT(rel_error(dg, dg_ref), kTol);
  EXPECT_LT(rel_error(du, du_ref), kTol);
  // dgate/dup aliasing gate/up: the pad columns keep gate's and up's own values.
  std::vector<float> g2 = gate, u2 = up;
  for (int64_t k = 0; k < rows * n; ++k)
    silu_mul_backward_element(dout.data(), os, g2.data(), gs, u2.data(), us, g2.data(), u2.data(), k / n, k % n);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < gs; ++c) {
      const size_t i = size_t(r * gs + c);
      EXPECT_EQ(g2[i], c < n ? dg[i] : gate[i]);
    }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < us; ++c) {
      const size_t i = size_t(r * us + c);
      EXPECT_EQ(u2[i], c < n ? du[i] : up[i]);
    }
}

TEST(CudaBodies, ResidualForwardBackwardAllBranches) {
  const int64_t rows = 70, dim = 19;
  Rng rng(19);
  const std::vector<float> skip = random_floats(rng, size_t(rows * dim)), w = random_floats(rng, size_t(dim)),
                           branch = random_floats(rng, size_t(rows * dim)),
                           dout = random_floats(rng, size_t(rows * dim)), dw0 = random_floats(rng, size_t(dim));
  const std::vector<double> sd = widen(skip), wd = widen(w), bd = widen(branch), dd = widen(dout);
  for (bool with_w : {true, false}) {
    const float* wp = with_w ? w.data() : nullptr;
    std::vector<double> out_ref(size_t(rows * dim));
    cpu::residual_forward(sd.data(), with_w ? wd.data() : nullptr, bd.data(), out_ref.data(), rows, dim);
    // out separate, aliasing skip, aliasing branch.
    for (int where = 0; where < 3; ++where) {
      std::vector<float> s2 = skip, b2 = branch, own(size_t(rows * dim), NAN);
      float* out = where == 1 ? s2.data() : where == 2 ? b2.data() : own.data();
      for (int64_t k = 0; k < rows * dim; ++k)
        residual_forward_element(s2.data(), wp, b2.data(), out, dim, k / dim, k % dim);
      EXPECT_LT(rel_error(where == 1 ? s2 : where == 2 ? b2 : own, out_ref), kTol) << with_w << " " << where;
    }
    std::vector<double> dskip_ref(size_t(rows * dim)), dw_ref = widen(dw0);
    cpu::residual_backward(dd.data(), sd.data(), with_w ? wd.data() : nullptr, dskip_ref.data(),
                           with_w ? dw_ref.data() : nullptr, rows, dim);
    for (bool alias : {false, true}) {  // dskip may alias dout; dw (reduced first) must see the original dout
      std::vector<float> d2 = dout, own(size_t(rows * dim), NAN), dw = dw0;
      float* dskip = alias ? d2.data() : own.data();
      if (with_w)
        column_reduce(
            rows, dim,
            [&](int64_t c, int64_t r0, int64_t r1) { return residual_dw_part(d2.data(), skip.data(), dim, c, r0, r1); },
            [&](const double* partial, int64_t blocks, int64_t c) {
              residual_dw_finish(partial, blocks, dim, c, dw.data());
            });
      for (int64_t k = 0; k < rows * dim; ++k) residual_dskip_element(d2.data(), wp, dskip, dim, k / dim, k % dim);
      EXPECT_LT(rel_error(alias ? d2 : own, dskip_ref), kTol) << with_w << " alias " << alias;
      EXPECT_LT(rel_error(dw, dw_ref), kTol) << with_w << " alias " << alias;  // unchanged without w
    }
  }
}

TEST(CudaBodies, SoftplusWithStridesBiasAndLargeInputs) {
  const int64_t rows = 70, H = 5, rs = 8;
  Rng rng(20);
  std::vector<float> raw = random_floats(rng, size_t(rows * rs), 3.0);
  raw[0] = 40.0f;    // softplus ≈ v: no overflow
  raw[rs] = -40.0f;  // ≈ exp(v): the tiny value, not 0
  const std::vector<float> bias = random_floats(rng, size_t(H)), ddt = random_floats(rng, size_t(rows * H)),
                           db0 = random_floats(rng, size_t(H));
  const std::vector<double> rd = widen(raw), bd = widen(bias), dd = widen(ddt);
  for (bool with_bias : {true, false}) {
    const float* b = with_bias ? bias.data() : nullptr;
    std::vector<double> dt_ref(size_t(rows * H));
    cpu::softplus_forward(rd.data(), rs, with_bias ? bd.data() : nullptr, dt_ref.data(), rows, H);
    std::vector<float> dt(size_t(rows * H), NAN);
    for (int64_t k = 0; k < rows * H; ++k) softplus_forward_element(raw.data(), rs, b, dt.data(), H, k / H, k % H);
    EXPECT_LT(rel_error(dt, dt_ref), kTol);
    EXPECT_NEAR(dt[size_t(H)] / dt_ref[size_t(H)], 1.0, 1e-5);  // the exp(−40) tail, relative

    for (bool with_dbias : {true, false}) {
      std::vector<double> draw_ref(size_t(rows * rs), 4.0), db_ref = widen(db0);
      cpu::softplus_backward(dd.data(), rd.data(), rs, with_bias ? bd.data() : nullptr, draw_ref.data(),
                             with_dbias ? db_ref.data() : nullptr, rows, H);
      std::vector<float> draw(size_t(rows * rs), 4.0f), db = db0;
      for (int64_t k = 0; k < rows * H; ++k)
        softplus_backward_element(ddt.data(), raw.data(), rs, b, draw.data(), H, k / H, k % H);
      if (with_dbias)
        column_reduce(
            rows, H, [&](int64_t h, int64_t r0, int64_t r1) { return softplus_dbias_part(draw.data(), rs, h, r0, r1); },
            [&](const double* partial, int64_t blocks, int64_t h) {
              softplus_dbias_finish(partial, blocks, H, h, db.data());
            });
      EXPECT_LT(rel_error(draw, draw_ref), kTol);
      EXPECT_LT(rel_error(db, db_ref), kTol);
    }
  }
}

TEST(CudaBodies, EmbeddingFp32AndBf16TablesAndBadIds) {
  const int64_t vocab = 9, dim = 13, rows = 12;
  Rng rng(21);
  const std::vector<float> table = random_floats(rng, size_t(vocab * dim));
  std::vector<uint16_t> table_bf16(table.size());
  std::vector<bf16> table_ref_bf16(table.size());
  for (size_t i = 0; i < table.size(); ++i) table_bf16[i] = bf16_bits(table[i]), table_ref_bf16[i] = to_bf16(table[i]);
  std::vector<int32_t> ids(static_cast<size_t>(rows));
  for (auto& id : ids) id = int32_t(rng.next() % uint64_t(vocab));
  ids[3] = ids[7] = 2;  // a repeated id: its gradient rows add up
  ids[5] = int32_t(vocab - 1);

  std::vector<float> ref(size_t(rows * dim)), out(size_t(rows * dim), NAN);
  cpu::embedding_forward(ids.data(), table.data(), ref.data(), rows, dim);
  int32_t bad[2] = {0, 0};
  for (int64_t k = 0; k < rows * dim; ++k)
    embedding_forward_element(ids.data(), table.data(), out.data(), dim, vocab, k / dim, k % dim, bad);
  EXPECT_EQ(out, ref);
  cpu::embedding_forward(ids.data(), table_ref_bf16.data(), ref.data(), rows, dim);
  for (int64_t k = 0; k < rows * dim; ++k)
    embedding_forward_element(ids.data(), table_bf16.data(), out.data(), dim, vocab, k / dim, k % dim, bad);
  EXPECT_EQ(out, ref);
  EXPECT_EQ(bad[0], 0);

  const std::vector<float> dout = random_floats(rng, size_t(rows * dim)), dt0 = random_floats(rng, size_t(vocab * dim));
  const std::vector<double> dd = widen(dout);
  std::vector<double> dt_ref = widen(dt0);
  cpu::embedding_backward(ids.data(), dd.data(), dt_ref.data(), rows, dim);
  std::vector<float> dtable = dt0;
  for (int64_t k = 0; k < rows * dim; ++k) {
    const int64_t target = embedding_backward_target(ids.data(), dim, vocab, k / dim, k % dim, bad);
    if (target >= 0) dtable[size_t(target)] += dout[size_t(k)];
  }
  EXPECT_LT(rel_error(dtable, dt_ref), kTol);
  EXPECT_EQ(bad[0], 0);

  // Ids outside [0, vocab): flagged and never dereferenced; that row of out stays as it was.
  for (int32_t wrong : {int32_t(vocab), -1, std::numeric_limits<int32_t>::max()}) {
    std::vector<int32_t> ids2 = ids;
    ids2[6] = wrong;
    std::vector<float> o(size_t(rows * dim), -5.0f);
    int32_t flag[2] = {0, 0};
    for (int64_t k = 0; k < rows * dim; ++k)
      embedding_forward_element(ids2.data(), table.data(), o.data(), dim, vocab, k / dim, k % dim, flag);
    EXPECT_EQ(flag[0], 1);
    EXPECT_EQ(flag[1], wrong);
    for (int64_t c = 0; c < dim; ++c) EXPECT_EQ(o[size_t(6 * dim + c)], -5.0f);
    EXPECT_EQ(o[0], table[size_t(ids2[0]) * dim]);
    int32_t flag2[2] = {0, 0};
    EXPECT_EQ(embedding_backward_target(ids2.data(), dim, vocab, 6, 0, flag2), -1);
    EXPECT_EQ(flag2[0], 1);
    EXPECT_EQ(flag2[1], wrong);
  }
}

TEST(CudaBodies, AdamWMatchesCpu) {
  const int64_t n = 1001;
  Rng rng(22);
  for (bool decay : {true, false})
    for (int64_t step : {1, 2, 37}) {
      AdamWParams p;
      p.lr = 3e-3f, p.beta1 = 0.9f, p.beta2 = 0.95f, p.eps = 1e-8f, p.weight_decay = 0.1f, p.step = step;
      const std::vector<float> w0 = random_floats(rng, size_t(n)), g = random_floats(rng, size_t(n)),
                               m0 = random_floats(rng, size_t(n), 0.1);
      std::vector<float> v0 = random_floats(rng, size_t(n), 0.1);
      for (auto& v : v0) v = v * v;
      std::vector<float> w = w0, m = m0, v = v0, wr = w0, mr = m0, vr = v0;
      cpu::adamw_update(wr.data(), g.data(), mr.data(), vr.data(), n, p, decay);
      const AdamWCoeffs k = adamw_coeffs(p, decay);
      for (int64_t i = 0; i < n; ++i) adamw_element(w.data(), g.data(), m.data(), v.data(), k, i);
      EXPECT_LT(rel_error(m, widen(mr)), 1e-6);
      EXPECT_LT(rel_error(v, widen(vr)), 1e-6);
      // The update itself (w − w0) to fp32 precision: lr·1e0-sized steps on O(1) weights.
      std::vector<double> step_ref(static_cast<size_t>(n));
      std::vector<float> step_got(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i)
        step_ref[size_t(i)] = double(wr[size_t(i)]) - w0[size_t(i)], step_got[size_t(i)] = w[size_t(i)] - w0[size_t(i)];
      EXPECT_LT(rel_error(step_got, step_ref), 1e-4) << "decay " << decay << " step " << step;
    }
}

// The multi-tensor body: each element finds its run by binary search; gaps, before-first and after-last elements
// stay bit-identical; inside a run it is exactly adamw_element with that run's decay.
TEST(CudaBodies, AdamWSegmentsFindEachElementsRun) {
  const int64_t n = 700;
  Rng rng(23);
  const std::vector<AdamWRun> runs = {{2, 3, 1}, {3, 60, 0}, {64, 64, 1}, {64, 300, 1}, {301, 650, 0}, {650, 698, 1}};
  AdamWParams p;
  p.lr = 3e-3f, p.weight_decay = 0.1f, p.step = 3;
  const std::vector<float> w0 = random_floats(rng, size_t(n)), g = random_floats(rng, size_t(n)),
                           m0 = random_floats(rng, size_t(n), 0.1);
  std::vector<float> v0 = random_floats(rng, size_t(n), 0.1);
  for (auto& v : v0) v = v * v;
  std::vector<float> w = w0, m = m0, v = v0, wr = w0, mr = m0, vr = v0;
  for (int64_t i = 0; i < n; ++i)
    adamw_segment_element(w.data(), g.data(), m.data(), v.data(), adamw_coeffs(p, true), runs.data(),
                          int64_t(runs.size()), i);
  for (const AdamWRun& r : runs)
    for (int64_t i = r.begin; i < r.end; ++i)
      adamw_element(wr.data(), g.data(), mr.data(), vr.data(), adamw_coeffs(p, r.decay != 0), i);
  int64_t touched = 0;
  for (int64_t i = 0; i < n; ++i) {
    EXPECT_EQ(w[size_t(i)], wr[size_t(i)]) << i;
    EXPECT_EQ(m[size_t(i)], mr[size_t(i)]) << i;
    EXPECT_EQ(v[size_t(i)], vr[size_t(i)]) << i;
    touched += w[size_t(i)] != w0[size_t(i)];
  }
  EXPECT_GT(touched, 600);  // the runs cover 2..697 except the gap 60..63 and the empty run at 64
}

TEST(CudaBodies, SumSquaresScaleAndFiniteness) {
  const int64_t n = 5000, blocks = 3, threads = 64;  // a grid of 3 blocks: each thread strides by 192
  Rng rng(23);
  std::vector<float> x = random_floats(rng, size_t(n), 3.0);
  double total = 0;
  for (int64_t b = 0; b < blocks; ++b)
    total += block_total(
        threads, [&](int64_t t, int64_t) { return sum_squares_part(x.data(), n, b * threads + t, blocks * threads); });
  EXPECT_NEAR(total / cpu::sum_squares(x.data(), n), 1.0, 1e-12);

  std::vector<float> y = x, yr = x;
  for (int64_t i = 0; i < n; ++i) scale_element(y.data(), 0.37f, i);
  cpu::scale_inplace(yr.data(), n, 0.37f);
  EXPECT_EQ(y, yr);

  int32_t bad = 0;
  for (int64_t i = 0; i < n; ++i) check_finite_element(x.data(), i, &bad);
  EXPECT_EQ(bad, 0);
  EXPECT_TRUE(cpu::all_finite(x.data(), n));
  for (float v : {std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                  std::numeric_limits<float>::quiet_NaN()}) {
    std::vector<float> z = x;
    z[size_t(n - 1)] = v;
    bad = 0;
    for (int64_t i = 0; i < n; ++i) check_finite_element(z.data(), i, &bad);
    EXPECT_EQ(bad, 1) << v;
    EXPECT_FALSE(cpu::all_finite(z.data(), n));
  }
  std::vector<float> big = {std::numeric_limits<float>::max(), -std::numeric_limits<float>::max(),
                            std::numeric_limits<float>::denorm_min()};
  bad = 0;
  for (int64_t i = 0; i < 3; ++i) check_finite_element(big.data(), i, &bad);
  EXPECT_EQ(bad, 0);  // the largest and the smallest floats are finite
}
