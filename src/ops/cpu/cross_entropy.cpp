// LM head + softmax cross-entropy, block by block of rows (see the header). Per block the two big
// products go through gemm (multithreaded inside); the per-row log-softmax is parallel over the rows.
#include "ops/cpu/cross_entropy.h"

#include <algorithm>
#include <type_traits>
#include <cmath>
#include <vector>

#include "core/buffer.h"
#include "core/error.h"
#include "ops/cpu/gemm.h"
#include "ops/cpu/vec_exp.h"

namespace txs::cpu {

namespace {
// The head's products. fp32/fp64 weights: gemm<T>. bf16 weights (the bf16 mode): gemm_bf16, so all three
// products — logits, dh and dW — take bf16 inputs with fp32 accumulation; the log-softmax and the loss
// stay fp32/fp64 (exponentials of logits differences and a vocab-long sum lose too much in bf16).
template <class T, class WT, class TB>
void head_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const TB* B,
               int64_t ldb, bool accumulate, T* C, int64_t ldc) {
  if constexpr (std::is_same_v<WT, bf16>) {
    gemm_bf16(trans_a, trans_b, M, N, K, A, lda, B, ldb, accumulate, C, ldc);
  } else if constexpr (std::is_same_v<T, float> && std::is_same_v<TB, float>) {
    if (!trans_a && trans_b && M > 0 && M <= kGemvMaxRows)  // decoding's logits: stream the head once
      gemv(M, N, K, A, lda, B, ldb, accumulate, C, ldc);
    else
      gemm<T>(trans_a, trans_b, M, N, K, T(1), A, lda, B, ldb, accumulate ? T(1) : T(0), C, ldc);
  } else
    gemm<T>(trans_a, trans_b, M, N, K, T(1), A, lda, B, ldb, accumulate ? T(1) : T(0), C, ldc);
}
}  // namespace

template <class T, class WT>
CrossEntropyResult lm_head_cross_entropy(const T* h, const WT* W, const int32_t* targets, int64_t rows, int64_t dim,
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
  // bf16 mode: the gradient of the logits rounded to bf16 once, while it is in cache, for both products.
  constexpr bool kBf16 = std::is_same_v<WT, bf16>;
  static thread_local Buffer<bf16> dz16_buf;
  if (kBf16 && dh) dz16_buf.resize(size_t(nb_max * vocab));
  bf16* const dz16 = dz16_buf.data();  // this thread's buffer, written by the OpenMP workers below
  std::vector<double> row_logprob(size_t(rows), 0.0);

  for (int64_t r0 = 0; r0 < rows; r0 += block_rows) {
    const int64_t nb = std::min(block_rows, rows - r0);
    const T* hb = h + r0 * dim;
    T* logits = logits_buf.data();
    head_gemm<T, WT>(false, true, nb, vocab, dim, hb, dim, W, dim, false, logits, vocab);  // [nb,vocab] = h·Wᵀ

#pragma omp parallel for schedule(static) if (nb * vocab > 65536)
    for (int64_t i = 0; i < nb; ++i) {
      T* z = logits + i * vocab;
      const int32_t tgt = targets[r0 + i];
      if (tgt < 0) {
        // No target: no loss and no gradient from this row.
        if (dh) std::fill_n(z, vocab, T(0));
        if (kBf16 && dh) std::fill_n(dz16 + i * vocab, vocab, bf16{});
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
        if constexpr (kBf16) to_bf16(z, dz16 + i * vocab, vocab);
      }
    }

    if constexpr (kBf16) {
      if (dh) {
        const bf16* dz = dz16;
        gemm_bf16(false, false, nb, dim, vocab, dz, vocab, W, dim, false, dh + r0 * dim, dim);  // dz·W
        gemm_bf16(true, false, vocab, dim, nb, dz, vocab, hb, dim, true, dW, dim);              // dzᵀ·h
      }
    } else if (dh) {
      head_gemm<T, WT>(false, false, nb, dim, vocab, logits, vocab, W, dim, false, dh + r0 * dim, dim);  // dz·W
      head_gemm<T, WT>(true, false, vocab, dim, nb, logits, vocab, hb, dim, true, dW, dim);              // dzᵀ·h
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

template <class T, class WT>
void lm_head_logits(const T* h, const WT* W, T* logits, int64_t rows, int64_t dim, int64_t vocab) {
  if (rows < 0 || dim <= 0 || vocab <= 0) fail("lm_head_logits: bad shape rows={} dim={} vocab={}", rows, dim, vocab);
  head_gemm<T, WT>(false, true, rows, vocab, dim, h, dim, W, dim, false, logits, vocab);
}

template CrossEntropyResult lm_head_cross_entropy<float, float>(const float*, const float*, const int32_t*, int64_t,
                                                                int64_t, int64_t, float*, float*, float*, float,
                                                                int64_t);
template CrossEntropyResult lm_head_cross_entropy<float, bf16>(const float*, const bf16*, const int32_t*, int64_t,
                                                               int64_t, int64_t, float*, float*, float*, float,
                                                               int64_t);
template CrossEntropyResult lm_head_cross_entropy<double, double>(const double*, const double*, const int32_t*,
                                                                  int64_t, int64_t, int64_t, double*, double*,
                                                                  double*, double, int64_t);
template void lm_head_logits<float, float>(const float*, const float*, float*, int64_t, int64_t, int64_t);
template void lm_head_logits<float, bf16>(const float*, const bf16*, float*, int64_t, int64_t, int64_t);
template void lm_head_logits<double, double>(const double*, const double*, double*, int64_t, int64_t, int64_t);

}  // namespace txs::cpu
