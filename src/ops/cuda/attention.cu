// Causal flash attention on the GPU (interface and semantics in attention.h; the CPU reference is
// ops/cpu/attention.cpp). fp32 everywhere: operands, FMA tile products in shared memory, softmax statistics.
//
// Head dims: the kernels are templates on PT ∈ {64, 128, 192, 256}, the head dim padded with zeros (zero
// columns add nothing to q·k and give zero output columns, which are never stored). Head dims 64 and 128 run
// exactly; others run on the next PT (the generic path: same code, some wasted lanes); P > 256 fails.
// Each lane of a warp owns the head-dim columns lane + 32c, c < PT/32, of whatever rows it accumulates.
//
// Forward — block = (batch row b, head h, tile of kFwdQ = 64 queries), 8 warps × 8 query rows:
//   Q tile → shared once; for each K/V tile of kFwdK = 64 keys that some query of the tile sees:
//     K, V → shared; each warp computes its 8 × 64 scores (lane: keys lane, lane+32) as fp32 FMAs over
//     float4 reads (K rows padded to PT+4 floats: the 8 lanes of a quarter-warp hit distinct banks);
//     mask, row max by warp shuffles, m' = max(m, tile max), α = exp(m − m'), p = exp(s − m'),
//     l = α·l + Σp, acc = α·acc + p·V (p through a per-warp shared row, V read by lane columns).
//   out = acc / l, lse = m + log l.  Blocks are ordered longest (last) query tile first.
//   Shared: Q 64·PT + K 64·(PT+4) + V 64·PT + p 8·8·64 floats = 113 KiB at PT = 128 (209 KiB at 256).
// Backward (FlashAttention-2) — D = rowsum(dO ⊙ O) by a row kernel, then block = (b, kv head hk, tile of
//   kBwdK = 64 keys): K, V → shared once; for every query head of hk's group and every query tile
//   (64 queries, 32 when PT > 128) from the first query that sees the key tile: Q, dO, lse, D → shared;
//   warps (rows) compute S = QKᵀ and dP = dO Vᵀ, p = exp(scale·s − lse) (0 where masked),
//   dS = scale·p·(dP − D) → shared; then warps (8 keys each) accumulate dV += pᵀ dO, dK += dSᵀ Q in
//   registers, and warps (rows) compute dQ = dS K and atomicAdd it into a contiguous fp32 scratch
//   [B·q_len, H·P] (zeroed first), which a last kernel copies into dq's strided slice. dK and dV of a key
//   tile are complete at the end of its block (all group heads, all queries): written once, no atomics.
//   Shared at PT = 128: 4 tiles 64·132 + p, dS 64·68 + lse, D = 167 KiB; at PT = 256 (32 queries) 212 KiB.
// Decode — flash-decoding: block = (head, split of ≥ 256 keys; enough splits to give ~1024 blocks); each of
//   its 4 warps runs an online softmax over every 4th key of the split (one q·k per step, reduced by
//   shuffles) into a partial (m, l, acc[P]) in scratch; a second kernel merges a head's partials with
//   weights exp(m_part − max m). No scores are stored, so kv_len is bounded only by memory.
//
// Tile sizes: 64 × 64 score tiles give every lane two keys, keep ≤ 64 accumulator floats per lane for
// PT ≤ 128 and let 2 forward blocks (16 warps) share an SM at PT = 128; larger tiles would not fit the
// backward's four PT-wide shared tiles. Shared memory above 48 KiB is opted into per kernel
// (cudaFuncAttributeMaxDynamicSharedMemorySize) after checking the device's limit.
//
// What is verified where: tests/test_cuda_attention_math.cpp runs, on the host, the kernels' tile loops
// (tile ranges, masks, online softmax, recomputed p and dS, decode split/partial merge — the functions of
// attention_kernels.cuh that the kernels call) against the CPU reference. The thread mapping, shared-memory
// indexing, warp reductions and atomics can only be checked on a GPU (the backend conformance tests).
#include "ops/cuda/attention.h"

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "core/error.h"
#include "ops/cuda/attention_kernels.cuh"
#include "ops/cuda/cuda_check.h"
#include "ops/cuda/device_scratch.h"

namespace txs::cuda {
namespace {

using namespace attn;

constexpr int kWarpSize = 32;
constexpr unsigned kFullMask = 0xffffffffu;

__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
  for (int o = 16; o > 0; o /= 2) x = fmaxf(x, __shfl_xor_sync(kFullMask, x, o));
  return x;
}
__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
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
#pragma unroll 4
  for (int p = 0; p < PT; p += 4) {
    const float4 k0 = *reinterpret_cast<const float4*>(b0 + p);
    const float4 k1 = *reinterpret_cast<const float4*>(b1 + p);
#pragma unroll
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
  extern __shared__ float4 smem_f4[];
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
#pragma unroll
  for (int r = 0; r < R; ++r) {
    m[r] = neg_inf();
    l[r] = 0.0f;
#pragma unroll
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
#pragma unroll
    for (int r = 0; r < R; ++r) sc[r][0] = sc[r][1] = 0.0f;
    tile_dots<PT, R>(Qw, PT, Ks, C::kLdK, lane, sc);

#pragma unroll
    for (int r = 0; r < R; ++r) {
      const int64_t i = q0 + warp * R + r;
      const float s0 = masked_score(sc[r][0], scale, key_visible(i, k0 + lane, Tq, Tk));
      const float s1 = masked_score(sc[r][1], scale, key_visible(i, k0 + lane + 32, Tq, Tk));
      const float alpha = online_rescale(m[r], warp_max(fmaxf(s0, s1)));
      const float p0 = online_prob(s0, m[r]), p1 = online_prob(s1, m[r]);
      l[r] = l[r] * alpha + warp_sum(p0 + p1);
#pragma unroll
      for (int c = 0; c < C::kDims; ++c) acc[r][c] *= alpha;
      Pw[r * kFwdK + lane] = p0;
      Pw[r * kFwdK + lane + 32] = p1;
    }
    __syncwarp();  // this warp's p rows are visible to all its lanes

#pragma unroll 2
    for (int j = 0; j < kFwdK; j += 4) {
      float vv[4][C::kDims];
#pragma unroll
      for (int jj = 0; jj < 4; ++jj)
#pragma unroll
        for (int c = 0; c < C::kDims; ++c) vv[jj][c] = Vs[(j + jj) * PT + lane + 32 * c];
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const float4 p4 = *reinterpret_cast<const float4*>(Pw + r * kFwdK + j);
#pragma unroll
        for (int c = 0; c < C::kDims; ++c)
          acc[r][c] += p4.x * vv[0][c] + p4.y * vv[1][c] + p4.z * vv[2][c] + p4.w * vv[3][c];
      }
    }
    // The next write of Pw comes after the two __syncthreads of the next tile: no __syncwarp needed here.
  }

#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int64_t i = q0 + warp * R + r;
    if (i >= Tq) continue;
    const float inv = 1.0f / l[r];  // l ≥ 1: every query sees key 0, and its max contributes exp(0)
    float* o = out + (b * Tq + i) * s.out_stride + h * P;
#pragma unroll
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
  extern __shared__ float4 smem_f4[];
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
#pragma unroll
  for (int r = 0; r < RK; ++r)
#pragma unroll
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
#pragma unroll
        for (int r = 0; r < RQ; ++r) sc[r][0] = sc[r][1] = dp[r][0] = dp[r][1] = 0.0f;
        tile_dots<PT, RQ>(Qs + warp * RQ * kLd, kLd, Ks, kLd, lane, sc);
        tile_dots<PT, RQ>(dOs + warp * RQ * kLd, kLd, Vs, kLd, lane, dp);
#pragma unroll
        for (int r = 0; r < RQ; ++r) {
          const int rr = warp * RQ + r;
#pragma unroll
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
#pragma unroll 2
      for (int i = 0; i < kQ; ++i) {
        const float4 pa = *reinterpret_cast<const float4*>(Ps + i * kLdS + warp * RK);
        const float4 pb = *reinterpret_cast<const float4*>(Ps + i * kLdS + warp * RK + 4);
        const float4 da = *reinterpret_cast<const float4*>(dSs + i * kLdS + warp * RK);
        const float4 db = *reinterpret_cast<const float4*>(dSs + i * kLdS + warp * RK + 4);
        const float pr[RK] = {pa.x, pa.y, pa.z, pa.w, pb.x, pb.y, pb.z, pb.w};
        const float dr[RK] = {da.x, da.y, da.z, da.w, db.x, db.y, db.z, db.w};
#pragma unroll
        for (int c = 0; c < C::kDims; ++c) {
          const float dov = dOs[i * kLd + lane + 32 * c], qv = Qs[i * kLd + lane + 32 * c];
#pragma unroll
          for (int r = 0; r < RK; ++r) {
            dv_acc[r][c] += pr[r] * dov;
            dk_acc[r][c] += dr[r] * qv;
          }
        }
      }

      // dQ of this warp's rows = dS K over the tile's keys, added into the fp32 scratch.
      {
        float dq_r[RQ][C::kDims];
#pragma unroll
        for (int r = 0; r < RQ; ++r)
#pragma unroll
          for (int c = 0; c < C::kDims; ++c) dq_r[r][c] = 0.0f;
#pragma unroll 2
        for (int j = 0; j < kBwdK; j += 4) {
          float kv[4][C::kDims];
#pragma unroll
          for (int jj = 0; jj < 4; ++jj)
#pragma unroll
            for (int c = 0; c < C::kDims; ++c) kv[jj][c] = Ks[(j + jj) * kLd + lane + 32 * c];
#pragma unroll
          for (int r = 0; r < RQ; ++r) {
            const float4 d4 = *reinterpret_cast<const float4*>(dSs + (warp * RQ + r) * kLdS + j);
#pragma unroll
            for (int c = 0; c < C::kDims; ++c)
              dq_r[r][c] += d4.x * kv[0][c] + d4.y * kv[1][c] + d4.z * kv[2][c] + d4.w * kv[3][c];
          }
        }
#pragma unroll
        for (int r = 0; r < RQ; ++r) {
          const int64_t i = q0 + warp * RQ + r;
          if (i >= Tq) continue;
          float* dst = dq_acc + (b * Tq + i) * HP + h * P;
#pragma unroll
          for (int c = 0; c < C::kDims; ++c)
            if (lane + 32 * c < P) atomicAdd(dst + lane + 32 * c, dq_r[r][c]);
        }
      }
    }
  }

  // This block is the only one to see keys [k0, k0 + 64) of (b, hk): dK and dV are final.
#pragma unroll
  for (int r = 0; r < RK; ++r) {
    const int64_t j = k0 + warp * RK + r;
    if (j >= Tk) continue;
    float* dkr = dk + (b * Tk + j) * s.kv_stride + hk * P;
    float* dvr = dv + (b * Tk + j) * s.kv_stride + hk * P;
#pragma unroll
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
#pragma unroll
  for (int c = 0; c < kDims; ++c) {
    qr[c] = lane + 32 * c < P ? q[h * P + lane + 32 * c] : 0.0f;
    acc[c] = 0.0f;
  }
  float m = neg_inf(), l = 0.0f;
  for (int64_t j = key_begin + warp; j < key_end; j += kDecodeWarps) {  // warp-uniform: shuffles are safe
    const float* kj = k + j * kv_stride + hk * P;
    const float* vj = v + j * kv_stride + hk * P;
    float dot = 0.0f;
#pragma unroll
    for (int c = 0; c < kDims; ++c)
      if (lane + 32 * c < P) dot += qr[c] * kj[lane + 32 * c];
    const float score = masked_score(warp_sum(dot), scale, true);
    const float alpha = online_rescale(m, score);
    const float p = online_prob(score, m);
    l = l * alpha + p;
#pragma unroll
    for (int c = 0; c < kDims; ++c) acc[c] = acc[c] * alpha + (lane + 32 * c < P ? p * vj[lane + 32 * c] : 0.0f);
  }
  if (lane == 0) {
    part_ml[(h * n_part + part) * 2] = m;
    part_ml[(h * n_part + part) * 2 + 1] = l;
  }
#pragma unroll
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

// ---------------------------------------------------------------- host side

// Opts a kernel into `bytes` of dynamic shared memory, failing clearly where the device has less.
template <class Kernel>
void set_dynamic_smem(Kernel kernel, size_t bytes, const char* name) {
  int device = 0, limit = 0;
  TXS_CUDA_CHECK(cudaGetDevice(&device));
  TXS_CUDA_CHECK(cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  if (bytes > size_t(limit))
    fail("{}: needs {} bytes of shared memory per block, the device allows {}", name, bytes, limit);
  TXS_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
}

void check_shape(const char* op, const AttentionShape& s) {
  if (s.batch < 0 || s.q_len < 0 || s.kv_len < 0)
    fail("{}: negative size (batch {}, q_len {}, kv_len {})", op, s.batch, s.q_len, s.kv_len);
  if (s.heads < 1 || s.kv_heads < 1 || s.head_dim < 1)
    fail("{}: heads {}, kv_heads {}, head_dim {} must be positive", op, s.heads, s.kv_heads, s.head_dim);
  if (s.heads % s.kv_heads != 0) fail("{}: kv_heads {} does not divide heads {}", op, s.kv_heads, s.heads);
  if (s.kv_len < s.q_len) fail("{}: kv_len {} is shorter than q_len {}", op, s.kv_len, s.q_len);
  if (s.q_stride < s.heads * s.head_dim || s.out_stride < s.heads * s.head_dim)
    fail("{}: q_stride {} / out_stride {} smaller than heads·head_dim {}", op, s.q_stride, s.out_stride,
         s.heads * s.head_dim);
  if (s.kv_stride < s.kv_heads * s.head_dim)
    fail("{}: kv_stride {} smaller than kv_heads·head_dim {}", op, s.kv_stride, s.kv_heads * s.head_dim);
  if (padded_head_dim(s.head_dim) == 0)
    fail("{}: head_dim {} is not supported on the GPU (at most 256)", op, s.head_dim);
}

// Grid size of the grid-stride helper kernels: enough blocks, never past gridDim.x's limit.
unsigned helper_blocks(int64_t items, int64_t per_block) {
  const int64_t blocks = (items + per_block - 1) / per_block;
  return unsigned(blocks < 65535 ? (blocks > 0 ? blocks : 1) : 65535);
}

template <int PT>
void forward_impl(const AttentionShape& s, const float* q, const float* k, const float* v, float* out,
                  float* lse) {
  const int64_t blocks = s.batch * s.heads * ((s.q_len + kFwdQ - 1) / kFwdQ);
  if (blocks > 0x7fffffff) fail("attention_forward: {} blocks exceed the grid limit", blocks);
  set_dynamic_smem(attention_forward_kernel<PT>, Fwd<PT>::kSmemBytes, "attention_forward");
  const float scale = 1.0f / std::sqrt(float(s.head_dim));
  attention_forward_kernel<PT><<<unsigned(blocks), Fwd<PT>::kThreads, Fwd<PT>::kSmemBytes>>>(s, q, k, v, out, lse,
                                                                                            scale);
  TXS_CUDA_LAUNCHED("attention_forward_kernel");
}

template <int PT>
void backward_impl(const AttentionShape& s, const float* q, const float* k, const float* v, const float* lse,
                   const float* D, const float* dout, float* dq_acc, float* dk, float* dv) {
  const int64_t blocks = s.batch * s.kv_heads * ((s.kv_len + kBwdK - 1) / kBwdK);
  if (blocks > 0x7fffffff) fail("attention_backward: {} blocks exceed the grid limit", blocks);
  set_dynamic_smem(attention_backward_kernel<PT>, Bwd<PT>::kSmemBytes, "attention_backward");
  const float scale = 1.0f / std::sqrt(float(s.head_dim));
  attention_backward_kernel<PT><<<unsigned(blocks), Bwd<PT>::kThreads, Bwd<PT>::kSmemBytes>>>(
      s, q, k, v, lse, D, dout, dq_acc, dk, dv, scale);
  TXS_CUDA_LAUNCHED("attention_backward_kernel");
}

template <int PT>
void decode_impl(int64_t H, int64_t Hkv, int64_t P, const float* q, const float* k, const float* v, int64_t kv_len,
                 int64_t kv_stride, float* out) {
  const int64_t keys_per_split = decode_keys_per_split(kv_len, H);
  const int64_t n_splits = decode_split_count(kv_len, keys_per_split), n_part = n_splits * kDecodeWarps;
  if (H * n_splits > 0x7fffffff || H > 0x7fffffff) fail("attention_decode: {} heads exceed the grid limit", H);
  float* part_acc = static_cast<float*>(scratch(ScratchSlot::Attention, size_t(H * n_part * PT) * sizeof(float)));
  float* part_ml = static_cast<float*>(scratch(ScratchSlot::AttentionAux, size_t(H * n_part * 2) * sizeof(float)));
  const float scale = 1.0f / std::sqrt(float(P));
  attention_decode_partial_kernel<PT><<<unsigned(H * n_splits), kDecodeWarps * kWarpSize>>>(
      H, H / Hkv, P, q, k, v, kv_len, kv_stride, keys_per_split, n_splits, scale, part_ml, part_acc);
  TXS_CUDA_LAUNCHED("attention_decode_partial_kernel");
  attention_decode_merge_kernel<PT><<<unsigned(H), 128>>>(P, n_part, part_ml, part_acc, out);
  TXS_CUDA_LAUNCHED("attention_decode_merge_kernel");
}

}  // namespace

void attention_forward(const AttentionShape& s, const float* q, const float* k, const float* v, float* out,
                       float* lse) {
  check_shape("attention_forward", s);
  if (s.batch == 0 || s.q_len == 0) return;
  switch (padded_head_dim(s.head_dim)) {
    case 64: forward_impl<64>(s, q, k, v, out, lse); break;
    case 128: forward_impl<128>(s, q, k, v, out, lse); break;
    case 192: forward_impl<192>(s, q, k, v, out, lse); break;
    default: forward_impl<256>(s, q, k, v, out, lse); break;
  }
}

void attention_backward(const AttentionShape& s, const float* q, const float* k, const float* v, const float* out,
                        const float* lse, const float* dout, float* dq, float* dk, float* dv) {
  check_shape("attention_backward", s);
  if (s.batch == 0 || s.kv_len == 0) return;
  const int64_t rows = s.batch * s.q_len, HP = s.heads * s.head_dim;
  // D and the fp32 dQ accumulator (contiguous: dq itself may be a strided column slice). With q_len = 0
  // there are no queries: the kernel still writes dK = dV = 0.
  float* D = static_cast<float*>(scratch(ScratchSlot::AttentionAux, size_t(rows * s.heads + 1) * sizeof(float)));
  float* dq_acc = static_cast<float*>(scratch(ScratchSlot::Attention, size_t(rows * HP + 1) * sizeof(float)));
  if (rows > 0) {
    TXS_CUDA_CHECK(cudaMemsetAsync(dq_acc, 0, size_t(rows * HP) * sizeof(float), 0));
    attention_row_dot_kernel<<<helper_blocks(rows * s.heads, 8), 256>>>(s, out, dout, D);
    TXS_CUDA_LAUNCHED("attention_row_dot_kernel");
  }
  switch (padded_head_dim(s.head_dim)) {
    case 64: backward_impl<64>(s, q, k, v, lse, D, dout, dq_acc, dk, dv); break;
    case 128: backward_impl<128>(s, q, k, v, lse, D, dout, dq_acc, dk, dv); break;
    case 192: backward_impl<192>(s, q, k, v, lse, D, dout, dq_acc, dk, dv); break;
    default: backward_impl<256>(s, q, k, v, lse, D, dout, dq_acc, dk, dv); break;
  }
  if (rows > 0) {
    attention_copy_dq_kernel<<<helper_blocks(rows * HP, 256), 256>>>(rows, HP, dq_acc, dq, s.q_stride);
    TXS_CUDA_LAUNCHED("attention_copy_dq_kernel");
  }
}

void attention_decode(int64_t heads, int64_t kv_heads, int64_t head_dim, const float* q, const float* k,
                      const float* v, int64_t kv_len, int64_t kv_stride, float* out) {
  if (heads <= 0 || kv_heads <= 0 || head_dim <= 0 || heads % kv_heads != 0 || kv_len < 1 ||
      kv_stride < kv_heads * head_dim)
    fail("attention_decode: bad shape H={} Hkv={} P={} kv_len={} kv_stride={}", heads, kv_heads, head_dim, kv_len,
         kv_stride);
  switch (padded_head_dim(head_dim)) {
    case 64: decode_impl<64>(heads, kv_heads, head_dim, q, k, v, kv_len, kv_stride, out); break;
    case 128: decode_impl<128>(heads, kv_heads, head_dim, q, k, v, kv_len, kv_stride, out); break;
    case 192: decode_impl<192>(heads, kv_heads, head_dim, q, k, v, kv_len, kv_stride, out); break;
    case 256: decode_impl<256>(heads, kv_heads, head_dim, q, k, v, kv_len, kv_stride, out); break;
    default: fail("attention_decode: head_dim {} is not supported on the GPU (at most 256)", head_dim);
  }
}

}  // namespace txs::cuda
