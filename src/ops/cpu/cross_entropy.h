// LM head fused with softmax cross-entropy, computed in blocks of rows so that the full
// rows × vocab logits matrix never exists: per block, logits = h·Wᵀ, log-softmax, loss, and (when
// training) dlogits = scale·(softmax − onehot), dh = dlogits·W, dW += dlogitsᵀ·h.
#pragma once
#include <cstdint>

#include "ops/bf16.h"
#include "ops/shapes.h"

namespace txs::cpu {

using txs::CrossEntropyResult;

// h [rows,dim], W [vocab,dim]; targets [rows], −1 = no target. target_logprob [rows] (nullable) gets
// log p(target) (0 where no target). When dh is non-null the backward runs: dh written, dW accumulated,
// both scaled by grad_scale (e.g. 1 / number of counted tokens). block_rows bounds the logits held.
// W is T, or bf16 in the bf16 mode (then every product takes bf16 inputs, the softmax stays in T).
template <class T, class WT>
CrossEntropyResult lm_head_cross_entropy(const T* h, const WT* W, const int32_t* targets, int64_t rows, int64_t dim,
                                         int64_t vocab, T* target_logprob, T* dh, T* dW, T grad_scale,
                                         int64_t block_rows = 256);

// Logits only (for sampling): logits[rows,vocab] = h · Wᵀ.
template <class T, class WT>
void lm_head_logits(const T* h, const WT* W, T* logits, int64_t rows, int64_t dim, int64_t vocab);

}  // namespace txs::cpu
