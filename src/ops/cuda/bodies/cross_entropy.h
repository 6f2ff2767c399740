// The per-row arithmetic of the CUDA LM head + cross-entropy (dense_kernels.cu), as portable bodies: one
// thread block per logits row; each thread takes the columns j = first, first + step, … (step = block size)
// through three phases separated by block reductions — max → Σ exp(z − max) → write the gradient — and one
// final reduction over the rows gives the loss. tests/test_cuda_dense_bodies.cpp runs the same bodies on the
// host with simulated threads and compares with the CPU backend (ops/cpu/cross_entropy.cpp), whose formulas
// these are: log p_t = z_t − lse, lse = m + log Σ exp(z_j − m) (sum in double), and for counted rows
// dz_j = grad_scale·exp(z_j − float(lse)) − [j = t]·grad_scale, dz = 0 for rows without a target.
#pragma once
#include <cstdint>

#include "ops/cuda/portable.h"

namespace txs::cuda {

// What the final reduction hands back to the host (one copy per call).
struct CeTotals {
  double loss_sum = 0;          // Σ −log p(target) over counted rows
  long long counted = 0;        // rows with 0 ≤ target < vocab
  long long first_bad_row = -1;  // first row whose target is outside [−1, vocab), −1 if none
};

// Rows per block so that block × vocab fp32 logits fit budget_bytes (at least 1 row, at most `rows`); a
// multiple of 64 when that many fit, so the block's offsets into h stay aligned for the GEMMs.
inline int64_t lm_head_block_rows(int64_t rows, int64_t vocab, int64_t budget_bytes) {
  int64_t b = budget_bytes / (vocab * int64_t(sizeof(float)));
  if (b >= 64) b -= b % 64;
  if (b < 1) b = 1;
  return rows < b ? (rows > 0 ? rows : 1) : b;
}

// A target the row counts (has a loss and a gradient).
TXS_HD bool ce_counted(int32_t target, int64_t vocab) { return target >= 0 && int64_t(target) < vocab; }
// A target the op rejects (the CPU fails on it before computing anything).
TXS_HD bool ce_invalid(int32_t target, int64_t vocab) { return target < -1 || int64_t(target) >= vocab; }

// Phase 1: this thread's largest logit (−inf when it has no column).
TXS_HD float ce_partial_max(const float* z, int64_t vocab, int64_t first, int64_t step) {
  float m = -INFINITY;
  for (int64_t j = first; j < vocab; j += step) m = z[j] > m ? z[j] : m;
  return m;
}

// Phase 2: this thread's Σ exp(z_j − m), m the row's max (so every term is ≤ 1: no overflow for any logits).
TXS_HD double ce_partial_sum_exp(const float* z, int64_t vocab, float m, int64_t first, int64_t step) {
  double s = 0;
  for (int64_t j = first; j < vocab; j += step) s += double(expf(z[j] - m));
  return s;
}

// After both reductions: log Σ_j exp(z_j) and the target's log-probability.
TXS_HD double ce_log_sum_exp(float m, double sum_exp) { return double(m) + log(sum_exp); }
TXS_HD double ce_target_logprob(float z_target, double lse) { return double(z_target) - lse; }

// Phase 3 (backward), a counted row: dz_j for this thread's columns, written over the logits (fp32 mode,
// dz16 null) or rounded to bf16 into dz16 (bf16 mode: the one rounding both gradient products read). The
// target's own logit must have been read before any thread of the row writes (the kernel reads it first).
TXS_HD void ce_write_grad(float* z, uint16_t* dz16, int64_t vocab, int32_t target, double lse, float grad_scale,
                          int64_t first, int64_t step) {
  const float l = float(lse);
  for (int64_t j = first; j < vocab; j += step) {
    float g = grad_scale * expf(z[j] - l);
    if (j == int64_t(target)) g -= grad_scale;
    if (dz16)
      dz16[j] = f32_to_bf16(g);
    else
      z[j] = g;
  }
}

// Phase 3 (backward), a row without a target: zero gradient.
TXS_HD void ce_zero_grad(float* z, uint16_t* dz16, int64_t vocab, int64_t first, int64_t step) {
  for (int64_t j = first; j < vocab; j += step) {
    if (dz16)
      dz16[j] = 0;
    else
      z[j] = 0.0f;
  }
}

// The final reduction, this thread's share of the rows r = first, first + step, …: −Σ log p over counted
// rows, how many, and the first invalid target (row_logprob holds 0 for the rows that do not count).
TXS_HD CeTotals ce_partial_totals(const double* row_logprob, const int32_t* targets, int64_t rows, int64_t vocab,
                                  int64_t first, int64_t step) {
  CeTotals t;
  for (int64_t r = first; r < rows; r += step) {
    if (ce_counted(targets[r], vocab)) {
      t.loss_sum -= row_logprob[r];
      ++t.counted;
    } else if (t.first_bad_row < 0 && ce_invalid(targets[r], vocab)) {
      t.first_bad_row = r;
    }
  }
  return t;
}
// Two shares combined (the first invalid row is the smaller index).
TXS_HD CeTotals ce_combine_totals(CeTotals a, const CeTotals& b) {
  a.loss_sum += b.loss_sum;
  a.counted += b.counted;
  if (b.first_bad_row >= 0 && (a.first_bad_row < 0 || b.first_bad_row < a.first_bad_row))
    a.first_bad_row = b.first_bad_row;
  return a;
}

}  // namespace txs::cuda
