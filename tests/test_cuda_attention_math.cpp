// The CUDA attention kernels, run on the host, against the CPU reference (ops/cpu/attention.h, in double):
//  * the kernels themselves (src/ops/cuda/attention_kernels.cuh) under a small CUDA emulation: one std::thread
//    per CUDA thread, blocks one after another, std::barrier for __syncthreads / __syncwarp and the warp
//    shuffles, atomic_ref for atomicAdd, shared memory filled with NaN before each block — so the thread
//    mapping, the shared-memory indexing, the reductions and the strided global reads and writes are exercised,
//    with the launch geometry of attention.cu (the host launchers' few lines are replayed here);
//  * the tiling and softmax arithmetic in a plain tile-by-tile replay of the kernels' loops (fp32, the same
//    attention_kernels.cuh functions), which also checks that every visible (query, key) pair is visited once.
// What the emulation cannot show: the GPU's memory model and timing (a missing barrier may pass here), bank
// conflicts, register and shared-memory limits, and the CUDA launch calls themselves.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "core/rng.h"
#include "ops/cpu/attention.h"

// ---- CUDA emulation (just what the attention kernels use) ----
struct alignas(16) float4 {
  float x, y, z, w;
};
namespace emu {
struct Dim3 {
  unsigned x = 0, y = 0, z = 0;
};
inline thread_local Dim3 thread_idx, block_idx;
inline Dim3 block_dim, grid_dim;
// The running block: its barriers, the shuffle exchange slots and its dynamic shared memory.
struct Block {
  std::barrier<> all;
  std::vector<std::unique_ptr<std::barrier<>>> warps;
  std::vector<float> slots;
  std::vector<float4> smem;
  Block(int threads, size_t smem_bytes)
      : all(threads), slots(size_t(threads)), smem((smem_bytes + 15) / 16, float4{NAN, NAN, NAN, NAN}) {
    for (int w = 0; w < threads / 32; ++w) warps.push_back(std::make_unique<std::barrier<>>(32));
  }
};
inline Block* block = nullptr;
inline std::barrier<>& my_warp() { return *block->warps[thread_idx.x / 32]; }

// Runs `body` as the kernel of a <<<grid, threads, smem_bytes>>> launch.
inline void launch(int64_t grid, int threads, size_t smem_bytes, const std::function<void()>& body) {
  block_dim = {unsigned(threads)};
  grid_dim = {unsigned(grid)};
  for (int64_t b = 0; b < grid; ++b) {
    Block blk(threads, smem_bytes);
    block = &blk;
    std::vector<std::thread> threads_of_block;
    for (int t = 0; t < threads; ++t)
      threads_of_block.emplace_back([&body, t, b] {
        thread_idx = {unsigned(t)};
        block_idx = {unsigned(b)};
        body();
      });
    for (auto& t : threads_of_block) t.join();
    block = nullptr;
  }
}
}  // namespace emu

#define TXS_CUDA_EMULATION 1
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define threadIdx (::emu::thread_idx)
#define blockIdx (::emu::block_idx)
#define blockDim (::emu::block_dim)
#define gridDim (::emu::grid_dim)
#define TXS_ATTN_DYNAMIC_SMEM(name) float4* name = ::emu::block->smem.data()
inline void __syncthreads() { emu::block->all.arrive_and_wait(); }
inline void __syncwarp() { emu::my_warp().arrive_and_wait(); }
inline float __shfl_xor_sync(unsigned, float v, int lane_mask) {
  const unsigned t = emu::thread_idx.x;
  emu::block->slots[t] = v;
  emu::my_warp().arrive_and_wait();
  const float other = emu::block->slots[(t & ~31u) | ((t & 31u) ^ unsigned(lane_mask))];
  emu::my_warp().arrive_and_wait();  // nobody overwrites a slot before every lane has read
  return other;
}
inline float atomicAdd(float* p, float v) { return std::atomic_ref<float>(*p).fetch_add(v); }

#include "ops/cuda/attention_kernels.cuh"

namespace {

using txs::AttentionShape;
using namespace txs::cuda::attn;

struct Case {
  int64_t B, Tq, Tk, H, Hkv, P;
};

AttentionShape shape_of(const Case& c) {
  AttentionShape s;
  s.batch = c.B;
  s.q_len = c.Tq;
  s.kv_len = c.Tk;
  s.heads = c.H;
  s.kv_heads = c.Hkv;
  s.head_dim = c.P;
  s.q_stride = c.H * c.P + 3;  // operands are column slices of wider rows
  s.kv_stride = c.Hkv * c.P + 5;
  s.out_stride = c.H * c.P + 1;
  return s;
}

std::vector<double> random_vector(txs::Rng& rng, int64_t n) {
  std::vector<double> v(static_cast<size_t>(n));
  for (auto& x : v) x = rng.normal();
  return v;
}
std::vector<float> to_float(const std::vector<double>& v) { return {v.begin(), v.end()}; }

// max |a − b| / max(max |b|, 1e-3) over the head columns of rows of width `cols` at stride `stride` (the
// floor: with one key, dq and dk are exactly zero and only rounding is left to compare); ∞ for a non-finite a.
double rel_error(const std::vector<float>& a, const std::vector<double>& b, int64_t rows, int64_t cols,
                 int64_t stride) {
  double diff = 0, ref = 1e-3;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      if (!std::isfinite(a[size_t(r * stride + c)])) return INFINITY;  // std::max would drop a NaN
      diff = std::max(diff, std::abs(double(a[size_t(r * stride + c)]) - b[size_t(r * stride + c)]));
      ref = std::max(ref, std::abs(b[size_t(r * stride + c)]));
    }
  return diff / ref;
}

// A row of a strided operand as the kernels' load_tile stages it: zero past the valid rows and past P.
float staged(const std::vector<float>& x, int64_t row, bool valid, int64_t stride, int64_t col0, int64_t p,
             int64_t P) {
  return valid && p < P ? x[size_t(row * stride + col0 + p)] : 0.0f;
}

// attention_forward_kernel's loops: blocks in launch order, each a (b, h, query tile); 64-key tiles up to
// fwd_key_end; the tile's row max, then online_rescale / online_prob / row_lse per row as the warps do.
void simulate_forward(const AttentionShape& s, const std::vector<float>& q, const std::vector<float>& k,
                      const std::vector<float>& v, std::vector<float>& out, std::vector<float>& lse,
                      std::vector<int>& out_writes) {
  const int64_t Tq = s.q_len, Tk = s.kv_len, H = s.heads, P = s.head_dim, PT = padded_head_dim(P);
  const int64_t BH = s.batch * H, n_qt = (Tq + kFwdQ - 1) / kFwdQ;
  const float scale = 1.0f / std::sqrt(float(P));
  for (int64_t x = 0; x < BH * n_qt; ++x) {
    const int64_t qt = n_qt - 1 - x / BH, bh = x % BH, b = bh / H, h = bh % H, hk = h / (H / s.kv_heads);
    const int64_t q0 = qt * kFwdQ, key_end = fwd_key_end(q0, Tq, Tk);
    std::vector<float> m(kFwdQ, neg_inf()), l(kFwdQ, 0.0f), acc(size_t(kFwdQ * PT), 0.0f);
    for (int64_t k0 = 0; k0 < key_end; k0 += kFwdK) {
      for (int64_t rr = 0; rr < kFwdQ; ++rr) {
        const int64_t i = q0 + rr;
        float sc[kFwdK], tile_max = neg_inf();
        for (int64_t jj = 0; jj < kFwdK; ++jj) {
          const int64_t j = k0 + jj;
          float dot = 0;
          for (int64_t p = 0; p < PT; ++p)
            dot += staged(q, b * Tq + i, i < Tq, s.q_stride, h * P, p, P) *
                   staged(k, b * Tk + j, j < Tk, s.kv_stride, hk * P, p, P);
          sc[jj] = masked_score(dot, scale, key_visible(i, j, Tq, Tk));
          tile_max = std::max(tile_max, sc[jj]);
        }
        const float alpha = online_rescale(m[size_t(rr)], tile_max);
        float sum = 0;
        for (int64_t p = 0; p < PT; ++p) acc[size_t(rr * PT + p)] *= alpha;
        for (int64_t jj = 0; jj < kFwdK; ++jj) {
          const int64_t j = k0 + jj;
          const float pr = online_prob(sc[jj], m[size_t(rr)]);
          sum += pr;
          for (int64_t p = 0; p < PT; ++p)
            acc[size_t(rr * PT + p)] += pr * staged(v, b * Tk + j, j < Tk, s.kv_stride, hk * P, p, P);
        }
        l[size_t(rr)] = l[size_t(rr)] * alpha + sum;
      }
    }
    for (int64_t rr = 0; rr < kFwdQ; ++rr) {
      const int64_t i = q0 + rr;
      if (i >= Tq) continue;
      for (int64_t p = 0; p < P; ++p)
        out[size_t((b * Tq + i) * s.out_stride + h * P + p)] = acc[size_t(rr * PT + p)] / l[size_t(rr)];
      lse[size_t((b * H + h) * Tq + i)] = row_lse(m[size_t(rr)], l[size_t(rr)]);
      ++out_writes[size_t((b * H + h) * Tq + i)];
    }
  }
}

// attention_row_dot_kernel, attention_backward_kernel's loops (blocks = (b, kv head, 64-key tile); group heads;
// query tiles of bwd_query_tile(PT) from bwd_query_begin), the dQ scratch and its copy into dq.
void simulate_backward(const AttentionShape& s, const std::vector<float>& q, const std::vector<float>& k,
                       const std::vector<float>& v, const std::vector<float>& out, const std::vector<float>& lse,
                       const std::vector<float>& dout, std::vector<float>& dq, std::vector<float>& dk,
                       std::vector<float>& dv, std::vector<int>& kv_writes) {
  const int64_t Tq = s.q_len, Tk = s.kv_len, H = s.heads, Hkv = s.kv_heads, P = s.head_dim, HP = H * P;
  const int64_t PT = padded_head_dim(P), kQ = bwd_query_tile(int(PT)), group = H / Hkv;
  const float scale = 1.0f / std::sqrt(float(P));
  std::vector<float> D(size_t(s.batch * H * Tq)), dq_acc(size_t(s.batch * Tq * HP), 0.0f);
  for (int64_t bt = 0; bt < s.batch * Tq; ++bt)
    for (int64_t h = 0; h < H; ++h) {
      float d = 0;
      for (int64_t p = 0; p < P; ++p)
        d += out[size_t(bt * s.out_stride + h * P + p)] * dout[size_t(bt * s.out_stride + h * P + p)];
      D[size_t(((bt / Tq) * H + h) * Tq + bt % Tq)] = d;
    }
  const int64_t n_kt = (Tk + kBwdK - 1) / kBwdK;
  for (int64_t x = 0; x < s.batch * Hkv * n_kt; ++x) {
    const int64_t kt = x % n_kt, bhk = x / n_kt, b = bhk / Hkv, hk = bhk % Hkv, k0 = kt * kBwdK;
    auto kval = [&](const std::vector<float>& t, int64_t jj, int64_t p) {
      return staged(t, b * Tk + k0 + jj, k0 + jj < Tk, s.kv_stride, hk * P, p, P);
    };
    std::vector<float> dk_loc(size_t(kBwdK * PT), 0.0f), dv_loc(size_t(kBwdK * PT), 0.0f);
    std::vector<float> Pt(size_t(kQ * kBwdK)), dSt(size_t(kQ * kBwdK));
    for (int64_t h = hk * group; h < (hk + 1) * group; ++h)
      for (int64_t q0 = bwd_query_begin(k0, Tq, Tk); q0 < Tq; q0 += kQ) {
        auto qval = [&](const std::vector<float>& t, int64_t stride, int64_t rr, int64_t p) {
          return staged(t, b * Tq + q0 + rr, q0 + rr < Tq, stride, h * P, p, P);
        };
        for (int64_t rr = 0; rr < kQ; ++rr) {
          const int64_t i = q0 + rr;
          const float L = i < Tq ? lse[size_t((b * H + h) * Tq + i)] : 0.0f;
          const float Dr = i < Tq ? D[size_t((b * H + h) * Tq + i)] : 0.0f;
          for (int64_t jj = 0; jj < kBwdK; ++jj) {
            float sc = 0, dp = 0;
            for (int64_t p = 0; p < PT; ++p) {
              sc += qval(q, s.q_stride, rr, p) * kval(k, jj, p);
              dp += qval(dout, s.out_stride, rr, p) * kval(v, jj, p);
            }
            const float pr = key_visible(i, k0 + jj, Tq, Tk) ? recomputed_prob(sc * scale, L) : 0.0f;
            Pt[size_t(rr * kBwdK + jj)] = pr;
            dSt[size_t(rr * kBwdK + jj)] = score_grad(pr, dp, Dr, scale);
          }
        }
        for (int64_t rr = 0; rr < kQ; ++rr)
          for (int64_t jj = 0; jj < kBwdK; ++jj)
            for (int64_t p = 0; p < PT; ++p) {
              dv_loc[size_t(jj * PT + p)] += Pt[size_t(rr * kBwdK + jj)] * qval(dout, s.out_stride, rr, p);
              dk_loc[size_t(jj * PT + p)] += dSt[size_t(rr * kBwdK + jj)] * qval(q, s.q_stride, rr, p);
            }
        for (int64_t rr = 0; rr < kQ && q0 + rr < Tq; ++rr)
          for (int64_t p = 0; p < P; ++p) {
            float d = 0;
            for (int64_t jj = 0; jj < kBwdK; ++jj) d += dSt[size_t(rr * kBwdK + jj)] * kval(k, jj, p);
            dq_acc[size_t((b * Tq + q0 + rr) * HP + h * P + p)] += d;
          }
      }
    for (int64_t jj = 0; jj < kBwdK && k0 + jj < Tk; ++jj) {
      for (int64_t p = 0; p < P; ++p) {
        dk[size_t((b * Tk + k0 + jj) * s.kv_stride + hk * P + p)] = dk_loc[size_t(jj * PT + p)];
        dv[size_t((b * Tk + k0 + jj) * s.kv_stride + hk * P + p)] = dv_loc[size_t(jj * PT + p)];
      }
      ++kv_writes[size_t((b * Tk + k0 + jj) * Hkv + hk)];
    }
  }
  for (int64_t e = 0; e < s.batch * Tq * HP; ++e) dq[size_t((e / HP) * s.q_stride + e % HP)] = dq_acc[size_t(e)];
}

// attention_decode_partial_kernel + attention_decode_merge_kernel: splits of decode_keys_per_split keys,
// keys dealt round-robin to kDecodeWarps partials per split, merged with merge_weight.
void simulate_decode(int64_t H, int64_t Hkv, int64_t P, const std::vector<float>& q, const std::vector<float>& k,
                     const std::vector<float>& v, int64_t kv_len, int64_t kv_stride, std::vector<float>& out) {
  const int64_t group = H / Hkv, per_split = decode_keys_per_split(kv_len, H);
  const int64_t n_splits = decode_split_count(kv_len, per_split), n_part = n_splits * kDecodeWarps;
  const float scale = 1.0f / std::sqrt(float(P));
  for (int64_t h = 0; h < H; ++h) {
    const size_t parts = static_cast<size_t>(n_part);
    std::vector<float> pm(parts), pl(parts), pacc(parts * size_t(P));
    for (int64_t split = 0; split < n_splits; ++split)
      for (int64_t w = 0; w < kDecodeWarps; ++w) {
        const int64_t part = split * kDecodeWarps + w, begin = split * per_split;
        const int64_t end = std::min(begin + per_split, kv_len);
        float m = neg_inf(), l = 0;
        std::vector<float> acc(size_t(P), 0.0f);
        for (int64_t j = begin + w; j < end; j += kDecodeWarps) {
          float dot = 0;
          for (int64_t p = 0; p < P; ++p) dot += q[size_t(h * P + p)] * k[size_t(j * kv_stride + (h / group) * P + p)];
          const float score = masked_score(dot, scale, true);
          const float alpha = online_rescale(m, score), pr = online_prob(score, m);
          l = l * alpha + pr;
          for (int64_t p = 0; p < P; ++p)
            acc[size_t(p)] = acc[size_t(p)] * alpha + pr * v[size_t(j * kv_stride + (h / group) * P + p)];
        }
        pm[size_t(part)] = m;
        pl[size_t(part)] = l;
        std::copy(acc.begin(), acc.end(), pacc.begin() + part * P);
      }
    float m_all = neg_inf(), l_all = 0;
    for (float m : pm) m_all = std::max(m_all, m);
    for (int64_t i = 0; i < n_part; ++i) l_all += merge_weight(pm[size_t(i)], m_all) * pl[size_t(i)];
    for (int64_t p = 0; p < P; ++p) {
      float o = 0;
      for (int64_t i = 0; i < n_part; ++i) o += merge_weight(pm[size_t(i)], m_all) * pacc[size_t(i * P + p)];
      out[size_t(h * P + p)] = o / l_all;
    }
  }
}

struct Inputs {
  std::vector<double> q, k, v, dout;
};
Inputs make_inputs(const AttentionShape& s, uint64_t seed) {
  txs::Rng rng(seed);
  return {random_vector(rng, s.batch * s.q_len * s.q_stride), random_vector(rng, s.batch * s.kv_len * s.kv_stride),
          random_vector(rng, s.batch * s.kv_len * s.kv_stride),
          random_vector(rng, s.batch * s.q_len * s.out_stride)};
}

// Shapes: head dims 64 and 128 (exact), 40 and 160 (zero-padded to 64 and 192; 160 takes the 32-query
// backward tile), GQA, q_len < kv_len (prefill continuing a cache), partial query and key tiles, one token.
const Case kCases[] = {
    {2, 70, 70, 4, 2, 64}, {1, 5, 133, 2, 1, 128}, {1, 130, 200, 3, 3, 40},
    {1, 65, 129, 4, 1, 160}, {2, 1, 1, 2, 2, 64}, {1, 1, 3, 2, 1, 64}, {1, 64, 64, 2, 1, 128},
};

TEST(CudaAttentionMath, ForwardTilesMatchTheCpuReference) {
  for (const Case& c : kCases) {
    SCOPED_TRACE(testing::Message() << "B" << c.B << " Tq" << c.Tq << " Tk" << c.Tk << " H" << c.H << " Hkv"
                                    << c.Hkv << " P" << c.P);
    const AttentionShape s = shape_of(c);
    const Inputs in = make_inputs(s, 7);
    std::vector<double> out_ref(size_t(c.B * c.Tq * s.out_stride), 0.0), lse_ref(size_t(c.B * c.H * c.Tq));
    txs::cpu::attention_forward<double>(s, in.q.data(), in.k.data(), in.v.data(), out_ref.data(), lse_ref.data());
    std::vector<float> out(out_ref.size(), 0.0f), lse(lse_ref.size(), 0.0f);
    std::vector<int> writes(lse_ref.size(), 0);
    simulate_forward(s, to_float(in.q), to_float(in.k), to_float(in.v), out, lse, writes);
    EXPECT_TRUE(std::all_of(writes.begin(), writes.end(), [](int w) { return w == 1; })) << "rows written once";
    EXPECT_LT(rel_error(out, out_ref, c.B * c.Tq, c.H * c.P, s.out_stride), 2e-5);
    EXPECT_LT(rel_error(lse, lse_ref, 1, int64_t(lse.size()), 1), 2e-5);
  }
}

TEST(CudaAttentionMath, BackwardTilesMatchTheCpuReference) {
  for (const Case& c : kCases) {
    SCOPED_TRACE(testing::Message() << "B" << c.B << " Tq" << c.Tq << " Tk" << c.Tk << " H" << c.H << " Hkv"
                                    << c.Hkv << " P" << c.P);
    const AttentionShape s = shape_of(c);
    const Inputs in = make_inputs(s, 11);
    std::vector<double> out(size_t(c.B * c.Tq * s.out_stride), 0.0), lse(size_t(c.B * c.H * c.Tq));
    txs::cpu::attention_forward<double>(s, in.q.data(), in.k.data(), in.v.data(), out.data(), lse.data());
    std::vector<double> dq_ref(in.q.size(), 0.0), dk_ref(in.k.size(), 0.0), dv_ref(in.v.size(), 0.0);
    txs::cpu::attention_backward<double>(s, in.q.data(), in.k.data(), in.v.data(), out.data(), lse.data(),
                                         in.dout.data(), dq_ref.data(), dk_ref.data(), dv_ref.data());
    std::vector<float> dq(dq_ref.size(), NAN), dk(dk_ref.size(), NAN), dv(dv_ref.size(), NAN);
    std::vector<int> writes(size_t(c.B * c.Tk * c.Hkv), 0);
    simulate_backward(s, to_float(in.q), to_float(in.k), to_float(in.v), to_float(out), to_float(lse),
                      to_float(in.dout), dq, dk, dv, writes);
    EXPECT_TRUE(std::all_of(writes.begin(), writes.end(), [](int w) { return w == 1; })) << "dK/dV rows written once";
    EXPECT_LT(rel_error(dq, dq_ref, c.B * c.Tq, c.H * c.P, s.q_stride), 1e-4);
    EXPECT_LT(rel_error(dk, dk_ref, c.B * c.Tk, c.Hkv * c.P, s.kv_stride), 1e-4);
    EXPECT_LT(rel_error(dv, dv_ref, c.B * c.Tk, c.Hkv * c.P, s.kv_stride), 1e-4);
  }
}

// No queries (q_len 0, a cache but nothing new): dK and dV are still written, as zeros.
TEST(CudaAttentionMath, BackwardWithoutQueriesWritesZeroKeyGradients) {
  const AttentionShape s = shape_of({1, 0, 70, 2, 1, 64});
  const Inputs in = make_inputs(s, 3);
  std::vector<float> dq, dk(in.k.size(), NAN), dv(in.v.size(), NAN);
  std::vector<int> writes(70, 0);
  simulate_backward(s, {}, to_float(in.k), to_float(in.v), {}, {}, {}, dq, dk, dv, writes);
  for (int64_t j = 0; j < 70; ++j)
    for (int64_t p = 0; p < 64; ++p) {
      ASSERT_EQ(dk[size_t(j * s.kv_stride + p)], 0.0f);
      ASSERT_EQ(dv[size_t(j * s.kv_stride + p)], 0.0f);
    }
}

// Every causally visible (query, key) pair is visited exactly once by the forward's tiles and exactly once
// per query head by the backward's, over many tile-boundary cases (sizes 1, 63, 64, 65, ...).
TEST(CudaAttentionMath, TilesCoverEveryVisiblePairOnce) {
  const int64_t sizes[] = {1, 2, 31, 63, 64, 65, 127, 128, 129, 200};
  for (int64_t Tq : sizes)
    for (int64_t Tk : sizes) {
      if (Tk < Tq) continue;
      std::vector<int> fwd(size_t(Tq * Tk), 0);
      for (int64_t q0 = 0; q0 < Tq; q0 += kFwdQ)
        for (int64_t k0 = 0; k0 < fwd_key_end(q0, Tq, Tk); k0 += kFwdK)
          for (int64_t i = q0; i < q0 + kFwdQ; ++i)
            for (int64_t j = k0; j < k0 + kFwdK; ++j)
              if (key_visible(i, j, Tq, Tk)) ++fwd[size_t(i * Tk + j)];
      for (int kQ : {bwd_query_tile(128), bwd_query_tile(256)}) {
        std::vector<int> bwd(size_t(Tq * Tk), 0);
        for (int64_t k0 = 0; k0 < Tk; k0 += kBwdK)
          for (int64_t q0 = bwd_query_begin(k0, Tq, Tk); q0 < Tq; q0 += kQ)
            for (int64_t i = q0; i < q0 + kQ; ++i)
              for (int64_t j = k0; j < k0 + kBwdK; ++j)
                if (key_visible(i, j, Tq, Tk)) ++bwd[size_t(i * Tk + j)];
        for (int64_t i = 0; i < Tq; ++i)
          for (int64_t j = 0; j < Tk; ++j) {
            const int expected = j <= i + (Tk - Tq) ? 1 : 0;
            ASSERT_EQ(fwd[size_t(i * Tk + j)], expected) << "Tq " << Tq << " Tk " << Tk << " i " << i << " j " << j;
            ASSERT_EQ(bwd[size_t(i * Tk + j)], expected) << "Tq " << Tq << " Tk " << Tk << " i " << i << " j " << j;
          }
      }
    }
}

TEST(CudaAttentionMath, DecodeSplitsMatchTheCpuReference) {
  struct DecodeCase {
    int64_t H, Hkv, P, kv_len;
  };
  // One key; fewer keys than warps; a single split; many splits with a short last one (1 head: up to 1024).
  for (const DecodeCase& c : {DecodeCase{4, 2, 64, 1}, DecodeCase{2, 1, 128, 3}, DecodeCase{8, 8, 64, 250},
                              DecodeCase{1, 1, 96, 70001}, DecodeCase{16, 4, 128, 5000}}) {
    SCOPED_TRACE(testing::Message() << "H" << c.H << " Hkv" << c.Hkv << " P" << c.P << " kv_len" << c.kv_len);
    const int64_t kv_stride = c.Hkv * c.P + 7;
    txs::Rng rng(5);
    const std::vector<double> q = random_vector(rng, c.H * c.P), k = random_vector(rng, c.kv_len * kv_stride),
                              v = random_vector(rng, c.kv_len * kv_stride);
    std::vector<double> ref(size_t(c.H * c.P));
    txs::cpu::attention_decode<double>(c.H, c.Hkv, c.P, q.data(), k.data(), v.data(), c.kv_len, kv_stride,
                                       ref.data());
    std::vector<float> out(ref.size(), NAN);
    simulate_decode(c.H, c.Hkv, c.P, to_float(q), to_float(k), to_float(v), c.kv_len, kv_stride, out);
    EXPECT_LT(rel_error(out, ref, 1, int64_t(ref.size()), 1), 2e-5);
  }
}

TEST(CudaAttentionMath, DecodePartitionCoversTheKeysWithoutEmptySplits) {
  for (int64_t H : {1, 3, 16, 2000})
    for (int64_t kv_len : {1, 255, 256, 257, 100000, 300001}) {
      const int64_t per = decode_keys_per_split(kv_len, H), n = decode_split_count(kv_len, per);
      EXPECT_GE(per, 1);
      EXPECT_GE(n * per, kv_len);
      EXPECT_LT((n - 1) * per, kv_len) << "last split non-empty";
      EXPECT_LE(n, std::max<int64_t>(1, kDecodeTargetBlocks / H));
    }
}

TEST(CudaAttentionMath, SoftmaxStepsNeverMakeNaN) {
  float m = neg_inf();
  EXPECT_EQ(online_rescale(m, neg_inf()), 1.0f);  // a row that has seen only masked keys
  EXPECT_EQ(m, neg_inf());
  EXPECT_EQ(online_prob(neg_inf(), m), 0.0f);
  EXPECT_EQ(online_rescale(m, 2.0f), 0.0f);  // first visible key: the empty past weighs nothing
  EXPECT_EQ(m, 2.0f);
  EXPECT_FLOAT_EQ(online_rescale(m, 1.0f), 1.0f);  // a lower tile max keeps m
  EXPECT_FLOAT_EQ(online_rescale(m, 3.0f), std::exp(-1.0f));
  EXPECT_EQ(merge_weight(neg_inf(), 3.0f), 0.0f);
  EXPECT_EQ(padded_head_dim(64), 64);
  EXPECT_EQ(padded_head_dim(65), 128);
  EXPECT_EQ(padded_head_dim(256), 256);
  EXPECT_EQ(padded_head_dim(257), 0);
}

// ---- The kernels under emulation ----

// The launches of attention.cu's forward_impl / backward_impl / decode_impl, for one padded head dim.
template <int PT>
void emulated_forward(const AttentionShape& s, const float* q, const float* k, const float* v, float* out,
                      float* lse) {
  const float scale = 1.0f / std::sqrt(float(s.head_dim));
  emu::launch(fwd_blocks(s), Fwd<PT>::kThreads, Fwd<PT>::kSmemBytes,
              [&] { attention_forward_kernel<PT>(s, q, k, v, out, lse, scale); });
}
template <int PT>
void emulated_backward(const AttentionShape& s, const float* q, const float* k, const float* v, const float* out,
                       const float* lse, const float* dout, float* dq, float* dk, float* dv) {
  const int64_t rows = s.batch * s.q_len, HP = s.heads * s.head_dim;
  std::vector<float> D(size_t(rows * s.heads + 1), NAN), dq_acc(size_t(rows * HP + 1), 0.0f);
  const float scale = 1.0f / std::sqrt(float(s.head_dim));
  if (rows > 0)
    emu::launch(grid_stride_blocks(rows * s.heads, kRowDotThreads / kWarpSize), kRowDotThreads, 0,
                [&] { attention_row_dot_kernel(s, out, dout, D.data()); });
  emu::launch(bwd_blocks(s), Bwd<PT>::kThreads, Bwd<PT>::kSmemBytes, [&] {
    attention_backward_kernel<PT>(s, q, k, v, lse, D.data(), dout, dq_acc.data(), dk, dv, scale);
  });
  if (rows > 0)
    emu::launch(grid_stride_blocks(rows * HP, kCopyThreads), kCopyThreads, 0,
                [&] { attention_copy_dq_kernel(rows, HP, dq_acc.data(), dq, s.q_stride); });
}
template <int PT>
void emulated_decode(int64_t H, int64_t Hkv, int64_t P, const float* q, const float* k, const float* v,
                     int64_t kv_len, int64_t kv_stride, float* out) {
  const int64_t per_split = decode_keys_per_split(kv_len, H);
  const int64_t n_splits = decode_split_count(kv_len, per_split), n_part = n_splits * kDecodeWarps;
  std::vector<float> part_acc(size_t(H * n_part * PT), NAN), part_ml(size_t(H * n_part * 2), NAN);
  const float scale = 1.0f / std::sqrt(float(P));
  emu::launch(H * n_splits, kDecodeWarps * kWarpSize, 0, [&] {
    attention_decode_partial_kernel<PT>(H, H / Hkv, P, q, k, v, kv_len, kv_stride, per_split, n_splits, scale,
                                        part_ml.data(), part_acc.data());
  });
  emu::launch(H, kDecodeMergeThreads, 0,
              [&] { attention_decode_merge_kernel<PT>(P, n_part, part_ml.data(), part_acc.data(), out); });
}

// The kernels' operands are column slices: `lead` columns into rows of stride lead + width + 3.
struct Sliced {
  AttentionShape s;
  int64_t lead = 2;
};
Sliced sliced_shape(const Case& c) {
  Sliced x;
  x.s = shape_of(c);
  x.s.q_stride = x.lead + c.H * c.P + 3;
  x.s.kv_stride = x.lead + c.Hkv * c.P + 3;
  x.s.out_stride = x.lead + c.H * c.P + 4;
  return x;
}

constexpr float kSentinel = -777.0f;  // outside the slices: must survive

// Checks the slice [lead, lead + cols) of each row against the reference and everything else for the sentinel.
void expect_slice(const std::vector<float>& got, const std::vector<double>& ref, int64_t rows, int64_t cols,
                  int64_t stride, int64_t lead, double tol, const char* what) {
  double diff = 0, scale = 1e-2;  // floor: with one key dq = dk = 0 exactly, and only rounding is left
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < stride; ++c) {
      const float g = got[size_t(r * stride + c)];
      if (c < lead || c >= lead + cols) {
        ASSERT_EQ(g, kSentinel) << what << " written outside its slice at row " << r << " column " << c;
        continue;
      }
      ASSERT_TRUE(std::isfinite(g)) << what << " row " << r << " column " << c;
      diff = std::max(diff, std::abs(double(g) - ref[size_t(r * stride + c)]));
      scale = std::max(scale, std::abs(ref[size_t(r * stride + c)]));
    }
  EXPECT_LT(diff / scale, tol) << what;
}

// fn<PT>(args...) for head dim P, as attention.cu's switches dispatch.
#define TXS_DISPATCH_PT(P, fn, ...)                        \
  switch (padded_head_dim(P)) {                            \
    case 64: fn<64>(__VA_ARGS__); break;                   \
    case 128: fn<128>(__VA_ARGS__); break;                 \
    case 192: fn<192>(__VA_ARGS__); break;                 \
    case 256: fn<256>(__VA_ARGS__); break;                 \
    default: FAIL() << "head dim " << P << " unsupported"; \
  }

// Head dims 64, 128 (exact), 160 → 192 (32-query backward tiles), 256, 40 → 64; GQA; q_len < kv_len; partial
// tiles; one token; and q_len = 0 (a cache but no queries: dK = dV = 0).
const Case kEmulatedCases[] = {
    {2, 70, 70, 4, 2, 64}, {1, 5, 133, 2, 1, 128}, {1, 65, 129, 4, 1, 160},
    {1, 33, 40, 2, 2, 256}, {1, 20, 90, 3, 1, 40},  {2, 1, 1, 2, 2, 64}, {1, 0, 70, 2, 1, 64},
};

TEST(CudaAttentionKernelsEmulated, ForwardAndBackwardMatchTheCpuReference) {
  for (const Case& c : kEmulatedCases) {
    SCOPED_TRACE(testing::Message() << "B" << c.B << " Tq" << c.Tq << " Tk" << c.Tk << " H" << c.H << " Hkv"
                                    << c.Hkv << " P" << c.P);
    const Sliced x = sliced_shape(c);
    const AttentionShape& s = x.s;
    const Inputs in = make_inputs(s, 17);
    std::vector<double> out_ref(size_t(c.B * c.Tq * s.out_stride), 0.0), lse_ref(size_t(c.B * c.H * c.Tq) + 1);
    std::vector<double> dq_ref(in.q.size(), 0.0), dk_ref(in.k.size(), 0.0), dv_ref(in.v.size(), 0.0);
    txs::cpu::attention_forward<double>(s, in.q.data() + x.lead, in.k.data() + x.lead, in.v.data() + x.lead,
                                        out_ref.data() + x.lead, lse_ref.data());
    txs::cpu::attention_backward<double>(s, in.q.data() + x.lead, in.k.data() + x.lead, in.v.data() + x.lead,
                                         out_ref.data() + x.lead, lse_ref.data(), in.dout.data() + x.lead,
                                         dq_ref.data() + x.lead, dk_ref.data() + x.lead, dv_ref.data() + x.lead);

    const std::vector<float> q = to_float(in.q), k = to_float(in.k), v = to_float(in.v), dout = to_float(in.dout);
    std::vector<float> out(out_ref.size(), kSentinel), lse(lse_ref.size(), kSentinel);
    TXS_DISPATCH_PT(c.P, emulated_forward, s, q.data() + x.lead, k.data() + x.lead, v.data() + x.lead,
                                          out.data() + x.lead, lse.data());
    expect_slice(out, out_ref, c.B * c.Tq, c.H * c.P, s.out_stride, x.lead, 2e-5, "out");
    expect_slice(lse, lse_ref, 1, c.B * c.H * c.Tq, int64_t(lse.size()), 0, 2e-5, "lse");

    std::vector<float> dq(dq_ref.size(), kSentinel), dk(dk_ref.size(), kSentinel), dv(dv_ref.size(), kSentinel);
    const std::vector<float> outf = to_float(out_ref), lsef = to_float(lse_ref);
    TXS_DISPATCH_PT(c.P, emulated_backward, s, q.data() + x.lead, k.data() + x.lead, v.data() + x.lead,
                                           outf.data() + x.lead, lsef.data(), dout.data() + x.lead,
                                           dq.data() + x.lead, dk.data() + x.lead, dv.data() + x.lead);
    expect_slice(dq, dq_ref, c.B * c.Tq, c.H * c.P, s.q_stride, x.lead, 1e-4, "dq");
    expect_slice(dk, dk_ref, c.B * c.Tk, c.Hkv * c.P, s.kv_stride, x.lead, 1e-4, "dk");
    expect_slice(dv, dv_ref, c.B * c.Tk, c.Hkv * c.P, s.kv_stride, x.lead, 1e-4, "dv");
  }
}

TEST(CudaAttentionKernelsEmulated, DecodeMatchesTheCpuReference) {
  struct DecodeCase {
    int64_t H, Hkv, P, kv_len;
  };
  // One key; fewer keys than warps; several splits with a short last one; head dims 40, 128, 256; GQA.
  for (const DecodeCase& c : {DecodeCase{4, 2, 64, 1}, DecodeCase{2, 1, 128, 3}, DecodeCase{3, 3, 40, 700},
                              DecodeCase{1, 1, 256, 1100}, DecodeCase{8, 2, 128, 300}}) {
    SCOPED_TRACE(testing::Message() << "H" << c.H << " Hkv" << c.Hkv << " P" << c.P << " kv_len" << c.kv_len);
    const int64_t lead = 1, kv_stride = lead + c.Hkv * c.P + 3;
    txs::Rng rng(23);
    const std::vector<double> q = random_vector(rng, c.H * c.P), k = random_vector(rng, c.kv_len * kv_stride),
                              v = random_vector(rng, c.kv_len * kv_stride);
    std::vector<double> ref(size_t(c.H * c.P));
    txs::cpu::attention_decode<double>(c.H, c.Hkv, c.P, q.data(), k.data() + lead, v.data() + lead, c.kv_len,
                                       kv_stride, ref.data());
    const std::vector<float> qf = to_float(q), kf = to_float(k), vf = to_float(v);
    std::vector<float> out(ref.size(), kSentinel);
    TXS_DISPATCH_PT(c.P, emulated_decode, c.H, c.Hkv, c.P, qf.data(), kf.data() + lead, vf.data() + lead, c.kv_len,
                                         kv_stride, out.data());
    expect_slice(out, ref, 1, c.H * c.P, c.H * c.P, 0, 2e-5, "out");
  }
}

}  // namespace
