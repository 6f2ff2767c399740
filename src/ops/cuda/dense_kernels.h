// The hand-written kernels of the dense ops (dense_kernels.cu), called by dense.cpp around its cuBLASLt
// products: bf16 rounding of fp32 operands, and the LM head's per-row log-softmax / gradient and loss sum.
// Device pointers, default stream; each launcher checks its launch.
#pragma once
#include <cstdint>

#include "ops/cuda/bodies/cross_entropy.h"

namespace txs::cuda {

// dst[r·cols + c] = bf16(src[r·ld + c]) for a [rows, cols] fp32 matrix with row stride ld (round to nearest
// even, as ops/bf16.h); dst is contiguous.
void launch_round_to_bf16(const float* src, int64_t rows, int64_t cols, int64_t ld, uint16_t* dst);

// One block of the LM head: logits [nb, vocab] (contiguous) with targets [nb]. Per row: row_logprob[i]
// (double) and target_logprob[i] (float, may be null) get log p(target), 0 for rows that do not count.
// With backward, the gradient scale·(softmax − onehot) (0 for rows that do not count) is written over the
// logits (dz16 null: fp32 mode) or as bf16 into dz16 [nb, vocab] (bf16 mode; the logits stay).
void launch_ce_rows(float* logits, int64_t nb, int64_t vocab, const int32_t* targets, bool backward, float grad_scale,
                    uint16_t* dz16, double* row_logprob, float* target_logprob);

// totals[0] = the loss sum, counted rows and first invalid target of all rows, in a fixed order (one thread
// block, so the sum does not depend on timing).
void launch_ce_totals(const double* row_logprob, const int32_t* targets, int64_t rows, int64_t vocab,
                      CeTotals* totals);

}  // namespace txs::cuda
