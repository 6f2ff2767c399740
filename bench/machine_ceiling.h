// What this machine can do at best, measured in the same run as a benchmark: the CPU under a bench run
// changes from day to day (Zen 5 one day, Zen 4 at half the fp32 peak another), so efficiency is reported
// against these measured ceilings, never against a fixed peak.
//   - GEMM ceiling: best sustained GFLOP/s of the backend's own GEMM over large model-like shapes, one row
//     per dtype: fp32 (oneDNN sgemm) and bf16 (oneDNN's bf16 matmul with both operands already in bf16 and
//     fp32 accumulation — the bf16 mode's linear layers also round their fp32 activations on the way in,
//     which counts against them), i.e. the best the matmul-bound parts of a step could reach.
//   - Read bandwidth: sustained streaming reads from DRAM, the bound for decoding (weights + state per step).
#pragma once
#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/buffer.h"
#include "ops/backend.h"
#include "ops/cpu/gemm.h"

namespace txs::bench {

// The one call into the backend's GEMM (y[rows,out] = x[rows,in]·Wᵀ, W is [out,in]); adapt here when the
// Backend signature changes (a bf16 variant goes beside it).
inline void backend_gemm_fp32(const float* x, const float* W, float* y, int64_t rows, int64_t in, int64_t out) {
  txs::cpu_backend().linear_forward(view(x, rows, in), view(W, out, in), view(y, rows, out));
}

// The bf16 GEMM without the activation rounding: x [rows,in] and W [out,in] in bf16, y fp32.
inline void backend_gemm_bf16(const bf16* x, const bf16* W, float* y, int64_t rows, int64_t in, int64_t out) {
  txs::cpu::gemm_bf16(false, true, rows, out, in, x, in, W, in, false, y, out);
}

struct GemmCeiling {
  std::string dtype;                  // "fp32" or "bf16"
  double gflops = 0;                  // best sustained over the shapes
  int64_t rows = 0, in = 0, out = 0;  // the shape that reached it
};

namespace detail {

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Runs body with `threads` OpenMP threads and puts the previous count back (the caller's run setting).
template <class F>
auto with_threads(int threads, F&& body) {
  const int prev = omp_get_max_threads();
  omp_set_num_threads(std::max(1, threads));
  auto r = body();
  omp_set_num_threads(prev);
  return r;
}

}  // namespace detail

// Best GFLOP/s of the backend's fp32 or bf16 GEMM over a few large shapes like the models' Linear passes,
// within about `seconds` in all (each shape gets an equal slice, best of at least 2 timed calls after a
// warm-up: the best call is the one least disturbed by other processes).
inline GemmCeiling measure_gemm_ceiling(int threads, const std::string& dtype = "fp32", double seconds = 1.5) {
  struct Shape { int64_t rows, in, out; };
  static constexpr Shape kShapes[] = {{2048, 2048, 2048}, {4096, 512, 1536}, {4096, 1536, 512}, {2048, 1024, 4096}};
  constexpr int kNum = int(std::size(kShapes));
  const bool bf = dtype == "bf16";
  return detail::with_threads(threads, [&] {
    GemmCeiling best{dtype};
    for (const Shape& s : kShapes) {
      Buffer<float> x(size_t(s.rows * s.in)), W(size_t(s.out * s.in)), y(size_t(s.rows * s.out));
      Buffer<bf16> x16(bf ? x.size() : 0), W16(bf ? W.size() : 0);
      // Small non-zero values: no denormals, no special-cased zeros.
      for (size_t i = 0; i < x.size(); ++i) x[i] = float(int(i % 17) - 8) * 0.01f;
      for (size_t i = 0; i < W.size(); ++i) W[i] = float(int(i % 13) - 6) * 0.01f;
      if (bf) to_bf16(x.data(), x16.data(), int64_t(x.size())), to_bf16(W.data(), W16.data(), int64_t(W.size()));
      auto call = [&] {
        if (bf)
          backend_gemm_bf16(x16.data(), W16.data(), y.data(), s.rows, s.in, s.out);
        else
          backend_gemm_fp32(x.data(), W.data(), y.data(), s.rows, s.in, s.out);
      };
      const double flop = 2.0 * double(s.rows) * double(s.in) * double(s.out);
      call();  // warm-up: primitive, pages
      const auto start = std::chrono::steady_clock::now();
      for (int rep = 0; rep < 2 || detail::seconds_since(start) < seconds / kNum; ++rep) {
        const auto t0 = std::chrono::steady_clock::now();
        call();
        const double g = flop / detail::seconds_since(t0) * 1e-9;
        if (g > best.gflops) best = {dtype, g, s.rows, s.in, s.out};
      }
    }
    return best;
  });
}

// Sustained read bandwidth (GB/s, 1e9 bytes) over `buf`, which should be much larger than the last-level
// cache and already touched: each thread streams its own contiguous slice into a vectorisable sum; best
// of `passes`.
inline double measure_read_bandwidth(int threads, const Buffer<float>& buf, int passes = 5) {
  const float* p = buf.data();
  const int64_t n = int64_t(buf.size());
  return detail::with_threads(threads, [&] {
    double best = 0;
    volatile float sink = 0;  // keeps the sums alive
    for (int pass = 0; pass < passes; ++pass) {
      float total = 0;
      const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel reduction(+ : total)
      {
        const int64_t T = omp_get_num_threads(), t = omp_get_thread_num();
        const int64_t lo = n * t / T / 64 * 64, hi = t + 1 == T ? n : n * (t + 1) / T / 64 * 64;
        // 64 independent lanes (4 AVX-512 / 8 AVX2 accumulators): no reassociation needed to vectorise,
        // and enough adds in flight that the loop is bound by memory, not by add latency.
        float acc[64] = {};
        for (int64_t i = lo; i + 64 <= hi; i += 64)
          for (int j = 0; j < 64; ++j) acc[j] += p[i + j];
        for (int64_t i = lo + (hi - lo) / 64 * 64; i < hi; ++i) acc[0] += p[i];
        for (float a : acc) total += a;
      }
      const double secs = detail::seconds_since(t0);
      sink = sink + total;
      best = std::max(best, double(n) * sizeof(float) / secs * 1e-9);
    }
    return best;
  });
}

// The same with its own buffer (512 MiB: far past any last-level cache), allocated and touched once.
inline Buffer<float> make_read_buffer(size_t bytes = size_t(512) << 20) {
  Buffer<float> buf(bytes / sizeof(float));
  float* p = buf.data();
  const int64_t n = int64_t(buf.size());
  // Touched in parallel with the same static split as the reads (first touch places the pages).
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) p[i] = 1.0f;
  return buf;
}
inline double measure_read_bandwidth(int threads) { return measure_read_bandwidth(threads, make_read_buffer()); }

struct MachineCeiling {
  int threads = 1;
  std::vector<GemmCeiling> gemm;  // one per dtype measured
  double read_gbs_1 = 0;          // one thread
  double read_gbs_n = 0;          // `threads` threads

  double gemm_gflops(const std::string& dtype = "fp32") const {
    for (const auto& g : gemm)
      if (g.dtype == dtype) return g.gflops;
    return 0;
  }
  std::string line() const {
    const std::string n = fmt::format("{} thread{}", threads, threads == 1 ? "" : "s");
    std::string s = "machine:";
    for (const auto& g : gemm) s += fmt::format(" {} GEMM ceiling {:.0f} GFLOP/s ({}),", g.dtype, g.gflops, n);
    return s + fmt::format(" read bandwidth {:.1f} GB/s (1 thread) / {:.1f} GB/s ({})", read_gbs_1, read_gbs_n, n);
  }
  void print() const { fmt::print("{}\n", line()); }
  nlohmann::json json() const {
    nlohmann::json g = nlohmann::json::array();
    for (const auto& c : gemm)
      g.push_back({{"dtype", c.dtype}, {"gflops", c.gflops}, {"rows", c.rows}, {"in", c.in}, {"out", c.out}});
    return {{"threads", threads}, {"gemm", g}, {"read_gbs_1_thread", read_gbs_1}, {"read_gbs_n_threads", read_gbs_n}};
  }
};

// The GEMM ceilings (fp32, bf16) and read bandwidth at `threads` threads (~3.5 s). Pass `buf` to reuse one read buffer across calls.
inline MachineCeiling measure_machine(int threads, const Buffer<float>* buf = nullptr) {
  MachineCeiling m;
  m.threads = std::max(1, threads);
  m.gemm.push_back(measure_gemm_ceiling(m.threads, "fp32"));
  m.gemm.push_back(measure_gemm_ceiling(m.threads, "bf16"));
  Buffer<float> own;
  if (!buf) own = make_read_buffer(), buf = &own;
  m.read_gbs_1 = measure_read_bandwidth(1, *buf);
  m.read_gbs_n = m.threads == 1 ? m.read_gbs_1 : measure_read_bandwidth(m.threads, *buf);
  return m;
}

}  // namespace txs::bench
