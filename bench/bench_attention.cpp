// Micro-benchmark of the causal flash attention kernel in fp32: batch 1, H heads of P = 64, sequence T.
// FLOPs counted as the useful causal work: forward 4·T²·P·H/2 (two products over half the score matrix),
// backward 2.5× that (five products). Run with OMP_NUM_THREADS set to the cores you can have, e.g.
//   OMP_NUM_THREADS=2 build/bench/bench_attention --benchmark_min_time=2
#include <benchmark/benchmark.h>

#include <vector>

#include "core/rng.h"
#include "ops/cpu/attention.h"

namespace {

struct Setup {
  txs::cpu::AttentionShape s;
  std::vector<float> q, k, v, out, lse, dout, dq, dk, dv;
  Setup(int64_t T, int64_t H, int64_t Hkv, int64_t P) {
    s.batch = 1, s.q_len = T, s.kv_len = T, s.heads = H, s.kv_heads = Hkv, s.head_dim = P;
    s.q_stride = H * P, s.kv_stride = Hkv * P, s.out_stride = H * P;
    txs::Rng rng(1);
    auto fill = [&](std::vector<float>& x, int64_t n) {
      x.resize(n);
      for (auto& e : x) e = float(rng.normal());
    };
    fill(q, T * H * P), fill(k, T * Hkv * P), fill(v, T * Hkv * P), fill(dout, T * H * P);
    out.resize(T * H * P), lse.resize(H * T), dq.resize(T * H * P), dk.resize(T * Hkv * P), dv.resize(T * Hkv * P);
  }
  double forward_flops() const { return 4.0 * double(s.q_len) * double(s.kv_len) * s.head_dim * s.heads / 2; }
};

void BM_AttentionForward(benchmark::State& state) {
  Setup x(state.range(0), state.range(1), state.range(2), 64);
  for (auto _ : state) {
    txs::cpu::attention_forward<float>(x.s, x.q.data(), x.k.data(), x.v.data(), x.out.data(), x.lse.data());
    benchmark::DoNotOptimize(x.out.data());
  }
  state.counters["FLOP/s"] = benchmark::Counter(x.forward_flops(), benchmark::Counter::kIsIterationInvariantRate);
}

void BM_AttentionBackward(benchmark::State& state) {
  Setup x(state.range(0), state.range(1), state.range(2), 64);
  txs::cpu::attention_forward<float>(x.s, x.q.data(), x.k.data(), x.v.data(), x.out.data(), x.lse.data());
  for (auto _ : state) {
    txs::cpu::attention_backward<float>(x.s, x.q.data(), x.k.data(), x.v.data(), x.out.data(), x.lse.data(),
                                        x.dout.data(), x.dq.data(), x.dk.data(), x.dv.data());
    benchmark::DoNotOptimize(x.dq.data());
  }
  state.counters["FLOP/s"] =
      benchmark::Counter(2.5 * x.forward_flops(), benchmark::Counter::kIsIterationInvariantRate);
}

// {T, H, Hkv}; wall-clock time, since the work runs on every OpenMP thread.
BENCHMARK(BM_AttentionForward)->Args({1024, 8, 8})->Args({4096, 8, 8})->Args({4096, 8, 2})
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_AttentionBackward)->Args({1024, 8, 8})->Args({4096, 8, 8})->Args({4096, 8, 2})
    ->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
