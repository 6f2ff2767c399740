// AdamW step and the two helpers of global-norm clipping. All three are memory-bound streams over the
// parameters; large tensors are split over threads.
#include "ops/cpu/adamw.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"

namespace txs::cpu {

namespace {
constexpr int64_t kParallelMin = 1 << 15;
// Fixed chunk of sum_squares: partial sums per chunk, added in chunk order, give the same bits for any
// thread count (an OpenMP reduction would not promise that, and resumed runs must repeat exactly).
constexpr int64_t kChunk = 1 << 14;
}  // namespace

void adamw_update(float* w, const float* g, float* m, float* v, int64_t n, const AdamWParams& p, bool decay) {
  if (n < 0) fail("adamw: negative size {}", n);
  if (p.step < 1) fail("adamw: step must be >= 1 (1-based), got {}", p.step);
  // m̂ = m / (1 − β1^t), v̂ = v / (1 − β2^t); w −= lr·(m̂/(sqrt(v̂) + eps) + wd·w), with the decay term
  // using w before this step's update. This equals torch.optim.AdamW, which first scales w by
  // (1 − lr·wd) and then subtracts lr·m̂/(sqrt(v̂) + eps).
  const double bc1 = 1.0 - std::pow(double(p.beta1), double(p.step));
  const double bc2 = 1.0 - std::pow(double(p.beta2), double(p.step));
  const float b1 = p.beta1, b2 = p.beta2, eps = p.eps, lr = p.lr;
  const float inv_bc1 = float(1.0 / bc1), inv_sqrt_bc2 = float(1.0 / std::sqrt(bc2));
  const float wd = decay ? p.weight_decay : 0.0f;
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i];
    const float mi = b1 * m[i] + (1.0f - b1) * gi;
    const float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    const float mhat = mi * inv_bc1, vhat_sqrt = std::sqrt(vi) * inv_sqrt_bc2;
    w[i] -= lr * (mhat / (vhat_sqrt + eps) + wd * w[i]);
  }
}

double sum_squares(const float* g, int64_t n) {
  if (n < 0) fail("sum_squares: negative size {}", n);
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> part(size_t(chunks), 0.0);
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t i1 = std::min(n, (c + 1) * kChunk);
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t i = c * kChunk; i < i1; ++i) s += double(g[i]) * double(g[i]);
    part[size_t(c)] = s;
  }
  double total = 0;
  for (double s : part) total += s;
  return total;
}

void scale_inplace(float* g, int64_t n, float scale) {
  if (n < 0) fail("scale_inplace: negative size {}", n);
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) g[i] *= scale;
}

bool all_finite(const float* x, int64_t n) {
  if (n < 0) fail("all_finite: negative size {}", n);
  int64_t bad = 0;
  // x − x is 0 for finite x and NaN for ±inf and NaN: one branch-free, vectorisable pass.
#pragma omp parallel for simd schedule(static) reduction(+ : bad) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) bad += (x[i] - x[i]) != 0.0f || x[i] != x[i];
  return bad == 0;
}

}  // namespace txs::cpu
