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
// Decode — flash-decoding: block = (head, split of the keys; at most ⌈kv_len/256⌉ splits, ~1024 blocks);
//   each of its 4 warps runs an online softmax over every 4th key of the split (one q·k per step, reduced by
//   shuffles) into a partial (m, l, acc[P]) in scratch; a second kernel merges a head's partials with
//   weights exp(m_part − max m). No scores are stored, so kv_len is bounded only by memory.
//
// Tile sizes: 64 × 64 score tiles give every lane two keys and keep the per-lane accumulators at ≤ 64 floats
// for PT ≤ 128 (forward acc 8 rows × PT/32; backward dK + dV 2 × 8 keys × PT/32), so no kernel spills
// (ptxas: forward 126/142/158/206 registers at PT 64/128/192/256, backward 144/238/212/254 — one 256-thread
// block per SM at PT ≥ 128, which is fine for a correctness-first kernel); larger tiles would not fit the
// backward's four PT-wide shared tiles. Shared memory above 48 KiB is opted into per kernel
// (cudaFuncAttributeMaxDynamicSharedMemorySize) after checking the device's limit.
//
// Layout: the kernels and their portable helpers are in attention_kernels.cuh; this file holds the host side
// (shape checks, head-dim dispatch, shared-memory opt-in, scratch, launches).
//
// What is verified where (tests/test_cuda_attention_math.cpp, on the host, against the CPU reference in double):
//  * the kernels of attention_kernels.cuh themselves, run under a CUDA emulation (a std::thread per CUDA
//    thread, std::barrier for __syncthreads/__syncwarp/shuffles, atomic_ref for atomicAdd, shared memory
//    poisoned with NaN) with this file's launch geometry: forward, backward and decode for head dims 40, 64,
//    128, 160, 256, GQA, q_len < kv_len, partial tiles, q_len = 0, operands as column slices (columns outside
//    the slices checked untouched). The same test built with -fsanitize=thread reports no data race (and does
//    report one when a __syncthreads is removed);
//  * a plain tile-by-tile replay of the loops with the same helpers, and an exhaustive check that the tiles
//    visit every visible (query, key) pair exactly once.
// Only a GPU can check: the launches and the shared-memory opt-in, the hardware memory model, register and
// shared-memory limits at run time, and speed (the backend conformance tests).
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

void check_gpu_shape(const char* op, const AttentionShape& s) {
  check_shape(s, op);
  if (padded_head_dim(s.head_dim) == 0)
    fail("{}: head_dim {} is not supported on the GPU (at most 256)", op, s.head_dim);
}

template <int PT>
void forward_impl(const AttentionShape& s, const float* q, const float* k, const float* v, float* out,
                  float* lse) {
  const int64_t blocks = fwd_blocks(s);
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
  const int64_t blocks = bwd_blocks(s);
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
  attention_decode_merge_kernel<PT><<<unsigned(H), kDecodeMergeThreads>>>(P, n_part, part_ml, part_acc, out);
  TXS_CUDA_LAUNCHED("attention_decode_merge_kernel");
}

}  // namespace

void attention_forward(const AttentionShape& s, const float* q, const float* k, const float* v, float* out,
                       float* lse) {
  check_gpu_shape("attention_forward", s);
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
  check_gpu_shape("attention_backward", s);
  if (s.batch == 0 || s.kv_len == 0) return;
  const int64_t rows = s.batch * s.q_len, HP = s.heads * s.head_dim;
  // D and the fp32 dQ accumulator (contiguous: dq itself may be a strided column slice). With q_len = 0
  // there are no queries: the kernel still writes dK = dV = 0.
  float* D = static_cast<float*>(scratch(ScratchSlot::AttentionAux, size_t(rows * s.heads + 1) * sizeof(float)));
  float* dq_acc = static_cast<float*>(scratch(ScratchSlot::Attention, size_t(rows * HP + 1) * sizeof(float)));
  if (rows > 0) {
    TXS_CUDA_CHECK(cudaMemsetAsync(dq_acc, 0, size_t(rows * HP) * sizeof(float), 0));
    const unsigned blocks = grid_stride_blocks(rows * s.heads, kRowDotThreads / kWarpSize);
    attention_row_dot_kernel<<<blocks, kRowDotThreads>>>(s, out, dout, D);
    TXS_CUDA_LAUNCHED("attention_row_dot_kernel");
  }
  switch (padded_head_dim(s.head_dim)) {
    case 64: backward_impl<64>(s, q, k, v, lse, D, dout, dq_acc, dk, dv); break;
    case 128: backward_impl<128>(s, q, k, v, lse, D, dout, dq_acc, dk, dv); break;
    case 192: backward_impl<192>(s, q, k, v, lse, D, dout, dq_acc, dk, dv); break;
    default: backward_impl<256>(s, q, k, v, lse, D, dout, dq_acc, dk, dv); break;
  }
  if (rows > 0) {
    const unsigned blocks = grid_stride_blocks(rows * HP, kCopyThreads);
    attention_copy_dq_kernel<<<blocks, kCopyThreads>>>(rows, HP, dq_acc, dq, s.q_stride);
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
