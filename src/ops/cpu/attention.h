// Causal softmax attention, flash-style: tiled with an online softmax, never materialising the
// T×T score matrix; grouped-query (kv_heads divides heads); scale 1/sqrt(head_dim); softmax in fp32+.
#pragma once
#include <cstdint>

namespace txs::cpu {

struct AttentionShape {
  int64_t batch = 1;
  int64_t q_len = 0;     // queries per batch row
  int64_t kv_len = 0;    // keys per batch row; query i sits at key position i + (kv_len − q_len)
  int64_t heads = 1;     // H (query heads)
  int64_t kv_heads = 1;  // Hkv; query head h reads kv head h / (H / Hkv)
  int64_t head_dim = 0;  // P
  // Row strides in elements: q row (b,t) starts at q + (b*q_len + t)*q_stride, head h at + h*P.
  int64_t q_stride = 0;   // ≥ H*P (q may be a column slice of a fused qkv buffer)
  int64_t kv_stride = 0;  // ≥ Hkv*P, for both k and v
  int64_t out_stride = 0; // ≥ H*P
};

// out [B,q_len,H,P] (row stride out_stride); lse [B,H,q_len]: log-sum-exp of the scaled scores,
// saved for the backward pass.
template <class T>
void attention_forward(const AttentionShape& s, const T* q, const T* k, const T* v, T* out, T* lse);

// Gradients written (not accumulated) into dq, dk, dv with the same strides as q, k, v.
template <class T>
void attention_backward(const AttentionShape& s, const T* q, const T* k, const T* v, const T* out, const T* lse,
                        const T* dout, T* dq, T* dk, T* dv);

}  // namespace txs::cpu
