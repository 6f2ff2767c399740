// Kernels of the dense ops (see dense_kernels.h): the arithmetic is in bodies/cross_entropy.h (tested on
// the host); these add the thread layout and the block reductions in shared memory.
#include "ops/cuda/dense_kernels.h"

#include <algorithm>

#include "ops/cuda/cuda_check.h"

namespace txs::cuda {
namespace {

constexpr int kThreads = 256;  // every kernel here: a power of two (the tree reductions halve it)

__global__ void round_to_bf16_kernel(const float* __restrict__ src, int64_t rows, int64_t cols, int64_t ld,
                                     uint16_t* __restrict__ dst) {
  const int64_t n = rows * cols;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / cols, c = i - r * cols;
    dst[i] = f32_to_bf16(src[r * ld + c]);
  }
}

// In-place tree reductions over the block's kThreads values; every thread gets the result. Called by all
// threads of the block (no divergence around the __syncthreads).
__device__ float block_max(float v, float* s) {
  const int t = threadIdx.x;
  s[t] = v;
  __syncthreads();
  for (int off = kThreads / 2; off > 0; off >>= 1) {
    if (t < off) s[t] = s[t + off] > s[t] ? s[t + off] : s[t];
    __syncthreads();
  }
  const float r = s[0];
  __syncthreads();  // s may be reused right after
  return r;
}

__device__ double block_sum(double v, double* s) {
  const int t = threadIdx.x;
  s[t] = v;
  __syncthreads();
  for (int off = kThreads / 2; off > 0; off >>= 1) {
    if (t < off) s[t] += s[t + off];
    __syncthreads();
  }
  const double r = s[0];
  __syncthreads();
  return r;
}

// One block per row of the logits block (gridDim.x = nb).
__global__ void __launch_bounds__(kThreads) ce_rows_kernel(float* logits, int64_t vocab, const int32_t* targets,
                                                           bool backward, float grad_scale, uint16_t* dz16,
                                                           double* row_logprob, float* target_logprob) {
  __shared__ float s_max[kThreads];
  __shared__ double s_sum[kThreads];
  const int64_t row = blockIdx.x;
  const int64_t first = threadIdx.x, step = kThreads;
  float* z = logits + row * vocab;
  uint16_t* dz16_row = dz16 ? dz16 + row * vocab : nullptr;
  const int32_t target = targets[row];
  if (!ce_counted(target, vocab)) {  // the same for the whole block: it returns as one
    if (backward) ce_zero_grad(z, dz16_row, vocab, first, step);
    if (threadIdx.x == 0) {
      row_logprob[row] = 0.0;
      if (target_logprob) target_logprob[row] = 0.0f;
    }
    return;
  }
  // Read before phase 3 overwrites the row in place (the reductions' barriers order it before any write).
  const float z_target = z[target];
  const float m = block_max(ce_partial_max(z, vocab, first, step), s_max);
  const double lse = ce_log_sum_exp(m, block_sum(ce_partial_sum_exp(z, vocab, m, first, step), s_sum));
  if (threadIdx.x == 0) {
    const double lp = ce_target_logprob(z_target, lse);
    row_logprob[row] = lp;
    if (target_logprob) target_logprob[row] = float(lp);
  }
  if (backward) ce_write_grad(z, dz16_row, vocab, target, lse, grad_scale, first, step);
}

// One block: each thread sums a fixed stride of rows, then a fixed tree — the same order every run.
__global__ void __launch_bounds__(kThreads) ce_totals_kernel(const double* row_logprob, const int32_t* targets,
                                                             int64_t rows, int64_t vocab, CeTotals* totals) {
  __shared__ double s_loss[kThreads];
  __shared__ long long s_counted[kThreads];
  __shared__ long long s_bad[kThreads];
  const int t = threadIdx.x;
  const CeTotals mine = ce_partial_totals(row_logprob, targets, rows, vocab, t, kThreads);
  s_loss[t] = mine.loss_sum;
  s_counted[t] = mine.counted;
  s_bad[t] = mine.first_bad_row;
  __syncthreads();
  for (int off = kThreads / 2; off > 0; off >>= 1) {
    if (t < off) {
      CeTotals a, b;
      a.loss_sum = s_loss[t];
      a.counted = s_counted[t];
      a.first_bad_row = s_bad[t];
      b.loss_sum = s_loss[t + off];
      b.counted = s_counted[t + off];
      b.first_bad_row = s_bad[t + off];
      a = ce_combine_totals(a, b);
      s_loss[t] = a.loss_sum;
      s_counted[t] = a.counted;
      s_bad[t] = a.first_bad_row;
    }
    __syncthreads();
  }
  if (t == 0) {
    totals->loss_sum = s_loss[0];
    totals->counted = s_counted[0];
    totals->first_bad_row = s_bad[0];
  }
}

}  // namespace

void launch_round_to_bf16(const float* src, int64_t rows, int64_t cols, int64_t ld, uint16_t* dst) {
  const int64_t n = rows * cols;
  if (n <= 0) return;
  const int64_t blocks = std::min<int64_t>((n + kThreads - 1) / kThreads, 65536);  // grid-stride beyond
  round_to_bf16_kernel<<<unsigned(blocks), kThreads>>>(src, rows, cols, ld, dst);
  TXS_CUDA_LAUNCHED("round_to_bf16_kernel");
}

void launch_ce_rows(float* logits, int64_t nb, int64_t vocab, const int32_t* targets, bool backward, float grad_scale,
                    uint16_t* dz16, double* row_logprob, float* target_logprob) {
  if (nb <= 0) return;
  // gridDim.x allows 2^31 − 1 blocks; a block of rows is bounded far below that by its logits scratch.
  ce_rows_kernel<<<unsigned(nb), kThreads>>>(logits, vocab, targets, backward, grad_scale, dz16, row_logprob,
                                             target_logprob);
  TXS_CUDA_LAUNCHED("ce_rows_kernel");
}

void launch_ce_totals(const double* row_logprob, const int32_t* targets, int64_t rows, int64_t vocab,
                      CeTotals* totals) {
  ce_totals_kernel<<<1, kThreads>>>(row_logprob, targets, rows, vocab, totals);
  TXS_CUDA_LAUNCHED("ce_totals_kernel");
}

}  // namespace txs::cuda
