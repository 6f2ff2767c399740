// The CUDA SSD scan's kernel bodies (ops/cuda/bodies/ssd_bodies.h) and phase sequence (ssd_phases.h) run on
// the host, item by item in the kernels' order, against the CPU kernel in double (ops/cpu/ssd_scan.h): the
// index decoding, strides, group mapping, scratch layout and formulas of ops/cuda/ssd.cu, without a GPU.
// fp64 bodies must agree to rounding (the algebra); fp32 bodies (what the GPU runs) to fp32 accuracy: observed
// ≤ 1e-6 relative (max-norm), checked at 5e-6.
// In CUDA builds the Device tests also run the real launchers (ops/cuda/ssd.h) on the GPU against the same
// references; without a GPU they skip.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "ops/cpu/ssd_scan.h"
#include "ops/cuda/bodies/ssd_phases.h"
#include "oracle.h"

#if TRANSXSSM_BACKEND_CUDA
#include <cuda_runtime_api.h>

#include "ops/cuda/device_scratch.h"
#include "ops/cuda/ssd.h"
#endif

namespace txs::cuda::ssd {
namespace {

using test::rel_error;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kSentinel = 12345.0;  // pre-filled into outputs: padding must keep it, the rest must not

// The `run` of ssd_phases.h on the host: every item of a phase, in index order, before the next phase.
struct HostRun {
  template <class Item>
  void operator()(const Item& item, const char*) const {
    for (int64_t idx = 0; idx < item.count(); ++idx) item(idx);
  }
};

struct Case {
  int64_t batch = 1, seq = 10, heads = 2, groups = 2, head_dim = 4, state_dim = 3, chunk = 4;
  bool with_D = false, with_init = false, with_dfinal = false;
  bool realistic = false;  // Mamba-2 initialisation ranges for A and Δ (strong decay)
};

// Inputs in the strided layout the kernels see (column slices of wider rows, NaN in the padding).
struct Problem {
  SsdShape s;
  std::vector<double> x, dt, A, B, C, D, init, dy, dfinal, dA0, dD0;
  int64_t rows() const { return s.batch * s.seq; }
  size_t state_size() const { return size_t(s.batch * s.heads * s.head_dim * s.state_dim); }
};

Problem make_problem(const Case& k, uint64_t seed) {
  Problem p;
  SsdShape& s = p.s;
  s.batch = k.batch, s.seq = k.seq, s.heads = k.heads, s.groups = k.groups, s.head_dim = k.head_dim;
  s.state_dim = k.state_dim, s.chunk = k.chunk;
  s.x_stride = k.heads * k.head_dim + 3;
  s.y_stride = k.heads * k.head_dim + 2;
  s.bc_stride = k.groups * k.state_dim + 5;
  s.dt_stride = k.heads + 2;
  Rng rng(seed);
  const int64_t rows = p.rows(), H = k.heads, HP = k.heads * k.head_dim, GN = k.groups * k.state_dim;
  auto strided = [&](int64_t width, int64_t stride, const std::function<double()>& gen) {
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
  // dA and dD are accumulated: start them away from zero.
  p.dA0 = test::random_vector(rng, size_t(H));
  if (k.with_D) p.dD0 = test::random_vector(rng, size_t(H));
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

// Strided [rows, stride] → packed [rows, width]; the padding must still hold the sentinel.
template <class T>
std::vector<double> pack(const std::vector<T>& v, int64_t rows, int64_t width, int64_t stride) {
  std::vector<double> out;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < width; ++i) out.push_back(double(v[size_t(r * stride + i)]));
    for (int64_t i = width; i < stride; ++i) EXPECT_EQ(double(v[size_t(r * stride + i)]), kSentinel) << "padding";
  }
  return out;
}

struct Result {
  std::vector<double> y, final_state, dx, ddt, dA, dB, dC, dD, dinit;
};

enum class Mode { Cpu, Bodies, Device };

#if TRANSXSSM_BACKEND_CUDA
// Device copy of a host vector (null for an empty one), copied back by to_host.
struct DeviceArray {
  float* ptr = nullptr;
  size_t n = 0;
  explicit DeviceArray(const std::vector<float>& v) : n(v.size()) {
    if (n == 0) return;
    void* p = nullptr;
    EXPECT_EQ(cudaMalloc(&p, n * sizeof(float)), cudaSuccess);
    ptr = static_cast<float*>(p);
    EXPECT_EQ(cudaMemcpy(ptr, v.data(), n * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  ~DeviceArray() {
    if (ptr) cudaFree(ptr);
  }
  void to_host(std::vector<float>& v) const {
    if (n) {
      EXPECT_EQ(cudaMemcpy(v.data(), ptr, n * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
    }
  }
};

// Why the device tests cannot run here ("" when they can).
std::string no_gpu_reason() {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) return std::string("no usable CUDA device: ") + cudaGetErrorString(err);
  return count > 0 ? "" : "no CUDA device";
}
#endif

// Runs the CPU kernel (T = double), the CUDA bodies through the phase sequence on the host, or (CUDA builds,
// T = float) the CUDA launchers on the GPU.
template <class T>
Result run(const Problem& p, Mode mode) {
  const SsdShape& s = p.s;
  const int64_t rows = p.rows(), HP = s.heads * s.head_dim, GN = s.groups * s.state_dim;
  auto x = cast<T>(p.x), dt = cast<T>(p.dt), A = cast<T>(p.A), B = cast<T>(p.B), C = cast<T>(p.C);
  auto D = cast<T>(p.D), init = cast<T>(p.init), dy = cast<T>(p.dy), dfinal = cast<T>(p.dfinal);
  std::vector<T> y(size_t(rows * s.y_stride), T(kSentinel)), final_state(p.state_size(), T(kSentinel));
  std::vector<T> dx(size_t(rows * s.x_stride), T(kSentinel)), ddt(size_t(rows * s.dt_stride), T(kSentinel));
  std::vector<T> dB(size_t(rows * s.bc_stride), T(kSentinel)), dC(size_t(rows * s.bc_stride), T(kSentinel));
  std::vector<T> dA = cast<T>(p.dA0), dD = cast<T>(p.dD0), dinit(p.init.size(), T(kSentinel));
  if (mode == Mode::Cpu) {
    cpu::ssd_forward<T>(s, x.data(), dt.data(), A.data(), B.data(), C.data(), ptr(D), ptr(init), y.data(),
                        final_state.data());
    cpu::ssd_backward<T>(s, x.data(), dt.data(), A.data(), B.data(), C.data(), ptr(D), ptr(init), dy.data(),
                         ptr(dfinal), dx.data(), ddt.data(), dA.data(), dB.data(), dC.data(), ptr(dD), ptr(dinit));
  } else if (mode == Mode::Device) {
#if TRANSXSSM_BACKEND_CUDA
    if constexpr (std::is_same_v<T, float>) {
      const DeviceArray x_d(x), dt_d(dt), A_d(A), B_d(B), C_d(C), D_d(D), init_d(init), dy_d(dy), dfinal_d(dfinal);
      const DeviceArray y_d(y), final_d(final_state), dx_d(dx), ddt_d(ddt), dB_d(dB), dC_d(dC), dA_d(dA), dD_d(dD);
      const DeviceArray dinit_d(dinit);
      cuda::ssd_forward(s, x_d.ptr, dt_d.ptr, A_d.ptr, B_d.ptr, C_d.ptr, D_d.ptr, init_d.ptr, y_d.ptr, final_d.ptr);
      cuda::ssd_backward(s, x_d.ptr, dt_d.ptr, A_d.ptr, B_d.ptr, C_d.ptr, D_d.ptr, init_d.ptr, dy_d.ptr, dfinal_d.ptr,
                         dx_d.ptr, ddt_d.ptr, dA_d.ptr, dB_d.ptr, dC_d.ptr, dD_d.ptr, dinit_d.ptr);
      EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess) << cudaGetErrorString(cudaGetLastError());
      y_d.to_host(y), final_d.to_host(final_state), dx_d.to_host(dx), ddt_d.to_host(ddt), dB_d.to_host(dB);
      dC_d.to_host(dC), dA_d.to_host(dA), dD_d.to_host(dD), dinit_d.to_host(dinit);
    }
#else
    ADD_FAILURE() << "no CUDA backend in this build";
#endif
  } else {
    // Scratch starts as NaN, as uninitialised device memory might: reading anything not written poisons.
    const Geo g = make_geo(s, "test");
    for (bool backward : {false, true}) {
      const WorkSize size = work_size(g, backward);
      std::vector<T> small(size_t(size.small), T(kNaN)), m1(size_t(size.m1), T(kNaN)), m2(size_t(size.m2), T(kNaN));
      const Work<T> w = carve<T>(g, backward, small.data(), m1.data(), m2.data());
      if (!backward)
        forward_phases<T>(HostRun{}, g, w, x.data(), dt.data(), A.data(), B.data(), C.data(), ptr(D), ptr(init),
                          y.data(), final_state.data());
      else
        backward_phases<T>(HostRun{}, g, w, x.data(), dt.data(), A.data(), B.data(), C.data(), ptr(D), ptr(init),
                           dy.data(), ptr(dfinal), dx.data(), ddt.data(), dA.data(), dB.data(), dC.data(), ptr(dD),
                           ptr(dinit));
    }
  }
  Result r;
  r.y = pack(y, rows, HP, s.y_stride);
  r.final_state = test::to_double(final_state.data(), final_state.size());
  r.dx = pack(dx, rows, HP, s.x_stride);
  r.ddt = pack(ddt, rows, s.heads, s.dt_stride);
  r.dB = pack(dB, rows, GN, s.bc_stride);
  r.dC = pack(dC, rows, GN, s.bc_stride);
  r.dA = test::to_double(dA.data(), dA.size());
  r.dD = test::to_double(dD.data(), dD.size());
  r.dinit = test::to_double(dinit.data(), dinit.size());
  return r;
}

// Largest relative error over every output and gradient (reported per field on failure).
double compare(const Result& got, const Result& ref, double tol) {
  double worst = 0;
  auto check = [&](const char* name, const std::vector<double>& a, const std::vector<double>& b) {
    if (b.empty() && a.empty()) return;
    const double e = rel_error(a, b);
    EXPECT_LT(e, tol) << name;
    worst = std::max(worst, e);
  };
  check("y", got.y, ref.y);
  check("final_state", got.final_state, ref.final_state);
  check("dx", got.dx, ref.dx);
  check("ddt", got.ddt, ref.ddt);
  check("dA", got.dA, ref.dA);
  check("dB", got.dB, ref.dB);
  check("dC", got.dC, ref.dC);
  check("dD", got.dD, ref.dD);
  check("dinit", got.dinit, ref.dinit);
  return worst;
}

TEST(CudaSsdBodies, MatchCpuOnRaggedGroupedStridedShapes) {
  int seed = 1;
  for (int64_t groups : {4, 2, 1})
    for (int64_t chunk : {1, 5, 16, 64})
      for (int extras = 0; extras < 3; ++extras) {
        Case k;
        k.batch = 2, k.seq = 37, k.heads = 4, k.groups = groups, k.head_dim = 5, k.state_dim = 6, k.chunk = chunk;
        k.with_D = extras >= 1, k.with_init = extras >= 1, k.with_dfinal = extras == 2 || chunk == 5;
        const Problem p = make_problem(k, uint64_t(seed++));
        SCOPED_TRACE(testing::Message() << "G=" << groups << " Q=" << chunk << " extras=" << extras);
        const Result ref = run<double>(p, Mode::Cpu);
        compare(run<double>(p, Mode::Bodies), ref, 1e-11);
        compare(run<float>(p, Mode::Bodies), ref, 5e-6);
      }
}

TEST(CudaSsdBodies, ChunkDividingSequenceSingleShortChunkAndOneToken) {
  for (int64_t seq : {48, 3, 1}) {
    Case k;
    k.batch = 3, k.seq = seq, k.heads = 2, k.groups = 1, k.head_dim = 8, k.state_dim = 7, k.chunk = 16;
    k.with_init = true, k.with_D = true, k.with_dfinal = true;
    const Problem p = make_problem(k, 99);
    SCOPED_TRACE(testing::Message() << "T=" << seq);
    const Result ref = run<double>(p, Mode::Cpu);
    compare(run<double>(p, Mode::Bodies), ref, 1e-11);
    compare(run<float>(p, Mode::Bodies), ref, 5e-6);
  }
}

TEST(CudaSsdBodies, RealisticDecayLongChunksInFloat) {
  Case k;
  k.batch = 2, k.seq = 300, k.heads = 4, k.groups = 2, k.head_dim = 16, k.state_dim = 16, k.chunk = 128;
  k.with_D = true, k.with_init = true, k.with_dfinal = true, k.realistic = true;
  const Problem p = make_problem(k, 31);
  const Result ref = run<double>(p, Mode::Cpu);
  compare(run<double>(p, Mode::Bodies), ref, 1e-11);
  const double worst = compare(run<float>(p, Mode::Bodies), ref, 5e-6);
  RecordProperty("fp32_worst_rel_error", std::to_string(worst));
}

TEST(CudaSsdBodies, Mamba2SizesWithFullAndRaggedChunk) {
  // P = 64, N = 128, one group, chunk 256: one full chunk and a ragged one of 44 tokens.
  Case k;
  k.batch = 1, k.seq = 300, k.heads = 2, k.groups = 1, k.head_dim = 64, k.state_dim = 128, k.chunk = 256;
  k.with_D = true, k.with_dfinal = true, k.realistic = true;
  const Problem p = make_problem(k, 77);
  compare(run<float>(p, Mode::Bodies), run<double>(p, Mode::Cpu), 5e-6);
}

TEST(CudaSsdBodies, EmptySequencePassesStateThrough) {
  Case k;
  k.seq = 0, k.with_init = true, k.with_dfinal = true;
  const Problem p = make_problem(k, 5);
  const Result r = run<double>(p, Mode::Bodies);
  EXPECT_EQ(r.final_state, p.init);
  EXPECT_EQ(r.dinit, p.dfinal);
  EXPECT_EQ(r.dA, p.dA0);
}

TEST(CudaSsdBodies, StepMatchesCpu) {
  for (int64_t groups : {3, 1}) {
    const int64_t batch = 2, H = 3, P = 4, N = 5;
    Rng rng(7 + uint64_t(groups));
    std::vector<double> x = test::random_vector(rng, size_t(batch * H * P));
    std::vector<double> B = test::random_vector(rng, size_t(batch * groups * N), 0.4);
    std::vector<double> C = test::random_vector(rng, size_t(batch * groups * N), 0.4);
    std::vector<double> dt, A, D, state = test::random_vector(rng, size_t(batch * H * P * N));
    for (int64_t i = 0; i < batch * H; ++i) dt.push_back(rng.uniform(0.05, 0.3));
    for (int64_t h = 0; h < H; ++h) A.push_back(-rng.uniform(0.3, 2.0)), D.push_back(rng.uniform(0.5, 1.5));
    for (bool with_D : {false, true}) {
      std::vector<double> ref_state = state, ref_y(x.size());
      cpu::ssd_step<double>(batch, H, P, groups, N, x.data(), dt.data(), A.data(), B.data(), C.data(),
                            with_D ? D.data() : nullptr, ref_state.data(), ref_y.data());
      std::vector<float> xf = cast<float>(x), dtf = cast<float>(dt), Af = cast<float>(A), Bf = cast<float>(B);
      std::vector<float> Cf = cast<float>(C), Df = cast<float>(D), sf = cast<float>(state), yf(x.size());
      HostRun{}(Step<float>{batch, H, P, groups, N, xf.data(), dtf.data(), Af.data(), Bf.data(), Cf.data(),
                            with_D ? Df.data() : nullptr, sf.data(), yf.data()},
                "step");
      EXPECT_LT(rel_error(test::to_double(yf.data(), yf.size()), ref_y), 1e-6) << "G=" << groups;
      EXPECT_LT(rel_error(test::to_double(sf.data(), sf.size()), ref_state), 1e-6) << "G=" << groups;
    }
  }
}

TEST(CudaSsdBodies, DecayForwardAndBackward) {
  const std::vector<float> A_log = {0.0f, 1.5f, -2.0f}, dA = {0.5f, -1.0f, 2.0f};
  std::vector<float> A(3), dA_log = {1.0f, 2.0f, 3.0f};
  HostRun{}(DecayForward<float>{A_log.data(), A.data(), 3}, "decay");
  HostRun{}(DecayBackward<float>{dA.data(), A.data(), dA_log.data(), 3}, "decay_backward");
  for (size_t h = 0; h < 3; ++h) {
    EXPECT_FLOAT_EQ(A[h], -std::exp(A_log[h]));
    EXPECT_FLOAT_EQ(dA_log[h], float(h + 1) + dA[h] * A[h]);
  }
}

TEST(CudaSsdBodies, RejectsBadShapes) {
  SsdShape s;
  s.seq = 4, s.heads = 4, s.groups = 3, s.head_dim = 2, s.state_dim = 2, s.chunk = 2;
  s.x_stride = s.y_stride = 8, s.bc_stride = 6, s.dt_stride = 4;
  EXPECT_THROW(make_geo(s, "t"), Error);  // heads not a multiple of groups
  s.groups = 2;
  EXPECT_NO_THROW(make_geo(s, "t"));
  s.chunk = 0;
  EXPECT_THROW(make_geo(s, "t"), Error);
  s.chunk = 2, s.bc_stride = 3;
  EXPECT_THROW(make_geo(s, "t"), Error);
}

// ---------------------------------------------------------------------------------------------------------
// On the GPU (CUDA builds with a device): the launchers of ops/cuda/ssd.cu against the CPU kernel.

#if TRANSXSSM_BACKEND_CUDA
#define TXS_REQUIRE_GPU()                                 \
  do {                                                    \
    const std::string why = no_gpu_reason();              \
    if (!why.empty()) GTEST_SKIP() << why;                \
  } while (0)
#else
#define TXS_REQUIRE_GPU() GTEST_SKIP() << "this build has no CUDA backend"
#endif

TEST(CudaSsdDevice, ForwardAndBackwardMatchCpu) {
  TXS_REQUIRE_GPU();
  std::vector<Case> cases;
  for (int64_t groups : {4, 1})
    for (int64_t chunk : {1, 16, 64}) {
      Case k;
      k.batch = 2, k.seq = 37, k.heads = 4, k.groups = groups, k.head_dim = 5, k.state_dim = 6, k.chunk = chunk;
      k.with_D = chunk != 16, k.with_init = chunk != 64, k.with_dfinal = groups == 4;
      cases.push_back(k);
    }
  Case big;  // Mamba-2 sizes, one full chunk of 256 and a ragged one
  big.batch = 2, big.seq = 300, big.heads = 4, big.groups = 1, big.head_dim = 64, big.state_dim = 128;
  big.chunk = 256, big.with_D = true, big.with_init = true, big.with_dfinal = true, big.realistic = true;
  cases.push_back(big);
  Case small = cases.front();  // after the big one: scratch buffers are reused, not regrown
  small.seq = 5;
  cases.push_back(small);
  Case empty;
  empty.seq = 0, empty.with_init = true, empty.with_dfinal = true;
  cases.push_back(empty);
  int seed = 100;
  for (const Case& k : cases) {
    const Problem p = make_problem(k, uint64_t(seed++));
    SCOPED_TRACE(testing::Message() << "T=" << k.seq << " G=" << k.groups << " Q=" << k.chunk << " P=" << k.head_dim);
    compare(run<float>(p, Mode::Device), run<double>(p, Mode::Cpu), 5e-6);
  }
}

TEST(CudaSsdDevice, StepAndDecayMatchCpu) {
  TXS_REQUIRE_GPU();
#if TRANSXSSM_BACKEND_CUDA
  const int64_t batch = 3, H = 4, P = 8, G = 2, N = 16;
  Rng rng(11);
  auto rand_f = [&](size_t n, double scale) { return cast<float>(test::random_vector(rng, n, scale)); };
  const std::vector<float> x = rand_f(size_t(batch * H * P), 1.0), B = rand_f(size_t(batch * G * N), 0.25);
  const std::vector<float> C = rand_f(size_t(batch * G * N), 0.25), state0 = rand_f(size_t(batch * H * P * N), 1.0);
  std::vector<float> dt, A, D;
  for (int64_t i = 0; i < batch * H; ++i) dt.push_back(float(rng.uniform(0.05, 0.3)));
  for (int64_t h = 0; h < H; ++h) A.push_back(float(-rng.uniform(0.3, 2.0))), D.push_back(float(rng.uniform(0.5, 1.5)));
  std::vector<double> ref_state(state0.begin(), state0.end()), ref_y(x.size());
  const auto xd = test::to_double(x.data(), x.size()), dtd = test::to_double(dt.data(), dt.size());
  const auto Ad = test::to_double(A.data(), A.size()), Bd = test::to_double(B.data(), B.size());
  const auto Cd = test::to_double(C.data(), C.size()), Dd = test::to_double(D.data(), D.size());
  cpu::ssd_step<double>(batch, H, P, G, N, xd.data(), dtd.data(), Ad.data(), Bd.data(), Cd.data(), Dd.data(),
                        ref_state.data(), ref_y.data());
  std::vector<float> state = state0, y(x.size());
  {
    const DeviceArray x_d(x), dt_d(dt), A_d(A), B_d(B), C_d(C), D_d(D), state_d(state), y_d(y);
    cuda::ssd_step(batch, H, P, G, N, x_d.ptr, dt_d.ptr, A_d.ptr, B_d.ptr, C_d.ptr, D_d.ptr, state_d.ptr, y_d.ptr);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    state_d.to_host(state), y_d.to_host(y);
  }
  EXPECT_LT(rel_error(test::to_double(y.data(), y.size()), ref_y), 1e-6);
  EXPECT_LT(rel_error(test::to_double(state.data(), state.size()), ref_state), 1e-6);

  const std::vector<float> A_log = {0.0f, 1.5f, -2.0f}, dA = {0.5f, -1.0f, 2.0f};
  std::vector<float> A_out(3), dA_log = {1.0f, 2.0f, 3.0f};
  {
    const DeviceArray A_log_d(A_log), A_d(A_out), dA_d(dA), dA_log_d(dA_log);
    cuda::ssd_decay_forward(A_log_d.ptr, A_d.ptr, 3);
    cuda::ssd_decay_backward(dA_d.ptr, A_d.ptr, dA_log_d.ptr, 3);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    A_d.to_host(A_out), dA_log_d.to_host(dA_log);
  }
  for (size_t h = 0; h < 3; ++h) {
    EXPECT_FLOAT_EQ(A_out[h], -std::exp(A_log[h]));
    EXPECT_FLOAT_EQ(dA_log[h], float(h + 1) + dA[h] * A_out[h]);
  }
  cuda::release_scratch();
#endif
}

}  // namespace
}  // namespace txs::cuda::ssd
