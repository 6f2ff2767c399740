// Causal softmax attention, flash-style: tiled with an online softmax, never materialising the
// T×T score matrix; grouped-query (kv_heads divides heads); scale 1/sqrt(head_dim); softmax in fp32+.
// bf16 mode: fp32 (q, k, v come fp32 from the projections; the KV cache is fp32). The running max, the
// exponentials and the normaliser must stay fp32; the QKᵀ and PV tiles could take bf16 inputs, but at the
// head dims here (64) the tile products are short and the softmax work dominates, so it is left for later.
#pragma once
#include <cstdint>

#include "ops/shapes.h"

namespace txs::cpu {

using txs::AttentionShape;

// out [B,q_len,H,P] (row stride out_stride); lse [B,H,q_len]: log-sum-exp of the scaled scores,
// saved for the backward pass.
template <class T>
void attention_forward(const AttentionShape& s, const T* q, const T* k, const T* v, T* out, T* lse);

// Gradients written (not accumulated) into dq, dk, dv with the same strides as q, k, v.
template <class T>
void attention_backward(const AttentionShape& s, const T* q, const T* k, const T* v, const T* out, const T* lse,
                        const T* dout, T* dq, T* dk, T* dv);

// One query over a KV cache (decoding): q [H·P], k, v rows j at k + j·kv_stride (head g at + g·P),
// every one of the kv_len keys visible; out [H·P]. Threads split the heads.
template <class T>
void attention_decode(int64_t heads, int64_t kv_heads, int64_t head_dim, const T* q, const T* k, const T* v,
                      int64_t kv_len, int64_t kv_stride, T* out);

}  // namespace txs::cpu
