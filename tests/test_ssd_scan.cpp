// SSD scan kernel (spec section 4): recurrent, quadratic and chunked forms agree; ssd_step matches;
// finite-difference gradients of every input; float vs double; an independent PyTorch oracle.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <functional>
#include <limits>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "ops/cpu/ssd_reference.h"
#include "ops/cpu/ssd_scan.h"
#include "oracle.h"

namespace txs::cpu {
namespace {

using test::rel_error;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kSentinel = 12345.0;  // pre-filled into outputs: padding must keep it, the rest must not

struct Case {
  int64_t batch = 1, seq = 10, heads = 2, groups = 2, head_dim = 4, state_dim = 3, chunk = 4;
  bool with_D = false, with_init = false, with_dfinal = false;
  bool realistic = false;  // Mamba-2 initialisation ranges for A and Δ (strong decay)
};

// One problem in the strided layout the kernel sees: every row padded so that inputs are column slices of
// wider buffers; the padding of inputs is NaN (reading it would poison the results).
struct Problem {
  SsdShape s;
  Case k;
  std::vector<double> x, dt, A, B, C, D, init, dy, dfinal;

  int64_t rows() const { return s.batch * s.seq; }
  size_t state_size() const { return size_t(s.batch * s.heads * s.head_dim * s.state_dim); }
};

Problem make_problem(const Case& k, uint64_t seed) {
  Problem p;
  p.k = k;
  SsdShape& s = p.s;
  s.batch = k.batch, s.seq = k.seq, s.heads = k.heads, s.groups = k.groups, s.head_dim = k.head_dim;
  s.state_dim = k.state_dim, s.chunk = k.chunk;
  s.x_stride = k.heads * k.head_dim + 3;
  s.y_stride = k.heads * k.head_dim + 2;
  s.bc_stride = k.groups * k.state_dim + 1;
  s.dt_stride = k.heads + 2;
  Rng rng(seed);
  const int64_t rows = p.rows(), H = k.heads, HP = k.heads * k.head_dim, GN = k.groups * k.state_dim;
  auto strided = [&](int64_t width, int64_t stride, std::function<double()> gen) {
    std::vector<double> v(size_t(rows * stride), kNaN);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t i = 0; i < width; ++i) v[size_t(r * stride + i)] = gen();
    return v;
  };
  const double bc_scale = 1.0 / std::sqrt(double(k.state_dim));
  p.x = strided(HP, s.x_stride, [&] { return rng.normal(); });
  p.B = strided(GN, s.bc_stride, [&] { return bc_scale * rng.normal(); });
  p.C = strided(GN, s.bc_stride, [&] { return bc_scale * rng.normal(); });
  p.dy = strided(HP, s.y_stride, [&] { return rng.normal(); });
  if (k.realistic) {
    // A = −exp(A_log), A_log = log U[1,16]; Δ around exp(U[log 1e-3, log 1e-1]) with some per-token spread.
    p.dt = strided(H, s.dt_stride, [&] { return std::exp(rng.uniform(std::log(1e-3), std::log(1e-1))); });
    for (int64_t h = 0; h < H; ++h) p.A.push_back(-rng.uniform(1.0, 16.0));
  } else {
    p.dt = strided(H, s.dt_stride, [&] { return rng.uniform(0.05, 0.3); });
    for (int64_t h = 0; h < H; ++h) p.A.push_back(-rng.uniform(0.3, 2.0));
  }
  if (k.with_D)
    for (int64_t h = 0; h < H; ++h) p.D.push_back(rng.uniform(0.5, 1.5));
  if (k.with_init) p.init = test::random_vector(rng, p.state_size());
  if (k.with_dfinal) p.dfinal = test::random_vector(rng, p.state_size());
  return p;
}

template <class T>
std::vector<T> cast(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}
template <class T>
const T* ptr(const std::vector<T>& v) {
  return v.empty() ? nullptr : v.data();
}
template <class T>
T* ptr(std::vector<T>& v) {
  return v.empty() ? nullptr : v.data();
}

// Strided [rows, stride] → packed [rows, width], failing the test when the padding lost its sentinel.
template <class T>
std::vector<double> pack(const std::vector<T>& v, int64_t rows, int64_t width, int64_t stride, bool check_padding) {
  std::vector<double> out;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < width; ++i) out.push_back(double(v[size_t(r * stride + i)]));
    if (check_padding) {
      for (int64_t i = width; i < stride; ++i) EXPECT_EQ(double(v[size_t(r * stride + i)]), kSentinel) << "padding";
    }
  }
  return out;
}

// Everything the kernel produces, packed, in double.
struct Result {
  std::vector<double> y, final_state, dx, ddt, dA, dB, dC, dD, dinit;
};

template <class T>
Result run_chunked(const Problem& p, bool backward = true) {
  const SsdShape& s = p.s;
  const int64_t rows = p.rows(), HP = s.heads * s.head_dim, GN = s.groups * s.state_dim;
  auto x = cast<T>(p.x), dt = cast<T>(p.dt), A = cast<T>(p.A), B = cast<T>(p.B), C = cast<T>(p.C);
  auto D = cast<T>(p.D), init = cast<T>(p.init), dy = cast<T>(p.dy), dfinal = cast<T>(p.dfinal);
  std::vector<T> y(size_t(rows * s.y_stride), T(kSentinel)), final_state(p.state_size(), T(kSentinel));
  ssd_forward<T>(s, x.data(), dt.data(), A.data(), B.data(), C.data(), ptr(D), ptr(init), y.data(),
                 final_state.data());
  Result r;
  r.y = pack(y, rows, HP, s.y_stride, true);
  r.final_state = test::to_double(final_state.data(), final_state.size());
  if (!backward) return r;
  std::vector<T> dx(size_t(rows * s.x_stride), T(kSentinel)), ddt(size_t(rows * s.dt_stride), T(kSentinel));
  std::vector<T> dB(size_t(rows * s.bc_stride), T(kSentinel)), dC(size_t(rows * s.bc_stride), T(kSentinel));
  std::vector<T> dA(size_t(s.heads), T(0)), dD(p.D.size(), T(0)), dinit(p.init.size(), T(kSentinel));
  ssd_backward<T>(s, x.data(), dt.data(), A.data(), B.data(), C.data(), ptr(D), ptr(init), dy.data(), ptr(dfinal),
                  dx.data(), ddt.data(), dA.data(), dB.data(), dC.data(), ptr(dD), ptr(dinit));
  r.dx = pack(dx, rows, HP, s.x_stride, true);
  r.ddt = pack(ddt, rows, s.heads, s.dt_stride, true);
  r.dB = pack(dB, rows, GN, s.bc_stride, true);
  r.dC = pack(dC, rows, GN, s.bc_stride, true);
  r.dA = test::to_double(dA.data(), dA.size());
  r.dD = test::to_double(dD.data(), dD.size());
  r.dinit = test::to_double(dinit.data(), dinit.size());
  return r;
}

using FormFn = void (*)(const SsdShape&, const double*, const double*, const double*, const double*, const double*,
                        const double*, const double*, double*, double*);

Result run_form(const Problem& p, FormFn form) {
  const SsdShape& s = p.s;
  std::vector<double> y(size_t(p.rows() * s.y_stride), kSentinel), final_state(p.state_size());
  form(s, p.x.data(), p.dt.data(), p.A.data(), p.B.data(), p.C.data(), ptr(p.D), ptr(p.init), y.data(),
       final_state.data());
  Result r;
  r.y = pack(y, p.rows(), s.heads * s.head_dim, s.y_stride, true);
  r.final_state = final_state;
  return r;
}

// ---------------------------------------------------------------------------------------------------------

TEST(SsdScan, RecurrentQuadraticAndChunkedFormsAgree) {
  int seed = 1;
  for (int64_t groups : {4, 1})
    for (int64_t chunk : {1, 7, 64, 256})
      for (bool extras : {false, true}) {
        Case k;
        k.batch = 2, k.seq = 83, k.heads = 4, k.groups = groups, k.head_dim = 5, k.state_dim = 6;
        k.chunk = chunk, k.with_D = extras, k.with_init = extras;
        const Problem p = make_problem(k, uint64_t(seed++));
        const Result rec = run_form(p, reference::ssd_recurrent<double>);
        const Result quad = run_form(p, reference::ssd_quadratic<double>);
        const Result chunked = run_chunked<double>(p, false);
        SCOPED_TRACE(testing::Message() << "G=" << groups << " Q=" << chunk << " D/init=" << extras);
        EXPECT_LT(rel_error(quad.y, rec.y), 1e-12);
        EXPECT_LT(rel_error(quad.final_state, rec.final_state), 1e-12);
        EXPECT_LT(rel_error(chunked.y, rec.y), 1e-12);
        EXPECT_LT(rel_error(chunked.final_state, rec.final_state), 1e-12);
      }
}

TEST(SsdScan, ChunkExactlyDividingAndSingleShortChunk) {
  for (int64_t seq : {64, 3, 1}) {
    Case k;
    k.batch = 1, k.seq = seq, k.heads = 2, k.groups = 1, k.head_dim = 8, k.state_dim = 8, k.chunk = 16;
    k.with_init = true, k.with_D = true;
    const Problem p = make_problem(k, 99);
    const Result rec = run_form(p, reference::ssd_recurrent<double>);
    const Result chunked = run_chunked<double>(p, false);
    EXPECT_LT(rel_error(chunked.y, rec.y), 1e-12) << "T=" << seq;
    EXPECT_LT(rel_error(chunked.final_state, rec.final_state), 1e-12) << "T=" << seq;
  }
}

TEST(SsdScan, EmptySequencePassesStateThrough) {
  Case k;
  k.seq = 0, k.with_init = true, k.with_dfinal = true;
  const Problem p = make_problem(k, 5);
  const Result r = run_chunked<double>(p);
  EXPECT_EQ(r.final_state, p.init);
  EXPECT_EQ(r.dinit, p.dfinal);
}

TEST(SsdScan, StepOverSequenceMatchesChunkedForward) {
  for (int64_t groups : {3, 1}) {
    Case k;
    k.batch = 2, k.seq = 29, k.heads = 3, k.groups = groups, k.head_dim = 4, k.state_dim = 5, k.chunk = 8;
    k.with_D = true, k.with_init = true;
    const Problem p = make_problem(k, 7);
    const Result chunked = run_chunked<double>(p, false);
    const SsdShape& s = p.s;
    const int64_t H = s.heads, P = s.head_dim, G = s.groups, N = s.state_dim;
    std::vector<double> state = p.init, y_steps;
    for (int64_t t = 0; t < s.seq; ++t) {
      std::vector<double> x, dt, B, C, y(size_t(s.batch * H * P));
      for (int64_t b = 0; b < s.batch; ++b) {
        const int64_t row = b * s.seq + t;
        for (int64_t i = 0; i < H * P; ++i) x.push_back(p.x[size_t(row * s.x_stride + i)]);
        for (int64_t i = 0; i < H; ++i) dt.push_back(p.dt[size_t(row * s.dt_stride + i)]);
        for (int64_t i = 0; i < G * N; ++i) B.push_back(p.B[size_t(row * s.bc_stride + i)]);
        for (int64_t i = 0; i < G * N; ++i) C.push_back(p.C[size_t(row * s.bc_stride + i)]);
      }
      ssd_step<double>(s.batch, H, P, G, N, x.data(), dt.data(), p.A.data(), B.data(), C.data(), p.D.data(),
                       state.data(), y.data());
      y_steps.insert(y_steps.end(), y.begin(), y.end());
    }
    // y_steps is [T, batch, H, P]; chunked.y is [batch, T, H, P]
    std::vector<double> y_bt;
    for (int64_t b = 0; b < s.batch; ++b)
      for (int64_t t = 0; t < s.seq; ++t)
        for (int64_t i = 0; i < H * P; ++i) y_bt.push_back(y_steps[size_t((t * s.batch + b) * H * P + i)]);
    EXPECT_LT(rel_error(y_bt, chunked.y), 1e-12) << "G=" << groups;
    EXPECT_LT(rel_error(state, chunked.final_state), 1e-12) << "G=" << groups;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Finite differences of loss = Σ y·dy + Σ final_state·dfinal in double: its gradients are what
// ssd_backward returns for that dy and dfinal.

double loss_of(const Problem& p) {
  const Result r = run_chunked<double>(p, false);
  const std::vector<double> dy = pack(p.dy, p.rows(), p.s.heads * p.s.head_dim, p.s.y_stride, false);
  double l = 0;
  for (size_t i = 0; i < dy.size(); ++i) l += r.y[i] * dy[i];
  for (size_t i = 0; i < p.dfinal.size(); ++i) l += r.final_state[i] * p.dfinal[i];
  return l;
}

struct Param {
  const char* name;
  std::vector<double> Problem::*field;
  std::vector<double> Result::*grad;
  int64_t width;   // valid columns per row (strided inputs) or 0 for flat vectors
  int64_t stride;  // row stride
};

std::vector<Param> params_of(const Problem& p) {
  const SsdShape& s = p.s;
  std::vector<Param> ps = {
      {"x", &Problem::x, &Result::dx, s.heads * s.head_dim, s.x_stride},
      {"dt", &Problem::dt, &Result::ddt, s.heads, s.dt_stride},
      {"A", &Problem::A, &Result::dA, 0, 0},
      {"B", &Problem::B, &Result::dB, s.groups * s.state_dim, s.bc_stride},
      {"C", &Problem::C, &Result::dC, s.groups * s.state_dim, s.bc_stride},
  };
  if (!p.D.empty()) ps.push_back({"D", &Problem::D, &Result::dD, 0, 0});
  if (!p.init.empty()) ps.push_back({"init_state", &Problem::init, &Result::dinit, 0, 0});
  return ps;
}

// Storage indices of the valid entries of a parameter, in packed order (the order of its gradient).
std::vector<size_t> valid_indices(const Problem& p, const Param& par) {
  std::vector<size_t> idx;
  const size_t n = (p.*par.field).size();
  if (par.width == 0) {
    for (size_t i = 0; i < n; ++i) idx.push_back(i);
  } else {
    for (int64_t r = 0; r < p.rows(); ++r)
      for (int64_t i = 0; i < par.width; ++i) idx.push_back(size_t(r * par.stride + i));
  }
  return idx;
}

TEST(SsdScan, GradientsMatchFiniteDifferencesEveryEntry) {
  for (int64_t groups : {2, 1}) {
    Case k;
    k.batch = 2, k.seq = 7, k.heads = 2, k.groups = groups, k.head_dim = 3, k.state_dim = 2, k.chunk = 3;
    k.with_D = true, k.with_init = true, k.with_dfinal = true;
    const Problem p = make_problem(k, 11 + uint64_t(groups));
    const Result an = run_chunked<double>(p);
    const double h = 1e-6;
    for (const Param& par : params_of(p)) {
      const std::vector<size_t> idx = valid_indices(p, par);
      const std::vector<double>& grad = an.*par.grad;
      ASSERT_EQ(grad.size(), idx.size()) << par.name;
      std::vector<double> fd(idx.size());
      for (size_t i = 0; i < idx.size(); ++i) {
        Problem q = p;
        (q.*par.field)[idx[i]] += h;
        const double lp = loss_of(q);
        (q.*par.field)[idx[i]] -= 2 * h;
        const double lm = loss_of(q);
        fd[i] = (lp - lm) / (2 * h);
      }
      EXPECT_LT(rel_error(grad, fd), 1e-8) << par.name << " G=" << groups;
    }
  }
}

TEST(SsdScan, GradientsMatchFiniteDifferencesRandomDirections) {
  // Several chunks, a partial last chunk, chunk size crossing the internal 64-row blocks.
  struct Shape {
    int64_t seq, chunk, groups;
  };
  for (Shape sh : {Shape{45, 16, 2}, Shape{150, 100, 1}, Shape{70, 1, 4}}) {
    Case k;
    k.batch = 2, k.seq = sh.seq, k.heads = 4, k.groups = sh.groups, k.head_dim = 6, k.state_dim = 5;
    k.chunk = sh.chunk, k.with_D = true, k.with_init = true, k.with_dfinal = true;
    const Problem p = make_problem(k, 21 + uint64_t(sh.seq));
    const Result an = run_chunked<double>(p);
    Rng rng(3);
    const double h = 1e-5;
    for (const Param& par : params_of(p)) {
      const std::vector<size_t> idx = valid_indices(p, par);
      const std::vector<double>& grad = an.*par.grad;
      ASSERT_EQ(grad.size(), idx.size()) << par.name;
      for (int trial = 0; trial < 2; ++trial) {
        const std::vector<double> dir = test::random_vector(rng, idx.size());
        double analytic = 0, scale = 0;
        for (size_t i = 0; i < idx.size(); ++i) {
          analytic += grad[i] * dir[i];
          scale += std::abs(grad[i] * dir[i]);
        }
        Problem q = p;
        for (size_t i = 0; i < idx.size(); ++i) (q.*par.field)[idx[i]] += h * dir[i];
        const double lp = loss_of(q);
        for (size_t i = 0; i < idx.size(); ++i) (q.*par.field)[idx[i]] -= 2 * h * dir[i];
        const double lm = loss_of(q);
        const double fd = (lp - lm) / (2 * h);
        EXPECT_NEAR(fd, analytic, 1e-8 * scale) << par.name << " T=" << sh.seq << " Q=" << sh.chunk;
      }
    }
  }
}

TEST(SsdScan, ParameterGradientsAccumulate) {
  Case k;
  k.with_D = true;
  const Problem p = make_problem(k, 8);
  const Result once = run_chunked<double>(p);
  // run_chunked zeroes dA/dD; call the kernel a second time on top of them by hand.
  const SsdShape& s = p.s;
  std::vector<double> dx(p.x.size()), ddt(p.dt.size()), dB(p.B.size()), dC(p.C.size());
  std::vector<double> dA = once.dA, dD = once.dD;
  ssd_backward<double>(s, p.x.data(), p.dt.data(), p.A.data(), p.B.data(), p.C.data(), p.D.data(), nullptr,
                       p.dy.data(), nullptr, dx.data(), ddt.data(), dA.data(), dB.data(), dC.data(), dD.data(),
                       nullptr);
  for (size_t h = 0; h < dA.size(); ++h) {
    EXPECT_NEAR(dA[h], 2 * once.dA[h], 1e-12 * std::abs(once.dA[h]));
    EXPECT_NEAR(dD[h], 2 * once.dD[h], 1e-12 * std::abs(once.dD[h]));
  }
}

// ---------------------------------------------------------------------------------------------------------

TEST(SsdScan, FloatAgreesWithDouble) {
  Case k;
  k.batch = 2, k.seq = 300, k.heads = 4, k.groups = 2, k.head_dim = 32, k.state_dim = 32, k.chunk = 128;
  k.with_D = true, k.with_init = true, k.with_dfinal = true, k.realistic = true;
  const Problem p = make_problem(k, 31);
  const Result d = run_chunked<double>(p), f = run_chunked<float>(p);
  // Observed ≈1e-7..4e-7 (fp32 rounding): 3e-6 leaves room for another BLAS yet catches a 1e-5 error in exp.
  EXPECT_LT(rel_error(f.y, d.y), 3e-6);
  EXPECT_LT(rel_error(f.final_state, d.final_state), 3e-6);
  EXPECT_LT(rel_error(f.dx, d.dx), 3e-6);
  EXPECT_LT(rel_error(f.ddt, d.ddt), 3e-6);
  EXPECT_LT(rel_error(f.dA, d.dA), 3e-6);
  EXPECT_LT(rel_error(f.dB, d.dB), 3e-6);
  EXPECT_LT(rel_error(f.dC, d.dC), 3e-6);
  EXPECT_LT(rel_error(f.dD, d.dD), 3e-6);
  EXPECT_LT(rel_error(f.dinit, d.dinit), 3e-6);
}

TEST(SsdScan, ResultsDoNotDependOnThreadCount) {
  // The second shape has a single chunk: the forward then splits the heads of the group over threads.
  for (int64_t seq : {200, 100}) {
    Case k;
    k.batch = 1, k.seq = seq, k.heads = 4, k.groups = 1, k.head_dim = 16, k.state_dim = 16, k.chunk = 128;
    k.with_D = true, k.with_init = true, k.with_dfinal = true;
    const Problem p = make_problem(k, 41);
    const int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    const Result one = run_chunked<float>(p);
    omp_set_num_threads(std::max(2, saved));
    const Result many = run_chunked<float>(p);
    omp_set_num_threads(saved);
    EXPECT_EQ(one.y, many.y);
    EXPECT_EQ(one.final_state, many.final_state);
    EXPECT_EQ(one.dx, many.dx);
    EXPECT_EQ(one.ddt, many.ddt);
    EXPECT_EQ(one.dA, many.dA);
    EXPECT_EQ(one.dB, many.dB);
    EXPECT_EQ(one.dC, many.dC);
    EXPECT_EQ(one.dD, many.dD);
    EXPECT_EQ(one.dinit, many.dinit);
  }
}

TEST(SsdScan, RejectsBadShapes) {
  Case k;
  const Problem p = make_problem(k, 1);
  std::vector<double> y(p.dy.size()), fin(p.state_size());
  auto fwd = [&](SsdShape s) {
    ssd_forward<double>(s, p.x.data(), p.dt.data(), p.A.data(), p.B.data(), p.C.data(), nullptr, nullptr, y.data(),
                        fin.data());
  };
  SsdShape s = p.s;
  s.groups = 3;  // 2 heads
  EXPECT_THROW(fwd(s), Error);
  s = p.s, s.x_stride = s.heads * s.head_dim - 1;
  EXPECT_THROW(fwd(s), Error);
  s = p.s, s.bc_stride = 0;
  EXPECT_THROW(fwd(s), Error);
  s = p.s, s.chunk = 0;
  EXPECT_THROW(fwd(s), Error);
  s = p.s, s.seq = -1;
  EXPECT_THROW(fwd(s), Error);
  EXPECT_THROW(ssd_forward<double>(p.s, nullptr, p.dt.data(), p.A.data(), p.B.data(), p.C.data(), nullptr, nullptr,
                                   y.data(), nullptr),
               Error);
  std::vector<double> st(p.state_size());
  EXPECT_THROW(ssd_step<double>(1, 4, 2, 3, 2, p.x.data(), p.dt.data(), p.A.data(), p.B.data(), p.C.data(), nullptr,
                                st.data(), y.data()),
               Error);
}

// ---------------------------------------------------------------------------------------------------------
// Independent PyTorch formulation (tests/reference/oracle_ssd.py: token recurrence + autograd).

test::OracleTensor packed(const Problem& p, const std::vector<double>& v, int64_t width, int64_t stride,
                          std::vector<int64_t> shape) {
  return {std::move(shape), pack(v, p.rows(), width, stride, false)};
}

void compare_with_torch(const Case& k, uint64_t seed, double tol) {
  const Problem p = make_problem(k, seed);
  const SsdShape& s = p.s;
  const int64_t Bt = s.batch, T = s.seq, H = s.heads, P = s.head_dim, G = s.groups, N = s.state_dim;
  test::OracleTensors in;
  in["x"] = packed(p, p.x, H * P, s.x_stride, {Bt, T, H, P});
  in["dt"] = packed(p, p.dt, H, s.dt_stride, {Bt, T, H});
  in["A"] = {{H}, p.A};
  in["B"] = packed(p, p.B, G * N, s.bc_stride, {Bt, T, G, N});
  in["C"] = packed(p, p.C, G * N, s.bc_stride, {Bt, T, G, N});
  in["dy"] = packed(p, p.dy, H * P, s.y_stride, {Bt, T, H, P});
  if (k.with_D) in["D"] = {{H}, p.D};
  if (k.with_init) in["init_state"] = {{Bt, H, P, N}, p.init};
  if (k.with_dfinal) in["dfinal_state"] = {{Bt, H, P, N}, p.dfinal};
  test::OracleTensors out = test::torch_oracle("ssd", in);
  ASSERT_FALSE(out.empty());
  const Result r = run_chunked<double>(p);
  auto check = [&](const char* name, const std::vector<double>& ours) {
    ASSERT_TRUE(out.count(name)) << name;
    for (double v : ours) ASSERT_TRUE(std::isfinite(v)) << name;
    EXPECT_LT(rel_error(ours, out[name].data), tol) << name;
  };
  check("y", r.y);
  check("final_state", r.final_state);
  check("dx", r.dx);
  check("ddt", r.ddt);
  check("dA", r.dA);
  check("dB", r.dB);
  check("dC", r.dC);
  if (k.with_D) check("dD", r.dD);
  if (k.with_init) check("dinit_state", r.dinit);
}

TEST(SsdScan, MatchesTorchPerHeadGroupsWithCarriedState) {
  Case k;  // TransXSSM: G = H, no D, carried state in and out
  k.batch = 2, k.seq = 50, k.heads = 3, k.groups = 3, k.head_dim = 4, k.state_dim = 4, k.chunk = 16;
  k.with_init = true, k.with_dfinal = true;
  compare_with_torch(k, 51, 1e-9);
}

TEST(SsdScan, MatchesTorchSharedGroupWithSkip) {
  Case k;  // Mamba-2: G = 1, D skip
  k.batch = 2, k.seq = 40, k.heads = 4, k.groups = 1, k.head_dim = 5, k.state_dim = 3, k.chunk = 7;
  k.with_D = true;
  compare_with_torch(k, 52, 1e-9);
}

TEST(SsdScan, MatchesTorchOnLongSequenceWithRealisticDecay) {
  Case k;
  k.batch = 1, k.seq = 1000, k.heads = 4, k.groups = 1, k.head_dim = 8, k.state_dim = 8, k.chunk = 256;
  k.with_D = true, k.with_init = true, k.with_dfinal = true, k.realistic = true;
  compare_with_torch(k, 53, 1e-9);
}

}  // namespace
}  // namespace txs::cpu
