// Causal attention on the GPU (fp32 operands, fp32 softmax statistics), with the semantics of
// ops/cpu/attention.h: scale 1/sqrt(P), grouped-query heads (query head h reads kv head h / (H / Hkv)),
// query i of a batch row at key position i + (kv_len − q_len). Flash-style: K/V tiles staged in shared
// memory, online softmax, never a T×T matrix in global memory. Head dims 64 and 128 take the tiled kernels;
// other head dims (≤ 256) a generic path of the same algorithm. All pointers are device pointers, all
// launches on the default stream.
#pragma once
#include <cstdint>

#include "ops/shapes.h"

namespace txs::cuda {

// out [B·q_len, H·P] (row stride s.out_stride), lse [B·H, q_len] contiguous (natural log-sum-exp of the
// scaled scores, saved for the backward pass).
void attention_forward(const AttentionShape& s, const float* q, const float* k, const float* v, float* out,
                       float* lse);
// dq, dk, dv written (not accumulated), with the strides of q, k, v (dout and out: s.out_stride).
void attention_backward(const AttentionShape& s, const float* q, const float* k, const float* v, const float* out,
                        const float* lse, const float* dout, float* dq, float* dk, float* dv);
// One query per head over a KV cache (decode): q [H·P], k, v rows j at k + j·kv_stride, all kv_len keys
// visible; out [H·P].
void attention_decode(int64_t heads, int64_t kv_heads, int64_t head_dim, const float* q, const float* k,
                      const float* v, int64_t kv_len, int64_t kv_stride, float* out);

}  // namespace txs::cuda
