// The CUDA attention kernels (launched by attention.cu; the algorithm and tile sizes are described there), in
// two parts:
//  * portable helpers (TXS_HD, plain C++): tile sizes and launch geometry, which keys and queries a tile
//    touches, the causal mask, and the per-element softmax arithmetic (online max/rescale, probabilities,
//    log-sum-exp, the backward's dS, the decode partials' merge weights);
//  * the kernels themselves, in CUDA C++, compiled by nvcc — and by the host compiler under the small CUDA
//    emulation of tests/test_cuda_attention_math.cpp (TXS_CUDA_EMULATION), which runs these exact kernels on
//    the CPU against the CPU reference.
#pragma once
#include <cmath>
#include <cstdint>

#include "ops/cuda/portable.h"
#include "ops/shapes.h"

namespace txs::cuda::attn {

using txs::AttentionShape;

// ---- Tile sizes (see the comment at the top of attention.cu for why) ----

inline constexpr int kWarpSize = 32;

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
  if (head_dim <= 0 || head_dim > 256) return 0;
  return head_dim <= 64 ? 64 : head_dim <= 128 ? 128 : head_dim <= 192 ? 192 : 256;
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

// ---- Launch geometry (shared by the launchers and the host emulation test) ----

// Forward blocks: (batch row, head, query tile); backward blocks: (batch row, kv head, key tile).
TXS_HD int64_t fwd_blocks(const AttentionShape& s) { return s.batch * s.heads * ((s.q_len + kFwdQ - 1) / kFwdQ); }
TXS_HD int64_t bwd_blocks(const AttentionShape& s) {
  return s.batch * s.kv_heads * ((s.kv_len + kBwdK - 1) / kBwdK);
}
// Block sizes of the small kernels: D = rowsum(dO ⊙ O) (a warp per row and head), the dQ copy, the decode merge.
inline constexpr int kRowDotThreads = 256;
inline constexpr int kCopyThreads = 256;
inline constexpr int kDecodeMergeThreads = 128;
// Grid of a grid-stride kernel: enough blocks for `items` at `per_block` each, within gridDim.x's 65535
// (kept low so the launch is valid on any device; the loops cover the rest).
TXS_HD unsigned grid_stride_blocks(int64_t items, int64_t per_block) {
  const int64_t blocks = (items + per_block - 1) / per_block;
  return unsigned(blocks < 65535 ? (blocks > 0 ? blocks : 1) : 65535);
}

}  // namespace txs::cuda::attn

// ---- The kernels ----
// Compiled by nvcc for attention.cu, and by the host compiler in tests/test_cuda_attention_math.cpp under a
// small CUDA emulation (TXS_CUDA_EMULATION: one std::thread per CUDA thread, barriers for __syncthreads,
// __syncwarp and the shuffles, atomic_ref for atomicAdd). Loop unrolling is spelled through TXS_UNROLL so
// that each compiler reads its own pragma.
#if defined(__CUDACC__) || defined(TXS_CUDA_EMULATION)
#define TXS_ATTN_STRINGIFY(x) #x
#if defined(__CUDACC__)
#define TXS_ATTN_DYNAMIC_SMEM(name) extern __shared__ float4 name[]
#define TXS_UNROLL_ALL _Pragma("unroll")
#define TXS_UNROLL(n) _Pragma(TXS_ATTN_STRINGIFY(unroll n))
#else  // the host compiler's spelling (g++ warns about CUDA's)
#define TXS_UNROLL_ALL _Pragma("GCC unroll 16")
#define TXS_UNROLL(n) _Pragma(TXS_ATTN_STRINGIFY(GCC unroll n))
#endif

namespace txs::cuda::attn {
namespace {

constexpr unsigned kFullMask = 0xffffffffu;

__device__ __forceinline__ float warp_max(float x) {
  TXS_UNROLL_ALL
  for (int o = 16; o > 0; o /= 2) x = fmaxf(x, __shfl_xor_sync(kFullMask, x, o));
  return x;
}
__device__ __forceinline__ float warp_sum(float x) {
  TXS_UNROLL_ALL
  for (int o = 16; o > 0; o /= 2) x += __shfl_xor_sync(kFullMask, x, o);
  return x;
}
__device__ __forceinline__ float dot4(float4 a, float4 b) { return a.x * b.x + a.y * b.y + a.z * b.z + a.w * b.w; }

// s[r][c] += Σ_p A[r·lda + p] · B[(lane + 32c)·ldb + p] for p < PT: R rows of A (read as broadcast float4)
// against the two keys lane and lane + 32 of B (a shared tile with rows padded to a multiple of 4 floats).
template <int PT, int R>
__device__ __forceinline__ void tile_dots(const float* A, int lda, const float* B, int ldb, int lane,
                                          float (&s)[R][2]) {
  const float* b0 = B + lane * ldb;
  const float* b1 = B + (lane + 32) * ldb;
  TXS_UNROLL(4)
  for (int p = 0; p < PT; p += 4) {
    const float4 k0 = *reinterpret_cast<const float4*>(b0 + p);
    const float4 k1 = *reinterpret_cast<const float4*>(b1 + p);
    TXS_UNROLL_ALL
    for (int r = 0; r < R; ++r) {
      const float4 a = *reinterpret_cast<const float4*>(A + r * lda + p);
      s[r][0] += dot4(a, k0);
      s[r][1] += dot4(a, k1);
    }
  }
}

// rows × PT tile of a strided global matrix into shared (row stride ld_s), zero past `valid_rows` and
// past column P. Consecutive threads take consecutive columns: coalesced reads, conflict-free writes.
template <int PT, int kThreads>
__device__ __forceinline__ void load_tile(float* dst, int ld_s, int rows, const float* src, int64_t ld_g,
                                          int64_t valid_rows, int P) {
  for (int idx = threadIdx.x; idx < rows * PT; idx += kThreads) {
    const int r = idx / PT, p = idx % PT;
    dst[r * ld_s + p] = (r < valid_rows && p < P) ? src[r * ld_g + p] : 0.0f;
  }
}

// ---------------------------------------------------------------- forward

template <int PT>
struct Fwd {
  static constexpr int kThreads = kFwdWarps * kWarpSize;
  static constexpr int kRows = kFwdQ / kFwdWarps;  // query rows per warp
  static constexpr int kDims = PT / kWarpSize;     // head-dim columns per lane
  static constexpr int kLdK = PT + 4;
  static constexpr size_t kSmemFloats = size_t(kFwdQ) * PT + size_t(kFwdK) * kLdK + size_t(kFwdK) * PT +
                                        size_t(kFwdWarps) * kRows * kFwdK;
  static constexpr size_t kSmemBytes = kSmemFloats * sizeof(float);
  static_assert(kFwdQ % kFwdWarps == 0 && kFwdK == 2 * kWarpSize && PT % kWarpSize == 0);
};

template <int PT>
__global__ void __launch_bounds__(Fwd<PT>::kThreads, 1)
    attention_forward_kernel(AttentionShape s, const float* __restrict__ q, const float* __restrict__ k,
                             const float* __restrict__ v, float* __restrict__ out, float* __restrict__ lse,
                             float scale) {
  using C = Fwd<PT>;
  constexpr int R = C::kRows;
  TXS_ATTN_DYNAMIC_SMEM(smem_f4);
  float* Qs = reinterpret_cast<float*>(smem_f4);  // [kFwdQ][PT]
  float* Ks = Qs + kFwdQ * PT;                      // [kFwdK][kLdK]
  float* Vs = Ks + kFwdK * C::kLdK;                 // [kFwdK][PT]
  float* Ps = Vs + kFwdK * PT;                      // [kFwdWarps][R][kFwdK]

  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  const int64_t Tq = s.q_len, Tk = s.kv_len, H = s.heads, P = s.head_dim;
  const int64_t BH = s.batch * H, n_qt = (Tq + kFwdQ - 1) / kFwdQ;
  const int64_t qt = n_qt - 1 - int64_t(blockIdx.x) / BH, bh = int64_t(blockIdx.x) % BH;
  const int64_t b = bh / H, h = bh % H, hk = h / (H / s.kv_heads);
  const int64_t q0 = qt * kFwdQ;
  const int64_t key_end = fwd_key_end(q0, Tq, Tk);
  const float* kb = k + b * Tk * s.kv_stride + hk * P;
  const float* vb = v + b * Tk * s.kv_stride + hk * P;

  load_tile<PT, C::kThreads>(Qs, PT, kFwdQ, q + (b * Tq + q0) * s.q_stride + h * P, s.q_stride, Tq - q0, int(P));

  float m[R], l[R], acc[R][C::kDims];
  TXS_UNROLL_ALL
  for (int r = 0; r < R; ++r) {
    m[r] = neg_inf();
    l[r] = 0.0f;
    TXS_UNROLL_ALL
    for (int c = 0; c < C::kDims; ++c) acc[r][c] = 0.0f;
  }
  const float* Qw = Qs + warp * R * PT;
  float* Pw = Ps + warp * R * kFwdK;

  for (int64_t k0 = 0; k0 < key_end; k0 += kFwdK) {  // same trip count in every thread of the block
    __syncthreads();  // the previous tile's K/V are consumed (and, first time, nothing to wait for)
    load_tile<PT, C::kThreads>(Ks, C::kLdK, kFwdK, kb + k0 * s.kv_stride, s.kv_stride, Tk - k0, int(P));
    load_tile<PT, C::kThreads>(Vs, PT, kFwdK, vb + k0 * s.kv_stride, s.kv_stride, Tk - k0, int(P));
    __syncthreads();

    float sc[R][2];
    TXS_UNROLL_ALL
    for (int r = 0; r < R; ++r) sc[r][0] = sc[r][1] = 0.0f;
    tile_dots<PT, R>(Qw, PT, Ks, C::kLdK, lane, sc);

    TXS_UNROLL_ALL
    for (int r = 0; r < R; ++r) {
      const int64_t i = q0 + warp * R + r;
      const float s0 = masked_score(sc[r][0], scale, key_visible(i, k0 + lane, Tq, Tk));
      const float s1 = masked_score(sc[r][1], scale, key_visible(i, k0 + lane + 32, Tq, Tk));
      const float alpha = online_rescale(m[r], warp_max(fmaxf(s0, s1)));
      const float p0 = online_prob(s0, m[r]), p1 = online_prob(s1, m[r]);
      l[r] = l[r] * alpha + warp_sum(p0 + p1);
      TXS_UNROLL_ALL
      for (int c = 0; c < C::kDims; ++c) acc[r][c] *= alpha;
      Pw[r * kFwdK + lane] = p0;
      Pw[r * kFwdK + lane + 32] = p1;
    }
    __syncwarp();  // this warp's p rows are visible to all its lanes

    TXS_UNROLL(2)
    for (int j = 0; j < kFwdK; j += 4) {
      float vv[4][C::kDims];
      TXS_UNROLL_ALL
      for (int jj = 0; jj < 4; ++jj)
        TXS_UNROLL_ALL
        for (int c = 0; c < C::kDims; ++c) vv[jj][c] = Vs[(j + jj) * PT + lane + 32 * c];
      TXS_UNROLL_ALL
      for (int r = 0; r < R; ++r) {
        const float4 p4 = *reinterpret_cast<const float4*>(Pw + r * kFwdK + j);
        TXS_UNROLL_ALL
        for (int c = 0; c < C::kDims; ++c)
          acc[r][c] += p4.x * vv[0][c] + p4.y * vv[1][c] + p4.z * vv[2][c] + p4.w * vv[3][c];
      }
    }
    // The next write of Pw comes after the two __syncthreads of the next tile: no __syncwarp needed here.
  }

  TXS_UNROLL_ALL
  for (int r = 0; r < R; ++r) {
    const int64_t i = q0 + warp * R + r;
    if (i >= Tq) continue;
    const float inv = 1.0f / l[r];  // l ≥ 1: every query sees key 0, and its max contributes exp(0)
    float* o = out + (b * Tq + i) * s.out_stride + h * P;
    TXS_UNROLL_ALL
    for (int c = 0; c < C::kDims; ++c)
      if (lane + 32 * c < P) o[lane + 32 * c] = acc[r][c] * inv;
    if (lane == 0) lse[(b * H + h) * Tq + i] = row_lse(m[r], l[r]);
  }
}

// ---------------------------------------------------------------- backward

template <int PT>
struct Bwd {
  static constexpr int kThreads = kBwdWarps * kWarpSize;
  static constexpr int kQ = bwd_query_tile(PT);
  static constexpr int kRowsQ = kQ / kBwdWarps;     // query rows per warp (S, dP, dQ)
  static constexpr int kRowsK = kBwdK / kBwdWarps;  // keys per warp (dK, dV)
  static constexpr int kDims = PT / kWarpSize;
  static constexpr int kLd = PT + 4;      // row stride of the K, V, Q, dO tiles
  static constexpr int kLdS = kBwdK + 4;  // row stride of the p and dS tiles
  static constexpr size_t kSmemFloats =
      2 * size_t(kBwdK) * kLd + 2 * size_t(kQ) * kLd + 2 * size_t(kQ) * kLdS + 2 * size_t(kQ);
  static constexpr size_t kSmemBytes = kSmemFloats * sizeof(float);
  static_assert(kRowsK == 8 && kBwdK == 2 * kWarpSize && kQ % kBwdWarps == 0 && PT % kWarpSize == 0);
};

// D[(b·H + h)·q_len + t] = Σ_p dout · out over head h of row (b, t): one warp per (row, head).
__global__ void attention_row_dot_kernel(AttentionShape s, const float* __restrict__ out,
                                         const float* __restrict__ dout, float* __restrict__ D) {
  const int lane = threadIdx.x % kWarpSize;
  const int64_t H = s.heads, P = s.head_dim, Tq = s.q_len, total = s.batch * Tq * H;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / kWarpSize);
  for (int64_t w = int64_t(blockIdx.x) * (blockDim.x / kWarpSize) + threadIdx.x / kWarpSize; w < total;
       w += warps) {
    const int64_t bt = w / H, h = w % H;
    const float* o = out + bt * s.out_stride + h * P;
    const float* d = dout + bt * s.out_stride + h * P;
    float acc = 0.0f;
    for (int64_t p = lane; p < P; p += kWarpSize) acc += o[p] * d[p];
    acc = warp_sum(acc);
    if (lane == 0) D[((bt / Tq) * H + h) * Tq + bt % Tq] = acc;
  }
}

template <int PT>
__global__ void __launch_bounds__(Bwd<PT>::kThreads, 1)
    attention_backward_kernel(AttentionShape s, const float* __restrict__ q, const float* __restrict__ k,
                              const float* __restrict__ v, const float* __restrict__ lse,
                              const float* __restrict__ D, const float* __restrict__ dout,
                              float* __restrict__ dq_acc, float* __restrict__ dk, float* __restrict__ dv,
                              float scale) {
  using C = Bwd<PT>;
  constexpr int RQ = C::kRowsQ, RK = C::kRowsK, kQ = C::kQ, kLd = C::kLd, kLdS = C::kLdS;
  TXS_ATTN_DYNAMIC_SMEM(smem_f4);
  float* Ks = reinterpret_cast<float*>(smem_f4);  // [kBwdK][kLd]
  float* Vs = Ks + kBwdK * kLd;                     // [kBwdK][kLd]
  float* Qs = Vs + kBwdK * kLd;                     // [kQ][kLd]
  float* dOs = Qs + kQ * kLd;                       // [kQ][kLd]
  float* Ps = dOs + kQ * kLd;                       // [kQ][kLdS] probabilities
  float* dSs = Ps + kQ * kLdS;                      // [kQ][kLdS] score gradients
  float* Ls = dSs + kQ * kLdS;                      // [kQ] lse of the tile's rows
  float* Ds = Ls + kQ;                              // [kQ] D of the tile's rows

  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  const int64_t Tq = s.q_len, Tk = s.kv_len, H = s.heads, Hkv = s.kv_heads, P = s.head_dim, HP = H * P;
  const int64_t group = H / Hkv, n_kt = (Tk + kBwdK - 1) / kBwdK;
  const int64_t kt = int64_t(blockIdx.x) % n_kt, bhk = int64_t(blockIdx.x) / n_kt;
  const int64_t b = bhk / Hkv, hk = bhk % Hkv, k0 = kt * kBwdK;

  load_tile<PT, C::kThreads>(Ks, kLd, kBwdK, k + (b * Tk + k0) * s.kv_stride + hk * P, s.kv_stride, Tk - k0,
                             int(P));
  load_tile<PT, C::kThreads>(Vs, kLd, kBwdK, v + (b * Tk + k0) * s.kv_stride + hk * P, s.kv_stride, Tk - k0,
                             int(P));

  float dk_acc[RK][C::kDims], dv_acc[RK][C::kDims];
  TXS_UNROLL_ALL
  for (int r = 0; r < RK; ++r)
    TXS_UNROLL_ALL
    for (int c = 0; c < C::kDims; ++c) dk_acc[r][c] = dv_acc[r][c] = 0.0f;

  const int64_t q_begin = bwd_query_begin(k0, Tq, Tk);
  for (int64_t h = hk * group; h < (hk + 1) * group; ++h) {  // loop bounds are uniform over the block
    for (int64_t q0 = q_begin; q0 < Tq; q0 += kQ) {
      __syncthreads();  // the previous query tile's shared data are consumed
      const int64_t row0 = b * Tq + q0;
      load_tile<PT, C::kThreads>(Qs, kLd, kQ, q + row0 * s.q_stride + h * P, s.q_stride, Tq - q0, int(P));
      load_tile<PT, C::kThreads>(dOs, kLd, kQ, dout + row0 * s.out_stride + h * P, s.out_stride, Tq - q0, int(P));
      for (int r = threadIdx.x; r < kQ; r += C::kThreads) {
        const bool valid = q0 + r < Tq;
        Ls[r] = valid ? lse[(b * H + h) * Tq + q0 + r] : 0.0f;
        Ds[r] = valid ? D[(b * H + h) * Tq + q0 + r] : 0.0f;
      }
      __syncthreads();

      // p and dS of this warp's rows × the tile's 64 keys (lane: keys lane, lane + 32).
      {
        float sc[RQ][2], dp[RQ][2];
        TXS_UNROLL_ALL
        for (int r = 0; r < RQ; ++r) sc[r][0] = sc[r][1] = dp[r][0] = dp[r][1] = 0.0f;
        tile_dots<PT, RQ>(Qs + warp * RQ * kLd, kLd, Ks, kLd, lane, sc);
        tile_dots<PT, RQ>(dOs + warp * RQ * kLd, kLd, Vs, kLd, lane, dp);
        TXS_UNROLL_ALL
        for (int r = 0; r < RQ; ++r) {
          const int rr = warp * RQ + r;
          TXS_UNROLL_ALL
          for (int c = 0; c < 2; ++c) {
            const int jj = lane + 32 * c;
            const float p =
                key_visible(q0 + rr, k0 + jj, Tq, Tk) ? recomputed_prob(sc[r][c] * scale, Ls[rr]) : 0.0f;
            Ps[rr * kLdS + jj] = p;
            dSs[rr * kLdS + jj] = score_grad(p, dp[r][c], Ds[rr], scale);
          }
        }
      }
      __syncthreads();

      // dV += pᵀ dO and dK += dSᵀ Q for this warp's 8 keys (broadcast reads of p/dS, lane columns of dO/Q).
      TXS_UNROLL(2)
      for (int i = 0; i < kQ; ++i) {
        const float4 pa = *reinterpret_cast<const float4*>(Ps + i * kLdS + warp * RK);
        const float4 pb = *reinterpret_cast<const float4*>(Ps + i * kLdS + warp * RK + 4);
        const float4 da = *reinterpret_cast<const float4*>(dSs + i * kLdS + warp * RK);
        const float4 db = *reinterpret_cast<const float4*>(dSs + i * kLdS + warp * RK + 4);
        const float pr[RK] = {pa.x, pa.y, pa.z, pa.w, pb.x, pb.y, pb.z, pb.w};
        const float dr[RK] = {da.x, da.y, da.z, da.w, db.x, db.y, db.z, db.w};
        TXS_UNROLL_ALL
        for (int c = 0; c < C::kDims; ++c) {
          const float dov = dOs[i * kLd + lane + 32 * c], qv = Qs[i * kLd + lane + 32 * c];
          TXS_UNROLL_ALL
          for (int r = 0; r < RK; ++r) {
            dv_acc[r][c] += pr[r] * dov;
            dk_acc[r][c] += dr[r] * qv;
          }
        }
      }

      // dQ of this warp's rows = dS K over the tile's keys, added into the fp32 scratch.
      {
        float dq_r[RQ][C::kDims];
        TXS_UNROLL_ALL
        for (int r = 0; r < RQ; ++r)
          TXS_UNROLL_ALL
          for (int c = 0; c < C::kDims; ++c) dq_r[r][c] = 0.0f;
        TXS_UNROLL(2)
        for (int j = 0; j < kBwdK; j += 4) {
          float kv[4][C::kDims];
          TXS_UNROLL_ALL
          for (int jj = 0; jj < 4; ++jj)
            TXS_UNROLL_ALL
            for (int c = 0; c < C::kDims; ++c) kv[jj][c] = Ks[(j + jj) * kLd + lane + 32 * c];
          TXS_UNROLL_ALL
          for (int r = 0; r < RQ; ++r) {
            const float4 d4 = *reinterpret_cast<const float4*>(dSs + (warp * RQ + r) * kLdS + j);
            TXS_UNROLL_ALL
            for (int c = 0; c < C::kDims; ++c)
              dq_r[r][c] += d4.x * kv[0][c] + d4.y * kv[1][c] + d4.z * kv[2][c] + d4.w * kv[3][c];
          }
        }
        TXS_UNROLL_ALL
        for (int r = 0; r < RQ; ++r) {
          const int64_t i = q0 + warp * RQ + r;
          if (i >= Tq) continue;
          float* dst = dq_acc + (b * Tq + i) * HP + h * P;
          TXS_UNROLL_ALL
          for (int c = 0; c < C::kDims; ++c)
            if (lane + 32 * c < P) atomicAdd(dst + lane + 32 * c, dq_r[r][c]);
        }
      }
    }
  }

  // This block is the only one to see keys [k0, k0 + 64) of (b, hk): dK and dV are final.
  TXS_UNROLL_ALL
  for (int r = 0; r < RK; ++r) {
    const int64_t j = k0 + warp * RK + r;
    if (j >= Tk) continue;
    float* dkr = dk + (b * Tk + j) * s.kv_stride + hk * P;
    float* dvr = dv + (b * Tk + j) * s.kv_stride + hk * P;
    TXS_UNROLL_ALL
    for (int c = 0; c < C::kDims; ++c)
      if (lane + 32 * c < P) {
        dkr[lane + 32 * c] = dk_acc[r][c];
        dvr[lane + 32 * c] = dv_acc[r][c];
      }
  }
}

// dq[row, 0:H·P] (row stride q_stride) = acc[row, :] (contiguous).
__global__ void attention_copy_dq_kernel(int64_t rows, int64_t cols, const float* __restrict__ acc,
                                         float* __restrict__ dq, int64_t q_stride) {
  const int64_t total = rows * cols, step = int64_t(gridDim.x) * blockDim.x;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += step)
    dq[(e / cols) * q_stride + e % cols] = acc[e];
}

// ---------------------------------------------------------------- decode

template <int PT>
__global__ void __launch_bounds__(kDecodeWarps * kWarpSize)
    attention_decode_partial_kernel(int64_t H, int64_t group, int64_t P, const float* __restrict__ q,
                                    const float* __restrict__ k, const float* __restrict__ v, int64_t kv_len,
                                    int64_t kv_stride, int64_t keys_per_split, int64_t n_splits, float scale,
                                    float* __restrict__ part_ml, float* __restrict__ part_acc) {
  constexpr int kDims = PT / kWarpSize;
  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  const int64_t h = int64_t(blockIdx.x) / n_splits, split = int64_t(blockIdx.x) % n_splits;
  const int64_t hk = h / group, n_part = n_splits * kDecodeWarps, part = split * kDecodeWarps + warp;
  const int64_t key_begin = split * keys_per_split;
  const int64_t key_end = key_begin + keys_per_split < kv_len ? key_begin + keys_per_split : kv_len;

  float qr[kDims], acc[kDims];
  TXS_UNROLL_ALL
  for (int c = 0; c < kDims; ++c) {
    qr[c] = lane + 32 * c < P ? q[h * P + lane + 32 * c] : 0.0f;
    acc[c] = 0.0f;
  }
  float m = neg_inf(), l = 0.0f;
  for (int64_t j = key_begin + warp; j < key_end; j += kDecodeWarps) {  // warp-uniform: shuffles are safe
    const float* kj = k + j * kv_stride + hk * P;
    const float* vj = v + j * kv_stride + hk * P;
    float dot = 0.0f;
    TXS_UNROLL_ALL
    for (int c = 0; c < kDims; ++c)
      if (lane + 32 * c < P) dot += qr[c] * kj[lane + 32 * c];
    const float score = masked_score(warp_sum(dot), scale, true);
    const float alpha = online_rescale(m, score);
    const float p = online_prob(score, m);
    l = l * alpha + p;
    TXS_UNROLL_ALL
    for (int c = 0; c < kDims; ++c) acc[c] = acc[c] * alpha + (lane + 32 * c < P ? p * vj[lane + 32 * c] : 0.0f);
  }
  if (lane == 0) {
    part_ml[(h * n_part + part) * 2] = m;
    part_ml[(h * n_part + part) * 2 + 1] = l;
  }
  TXS_UNROLL_ALL
  for (int c = 0; c < kDims; ++c) part_acc[(h * n_part + part) * PT + lane + 32 * c] = acc[c];
}

// out[h·P + d] = Σ_part w·acc[d] / Σ_part w·l with w = exp(m_part − max m): one block per head.
template <int PT>
__global__ void attention_decode_merge_kernel(int64_t P, int64_t n_part, const float* __restrict__ part_ml,
                                              const float* __restrict__ part_acc, float* __restrict__ out) {
  const int64_t h = blockIdx.x;
  const float* ml = part_ml + h * n_part * 2;
  const float* pa = part_acc + h * n_part * PT;
  float m_all = neg_inf();
  for (int64_t i = 0; i < n_part; ++i) m_all = fmaxf(m_all, ml[2 * i]);
  float l_all = 0.0f;
  for (int64_t i = 0; i < n_part; ++i) l_all += merge_weight(ml[2 * i], m_all) * ml[2 * i + 1];
  for (int64_t d = threadIdx.x; d < P; d += blockDim.x) {
    float o = 0.0f;
    for (int64_t i = 0; i < n_part; ++i) o += merge_weight(ml[2 * i], m_all) * pa[i * PT + d];
    out[h * P + d] = o / l_all;
  }
}

}  // namespace
}  // namespace txs::cuda::attn
#endif  // __CUDACC__ || TXS_CUDA_EMULATION
