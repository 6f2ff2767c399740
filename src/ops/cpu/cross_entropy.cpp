// LM head + softmax cross-entropy, block by block of rows (see the header). Per block the two big
// products go through gemm (multithreaded inside); the per-row log-softmax is parallel over the rows.
#include "ops/cpu/cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/buffer.h"
#include "core/error.h"
#include "ops/cpu/gemm.h"
#include "ops/cpu/vec_exp.h"

namespace txs::cpu {

template <class T>
CrossEntropyResult lm_head_cross_entropy(const T* h, const T* W, const int32_t* targets, int64_t rows, int64_t dim,
                                         int64_t vocab, T* target_logprob, T* dh, T* dW, T grad_scale,
                                         int64_t block_rows) {
  if (rows < 0 || dim <= 0 || vocab <= 0) fail("cross_entropy: bad shape rows={} dim={} vocab={}", rows, dim, vocab);
  if (block_rows <= 0) fail("cross_entropy: block_rows must be positive, got {}", block_rows);
  if (dh && !dW) fail("cross_entropy: the backward pass needs dW");
  for (int64_t r = 0; r < rows; ++r)
    if (targets[r] < -1 || targets[r] >= vocab)
      fail("cross_entropy: target {} at row {} outside [-1, {})", targets[r], r, vocab);

  const int64_t nb_max = std::min(block_rows, std::max<int64_t>(rows, 1));
  // Block logits (then dlogits, in place) and per-row log-probabilities. Kept per calling thread and
  // grown, never freed: at 256 × 50304 floats this is 51 MB that would otherwise be re-faulted each step.
  static thread_local Buffer<T> logits_buf;
  logits_buf.resize(size_t(nb_max * vocab));
  std::vector<double> row_logprob(size_t(rows), 0.0);

  for (int64_t r0 = 0; r0 < rows; r0 += block_rows) {
    const int64_t nb = std::min(block_rows, rows - r0);
    const T* hb = h + r0 * dim;
    T* logits = logits_buf.data();
    gemm<T>(false, true, nb, vocab, dim, T(1), hb, dim, W, dim, T(0), logits, vocab);  // [nb,vocab] = h·Wᵀ

#pragma omp parallel for schedule(static) if (nb * vocab > 65536)
    for (int64_t i = 0; i < nb; ++i) {
      T* z = logits + i * vocab;
      const int32_t tgt = targets[r0 + i];
      if (tgt < 0) {
        // No target: no loss and no gradient from this row.
        if (dh) std::fill_n(z, vocab, T(0));
        continue;
      }
      // log p_j = z_j − m − log Σ_k exp(z_k − m), m = max z (so every exp is ≤ 1); the sum in double.
      T m = z[0];
#pragma omp simd reduction(max : m)
      for (int64_t j = 1; j < vocab; ++j) m = z[j] > m ? z[j] : m;
      double sum = 0;
#pragma omp simd reduction(+ : sum)
      for (int64_t j = 0; j < vocab; ++j) sum += double(exp_fast(z[j] - m));
      const double lse = double(m) + std::log(sum);
      row_logprob[size_t(r0 + i)] = double(z[tgt]) - lse;
      if (dh) {
        // dL/dz_j = scale·(p_j − [j = target]), written over the logits.
        const T l = T(lse);
#pragma omp simd
        for (int64_t j = 0; j < vocab; ++j) z[j] = grad_scale * exp_fast(z[j] - l);
        z[tgt] -= grad_scale;
      }
    }

    if (dh) {
      gemm<T>(false, false, nb, dim, vocab, T(1), logits, vocab, W, dim, T(0), dh + r0 * dim, dim);  // dz·W
      gemm<T>(true, false, vocab, dim, nb, T(1), logits, vocab, hb, dim, T(1), dW, dim);             // dzᵀ·h
    }
  }

  // Serial sum in row order: the loss does not depend on the thread count or the block size.
  CrossEntropyResult res;
  for (int64_t r = 0; r < rows; ++r) {
    if (targets[r] >= 0) {
      res.loss_sum -= row_logprob[size_t(r)];
      ++res.counted;
    }
    if (target_logprob) target_logprob[r] = T(row_logprob[size_t(r)]);
  }
  return res;
}

template <class T>
void lm_head_logits(const T* h, const T* W, T* logits, int64_t rows, int64_t dim, int64_t vocab) {
  if (rows < 0 || dim <= 0 || vocab <= 0) fail("lm_head_logits: bad shape rows={} dim={} vocab={}", rows, dim, vocab);
  gemm<T>(false, true, rows, vocab, dim, T(1), h, dim, W, dim, T(0), logits, vocab);
}

template CrossEntropyResult lm_head_cross_entropy<float>(const float*, const float*, const int32_t*, int64_t, int64_t,
                                                         int64_t, float*, float*, float*, float, int64_t);
template CrossEntropyResult lm_head_cross_entropy<double>(const double*, const double*, const int32_t*, int64_t,
                                                          int64_t, int64_t, double*, double*, double*, double, int64_t);
template void lm_head_logits<float>(const float*, const float*, float*, int64_t, int64_t, int64_t);
template void lm_head_logits<double>(const double*, const double*, double*, int64_t, int64_t, int64_t);

}  // namespace txs::cpu
