// Single-query attention over a KV cache (one decoding step of one sequence): scores q·k_j/√P, softmax
// over every cached key, then Σ_j p_j v_j. The flash kernel's tiling pays off only for many queries;
// here one pass per head over the cache is the memory-bound minimum. Threads split the heads.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/error.h"
#include "ops/cpu/attention.h"
#include "ops/cpu/vec_exp.h"

namespace txs::cpu {

template <class T>
void attention_decode(int64_t H, int64_t Hkv, int64_t P, const T* q, const T* k, const T* v, int64_t kv_len,
                      int64_t kv_stride, T* out) {
  if (H <= 0 || Hkv <= 0 || P <= 0 || H % Hkv != 0 || kv_len < 1 || kv_stride < Hkv * P)
    fail("attention_decode: bad shape H={} Hkv={} P={} kv_len={} kv_stride={}", H, Hkv, P, kv_len, kv_stride);
  const int64_t group = H / Hkv;
  const T scale = T(1) / std::sqrt(T(P));
#pragma omp parallel for schedule(static) if (kv_len * H * P >= (1 << 18))
  for (int64_t h = 0; h < H; ++h) {
    static thread_local std::vector<T> scores;
    scores.resize(size_t(kv_len));
    const T* qh = q + h * P;
    const int64_t off = (h / group) * P;
    T mx = -std::numeric_limits<T>::infinity();
    for (int64_t j = 0; j < kv_len; ++j) {
      const T* kj = k + j * kv_stride + off;
      T dot = 0;
#pragma omp simd reduction(+ : dot)
      for (int64_t p = 0; p < P; ++p) dot += qh[p] * kj[p];
      scores[size_t(j)] = dot * scale;
      mx = std::max(mx, scores[size_t(j)]);
    }
    // The softmax numerators in one vectorised pass (exp_fast: below fp32 rounding, see vec_exp.h).
    T* sc = scores.data();
    double sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < kv_len; ++j) {
      const T e = exp_fast(sc[j] - mx);
      sc[j] = e;
      sum += double(e);
    }
    T* o = out + h * P;
    std::fill(o, o + P, T(0));
    for (int64_t j = 0; j < kv_len; ++j) {
      const T* vj = v + j * kv_stride + off;
      const T w = scores[size_t(j)];
#pragma omp simd
      for (int64_t p = 0; p < P; ++p) o[p] += w * vj[p];
    }
    const T inv = T(1.0 / sum);
    for (int64_t p = 0; p < P; ++p) o[p] *= inv;
  }
}

template void attention_decode<float>(int64_t, int64_t, int64_t, const float*, const float*, const float*, int64_t,
                                      int64_t, float*);
template void attention_decode<double>(int64_t, int64_t, int64_t, const double*, const double*, const double*,
                                       int64_t, int64_t, double*);

}  // namespace txs::cpu
