// fp32 GEMM throughput for the model's Linear shapes: oneDNN's dnnl_sgemm (what txs::cpu::gemm uses),
// OpenBLAS cblas_sgemm, and the oneDNN matmul primitive (created once per shape, only execution timed).
//
//   bench_gemm [seconds_per_case=0.5]
//
// Prints best and median GFLOP/s and the best as % of the fp32 GEMM ceiling measured first (the backend's
// best over large square-ish shapes, bench/machine_ceiling.h): the CPU under this machine kind changes
// between runs, so no fixed peak holds; a shape above 100% beats the backend's own best. OpenBLAS reads
// OPENBLAS_CORETYPE when it loads; run once with it and once without (`env -u OPENBLAS_CORETYPE
// bench_gemm`) to compare its kernels. Plain timing, no framework, so that
// the program builds whether or not Google Benchmark is installed.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <oneapi/dnnl/dnnl.hpp>
#include <string>
#include <vector>

#include "core/buffer.h"
#include "core/rng.h"
#include "machine_ceiling.h"
#include "ops/cpu/gemm.h"

namespace {

struct Shape {
  const char* what;  // which Linear pass it is
  bool ta, tb;
  int64_t M, N, K;
};

// d = 512, I = 1536, 4096 rows (batch × seq): forward y = x·Wᵀ (N,T), input gradient dx = dy·W (N,N),
// weight gradient dW = dyᵀ·x (T,N); plus one LM-head block of 256 rows over the padded vocabulary.
const Shape kShapes[] = {
    {"fwd  d->d", false, true, 4096, 512, 512},   {"fwd  d->I", false, true, 4096, 1536, 512},
    {"fwd  I->d", false, true, 4096, 512, 1536},  {"dx   d->d", false, false, 4096, 512, 512},
    {"dx   d->I", false, false, 4096, 512, 1536}, {"dx   I->d", false, false, 4096, 1536, 512},
    {"dW   d->d", true, false, 512, 512, 4096},   {"dW   d->I", true, false, 1536, 512, 4096},
    {"dW   I->d", true, false, 512, 1536, 4096},  {"head fwd", false, true, 256, 50304, 512},
    {"head dW", true, false, 50304, 512, 256},
};

// Runs f until `seconds` have passed (at least 3 times, after one warm-up call); returns seconds per call.
std::vector<double> time_calls(const std::function<void()>& f, double seconds) {
  using clock = std::chrono::steady_clock;
  f();
  std::vector<double> t;
  const auto start = clock::now();
  while (t.size() < 3 || std::chrono::duration<double>(clock::now() - start).count() < seconds) {
    const auto t0 = clock::now();
    f();
    t.push_back(std::chrono::duration<double>(clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t;
}

// oneDNN matmul with the transposes expressed as strides of plain row-major buffers.
struct Matmul {
  dnnl::engine eng{dnnl::engine::kind::cpu, 0};
  dnnl::stream strm{eng};
  dnnl::matmul prim;
  dnnl::memory a, b, c;
  Matmul(const Shape& s, float* A, float* B, float* C) {
    using dt = dnnl::memory::data_type;
    const dnnl::memory::desc a_md({s.M, s.K}, dt::f32, s.ta ? dnnl::memory::dims{1, s.M} : dnnl::memory::dims{s.K, 1});
    const dnnl::memory::desc b_md({s.K, s.N}, dt::f32, s.tb ? dnnl::memory::dims{1, s.K} : dnnl::memory::dims{s.N, 1});
    const dnnl::memory::desc c_md({s.M, s.N}, dt::f32, dnnl::memory::dims{s.N, 1});
    prim = dnnl::matmul(dnnl::matmul::primitive_desc(dnnl::matmul::desc(a_md, b_md, c_md), eng));
    a = dnnl::memory(a_md, eng, A);
    b = dnnl::memory(b_md, eng, B);
    c = dnnl::memory(c_md, eng, C);
  }
  void run() {
    prim.execute(strm, {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}});
    strm.wait();
  }
};

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 0.5;
  if (argc > 2) std::fprintf(stderr, "note: the peak argument is gone; the fp32 GEMM ceiling is measured\n");
  const double peak = txs::bench::measure_gemm_ceiling(omp_get_max_threads()).gflops;
  const char* coretype = std::getenv("OPENBLAS_CORETYPE");
  std::printf("threads: OpenMP %d, OpenBLAS %d (%s); OPENBLAS_CORETYPE=%s; measured fp32 GEMM ceiling %.0f GFLOP/s\n",
              omp_get_max_threads(), openblas_get_num_threads(), openblas_get_corename(),
              coretype ? coretype : "(unset)", peak);
  std::printf("%-10s %2s %6s %6s %6s | %-18s %-18s %-18s | GFLOP/s best (median), %% of ceiling\n", "pass", "op", "M",
              "N", "K", "dnnl_sgemm", "cblas_sgemm", "dnnl matmul");
  txs::Rng rng(1);
  double total[3] = {0, 0, 0};
  for (const Shape& s : kShapes) {
    txs::Buffer<float> A(size_t(s.M * s.K)), B(size_t(s.K * s.N)), C(size_t(s.M * s.N));
    for (auto& x : A) x = float(rng.normal());
    for (auto& x : B) x = float(rng.normal());
    C.zero();
    const int64_t lda = s.ta ? s.M : s.K, ldb = s.tb ? s.K : s.N, ldc = s.N;
    const double flop = 2.0 * double(s.M) * double(s.N) * double(s.K);
    Matmul mm(s, A.data(), B.data(), C.data());
    const std::function<void()> impls[3] = {
        [&] {
          txs::cpu::gemm<float>(s.ta, s.tb, s.M, s.N, s.K, 1.f, A.data(), lda, B.data(), ldb, 0.f, C.data(), ldc);
        },
        [&] {
          cblas_sgemm(CblasRowMajor, s.ta ? CblasTrans : CblasNoTrans, s.tb ? CblasTrans : CblasNoTrans, int(s.M),
                      int(s.N), int(s.K), 1.f, A.data(), int(lda), B.data(), int(ldb), 0.f, C.data(), int(ldc));
        },
        [&] { mm.run(); },
    };
    std::printf("%-10s %c%c %6ld %6ld %6ld |", s.what, s.ta ? 'T' : 'N', s.tb ? 'T' : 'N', long(s.M), long(s.N),
                long(s.K));
    for (int i = 0; i < 3; ++i) {
      const auto t = time_calls(impls[i], seconds);
      const double best = flop / t.front() * 1e-9, median = flop / t[t.size() / 2] * 1e-9;
      total[i] += t.front();  // best seconds, summed over the shapes for the overall figure
      std::printf(" %5.0f (%5.0f) %3.0f%%", best, median, 100 * best / peak);
    }
    std::printf("\n");
  }
  double flops = 0;
  for (const Shape& s : kShapes) flops += 2.0 * double(s.M) * double(s.N) * double(s.K);
  std::printf(
      "all shapes (total flop / total best time): dnnl_sgemm %.0f, cblas_sgemm %.0f, dnnl matmul %.0f GFLOP/s\n",
      flops / total[0] * 1e-9, flops / total[1] * 1e-9, flops / total[2] * 1e-9);
  return 0;
}
