// The portable part of the CUDA attention kernels (attention.cu): tile sizes, which keys and queries a tile
// touches, the causal mask, and the per-element softmax arithmetic (online max/rescale, probabilities,
// log-sum-exp, the backward's dS, the decode partials' merge weights). The kernels call these functions;
// tests/test_cuda_attention_math.cpp calls the same functions on the host in a tile-by-tile simulation of
// the kernels' loops and checks the result against the CPU reference — so the tiling and the softmax
// arithmetic are tested without a GPU. Only plain C++ here (portable.h's TXS_HD convention): no shared
// memory, no warp intrinsics; the cross-thread reductions are the kernels' own.
#pragma once
#include <cmath>
#include <cstdint>

#include "ops/cuda/portable.h"

namespace txs::cuda::attn {

// ---- Tile sizes (see the comment at the top of attention.cu for why) ----

// Forward: a block owns kFwdQ queries of one (batch row, head) and walks K/V tiles of kFwdK keys.
// 8 warps × 8 query rows; within a warp, lane l holds keys l and l + 32 of the tile.
inline constexpr int kFwdWarps = 8;
inline constexpr int kFwdQ = 64;
inline constexpr int kFwdK = 64;
// Backward: a block owns kBwdK keys of one (batch row, kv head) and walks query tiles of bwd_query_tile(PT)
// queries, over every query head of the kv head's group. 8 warps; each owns 8 keys of the dK/dV accumulators.
inline constexpr int kBwdWarps = 8;
inline constexpr int kBwdK = 64;
// Query tile of the backward for a padded head dim PT: 32 above 128 so that the shared tiles fit in 227 KiB.
TXS_HD constexpr int bwd_query_tile(int padded_head_dim) { return padded_head_dim <= 128 ? 64 : 32; }
// Decode: kDecodeWarps independent warps per block, each a softmax partial over its share of the keys.
inline constexpr int kDecodeWarps = 4;
inline constexpr int64_t kDecodeMinKeysPerSplit = 256;  // below this a split costs more than it saves
inline constexpr int64_t kDecodeTargetBlocks = 1024;    // enough blocks to fill an H100/H200 a few times

// Head dims are padded (with zeros) to the next of 64, 128, 192, 256: the kernels' per-lane arrays are
// PT / 32 long. 0 when the head dim is not supported (> 256).
TXS_HD constexpr int padded_head_dim(int64_t head_dim) {
  return head_dim <= 0 ? 0 : head_dim <= 64 ? 64 : head_dim <= 128 ? 128 : head_dim <= 192 ? 192 : head_dim <= 256 ? 256 : 0;
}

// ---- Causal structure ----

// Query i (0-based within its batch row) sits at key position i + (kv_len − q_len) and sees keys up to it.
// Rows past q_len and keys past kv_len are the padding of partial tiles: never visible.
TXS_HD bool key_visible(int64_t i, int64_t j, int64_t q_len, int64_t kv_len) {
  return i < q_len && j < kv_len && j <= i + (kv_len - q_len);
}
// Keys [0, fwd_key_end) are visible to some query of the forward tile starting at query q0.
TXS_HD int64_t fwd_key_end(int64_t q0, int64_t q_len, int64_t kv_len) {
  const int64_t last = (q0 + kFwdQ < q_len ? q0 + kFwdQ : q_len) - 1;  // last query of the tile
  const int64_t end = last + (kv_len - q_len) + 1;
  return end < kv_len ? end : kv_len;
}
// The first query that sees key k0 (queries before it see no key of a tile starting at k0).
TXS_HD int64_t bwd_query_begin(int64_t k0, int64_t q_len, int64_t kv_len) {
  const int64_t first = k0 - (kv_len - q_len);
  return first > 0 ? first : 0;
}

// ---- Softmax arithmetic (fp32) ----

TXS_HD float neg_inf() { return -INFINITY; }

// A raw dot product q·k as the scaled score, or −inf where the key is masked.
TXS_HD float masked_score(float dot, float scale, bool visible) { return visible ? dot * scale : neg_inf(); }

// One step of the online softmax of a row: the running max m takes in this tile's max; returns the factor
// α = exp(m_old − m_new) by which the running sum and accumulator are rescaled. A row that has seen only
// masked scores keeps m = −inf and α = 1 (its sum and accumulator are zero anyway), never NaN.
TXS_HD float online_rescale(float& m, float tile_max) {
  const float m_new = m > tile_max ? m : tile_max;
  const float alpha = m_new == neg_inf() ? 1.0f : expf(m - m_new);
  m = m_new;
  return alpha;
}
// The unnormalised probability of a score under running max m: exp(s − m), exactly 0 for a masked score.
TXS_HD float online_prob(float score, float m) { return score == neg_inf() ? 0.0f : expf(score - m); }
// The natural log-sum-exp of a finished row (saved for the backward pass).
TXS_HD float row_lse(float m, float l) { return m + logf(l); }

// Backward: the probability recomputed from the scaled score and the saved lse, and the score gradient
// dS = scale · P ⊙ (dP − D) with D = rowsum(dO ⊙ O) (the scale folds dS/dq = scale·k into dS).
TXS_HD float recomputed_prob(float scaled_score, float lse) { return expf(scaled_score - lse); }
TXS_HD float score_grad(float prob, float dprob, float row_d, float scale) { return scale * prob * (dprob - row_d); }

// Decode: the weight exp(m_part − M) of a partial (m_part, l_part, acc_part) in the merge under the global max
// M; an empty partial (no keys, m = −inf) weighs 0.
TXS_HD float merge_weight(float m_part, float m_all) { return m_part == neg_inf() ? 0.0f : expf(m_part - m_all); }

// ---- Decode partition ----

// The keys are cut into splits of decode_keys_per_split keys (the last one shorter); block (head, split)
// deals its keys to its kDecodeWarps warps round-robin (key j of the split to warp j mod kDecodeWarps).
// Enough splits to occupy the GPU for few heads, at least kDecodeMinKeysPerSplit keys each; every split
// non-empty.
TXS_HD int64_t decode_keys_per_split(int64_t kv_len, int64_t heads) {
  int64_t max_splits = kDecodeTargetBlocks / (heads > 0 ? heads : 1);
  if (max_splits < 1) max_splits = 1;
  int64_t splits = (kv_len + kDecodeMinKeysPerSplit - 1) / kDecodeMinKeysPerSplit;
  if (splits > max_splits) splits = max_splits;
  if (splits < 1) splits = 1;
  return (kv_len + splits - 1) / splits;
}
TXS_HD int64_t decode_split_count(int64_t kv_len, int64_t keys_per_split) {
  return (kv_len + keys_per_split - 1) / keys_per_split;
}

}  // namespace txs::cuda::attn
