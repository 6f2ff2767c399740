// Micro-benchmark of the chunked SSD scan (fp32): forward, backward, and both, at model shapes.
//   bench_ssd [--benchmark_filter=...]     (OMP_NUM_THREADS sets the threads)
// The FLOP rate counts the matrix products the kernel actually performs (causal blocks only), not the
// elementwise work (exps, scaling) — see flops() below.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/rng.h"
#include "ops/cpu/ssd_scan.h"

namespace {

using txs::cpu::SsdShape;

struct Inputs {
  SsdShape s;
  std::vector<float> x, dt, A, B, C, D, y, fin, dy, dx, ddt, dA, dB, dC, dD;
};

Inputs make(int64_t batch, int64_t seq, int64_t heads, int64_t groups, int64_t P, int64_t N, int64_t Q, bool with_D) {
  Inputs in;
  SsdShape& s = in.s;
  s.batch = batch, s.seq = seq, s.heads = heads, s.groups = groups, s.head_dim = P, s.state_dim = N, s.chunk = Q;
  s.x_stride = s.y_stride = heads * P, s.bc_stride = groups * N, s.dt_stride = heads;
  txs::Rng rng(1);
  const int64_t rows = batch * seq;
  auto fill = [&](std::vector<float>& v, size_t n, double scale) {
    v.resize(n);
    for (auto& e : v) e = float(scale * rng.normal());
  };
  fill(in.x, size_t(rows * heads * P), 1.0);
  fill(in.B, size_t(rows * groups * N), 1.0 / std::sqrt(double(N)));
  fill(in.C, size_t(rows * groups * N), 1.0 / std::sqrt(double(N)));
  fill(in.dy, size_t(rows * heads * P), 1.0);
  in.dt.resize(size_t(rows * heads));
  for (auto& e : in.dt) e = float(std::exp(rng.uniform(std::log(1e-3), std::log(1e-1))));
  for (int64_t h = 0; h < heads; ++h) in.A.push_back(float(-rng.uniform(1.0, 16.0)));
  if (with_D) in.D.assign(size_t(heads), 1.0f), in.dD.assign(size_t(heads), 0.0f);
  in.y.resize(in.x.size()), in.dx.resize(in.x.size()), in.ddt.resize(in.dt.size());
  in.dB.resize(in.B.size()), in.dC.resize(in.C.size()), in.dA.resize(size_t(heads));
  in.fin.resize(size_t(batch * heads * P * N));
  return in;
}

// Multiply-adds ×2 of the gemms the kernel issues (see ssd_scan.cpp; causal row blocks of 64).
struct Flops {
  double fwd = 0, bwd = 0;
};
Flops flops(const SsdShape& s) {
  const double P = double(s.head_dim), N = double(s.state_dim), H = double(s.heads), G = double(s.groups);
  Flops f;
  for (int64_t t0 = 0; t0 < s.seq; t0 += s.chunk) {
    const int64_t L = std::min(s.chunk, s.seq - t0);
    double causal = 0;  // Σ over 64-row blocks of rows × (columns up to the block's end)
    for (int64_t i0 = 0; i0 < L; i0 += 64) causal += double(std::min<int64_t>(64, L - i0)) * double(std::min(L, i0 + 64));
    const double l = double(L);
    // forward: chunk state 2LPN, gram 2·causal·N per group, inter 2LPN, intra 2·causal·P
    f.fwd += H * (4 * l * P * N + 2 * causal * P) + G * 2 * causal * N;
    // backward: chunk state + Z 4LPN, gram, three LPN products, dM and Mᵀ·dY, dC and dB from dgram
    f.bwd += H * (4 * l * P * N + 6 * l * P * N + 4 * causal * P) + G * 6 * causal * N;
  }
  f.fwd *= double(s.batch), f.bwd *= double(s.batch);
  return f;
}

void run(benchmark::State& state, Inputs& in, bool fwd, bool bwd) {
  const float* D = in.D.empty() ? nullptr : in.D.data();
  for (auto _ : state) {
    if (fwd)
      txs::cpu::ssd_forward<float>(in.s, in.x.data(), in.dt.data(), in.A.data(), in.B.data(), in.C.data(), D,
                                   nullptr, in.y.data(), in.fin.data());
    if (bwd)
      txs::cpu::ssd_backward<float>(in.s, in.x.data(), in.dt.data(), in.A.data(), in.B.data(), in.C.data(), D,
                                    nullptr, in.dy.data(), nullptr, in.dx.data(), in.ddt.data(), in.dA.data(),
                                    in.dB.data(), in.dC.data(), D ? in.dD.data() : nullptr, nullptr);
    benchmark::DoNotOptimize(in.y.data());
    benchmark::DoNotOptimize(in.dx.data());
  }
  const Flops f = flops(in.s);
  const double per_iter = (fwd ? f.fwd : 0) + (bwd ? f.bwd : 0);
  state.counters["FLOPS"] = benchmark::Counter(per_iter, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["tokens/s"] =
      benchmark::Counter(double(in.s.batch * in.s.seq), benchmark::Counter::kIsIterationInvariantRate);
}

// args: mode (0 fwd, 1 bwd, 2 fwd+bwd)
void BM_TransXSSM_T4096_H8_P64(benchmark::State& state) {
  static Inputs in = make(1, 4096, 8, 8, 64, 64, 256, false);
  run(state, in, state.range(0) != 1, state.range(0) != 0);
}
void BM_TransXSSM_320m_T2048_H8_P128(benchmark::State& state) {
  static Inputs in = make(1, 2048, 8, 8, 128, 128, 256, false);
  run(state, in, state.range(0) != 1, state.range(0) != 0);
}
void BM_Mamba2_d768_T2048_H24_G1(benchmark::State& state) {
  static Inputs in = make(1, 2048, 24, 1, 64, 128, 256, true);
  run(state, in, state.range(0) != 1, state.range(0) != 0);
}

BENCHMARK(BM_TransXSSM_T4096_H8_P64)->Arg(0)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_TransXSSM_320m_T2048_H8_P128)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Mamba2_d768_T2048_H24_G1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
