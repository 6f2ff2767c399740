// Causal flash attention on CPU (layout and alignment in attention.h).
//
// Forward, for each (batch row b, query head h, tile of kFwdQ queries), with m and l running per query row:
//   for each tile of keys that some query of the tile can see:
//     S    = scale · Q Kᵀ                                   (gemm, kFwdQ × kFwdK, never T × T)
//     m'   = max(m, rowmax S);  α = exp(m − m')
//     Pt   = exp(S − m') (0 where masked);  l = α·l + rowsum Pt
//     acc  = α·acc + Pt V                                    (gemm)
//   out = acc / l,  lse = m + log l  (saved for the backward pass).
//
// Backward (FlashAttention-2 style), D_i = Σ_p dout_ip · out_ip, scores recomputed from q, k and lse:
//   Pt = exp(scale · Q Kᵀ − lse),  dP = dO Vᵀ,  dS = Pt ⊙ (dP − D)
//   dV += Ptᵀ dO,  dK += scale · dSᵀ Q,  dQ += scale · dS K.
// The loop runs key tiles outside and query tiles inside, so dK and dV of a key tile stay in a small local
// accumulator. One task owns a (batch row, kv head): it sums the dK/dV contributions of every query head of
// its group itself, and it is the only writer of those heads' dQ columns — no races, no atomics. When there are
// too few (batch, kv head) pairs to feed the threads, each pair's key tiles are dealt out to `split` tasks that
// add their dQ into private partial buffers, summed afterwards.
#include "ops/cpu/attention.h"

#include <omp.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>

#include "core/buffer.h"
#include "core/error.h"
#include "ops/cpu/gemm.h"

namespace txs::cpu {
namespace {

// Tile sizes (rows of queries × rows of keys). At head_dim 64–128 these give gemms big enough for the
// fp32 kernels to run near their best while a score tile (128 KB at 128 × 256 fp32) stays in L2.
constexpr int64_t kFwdQ = 128, kFwdK = 256;
constexpr int64_t kBwdQ = 128, kBwdK = 128;

void check_shape(const AttentionShape& s, const void* a, const void* b, const void* c, const void* d,
                 const void* e) {
  if (s.batch < 0 || s.q_len < 0 || s.kv_len < 0) fail("attention: negative size (batch {}, q_len {}, kv_len {})",
                                                       s.batch, s.q_len, s.kv_len);
  if (s.heads < 1 || s.kv_heads < 1 || s.head_dim < 1)
    fail("attention: heads {}, kv_heads {}, head_dim {} must be positive", s.heads, s.kv_heads, s.head_dim);
  if (s.heads % s.kv_heads != 0) fail("attention: kv_heads {} does not divide heads {}", s.kv_heads, s.heads);
  if (s.kv_len < s.q_len) fail("attention: kv_len {} is shorter than q_len {}", s.kv_len, s.q_len);
  if (s.q_stride < s.heads * s.head_dim || s.out_stride < s.heads * s.head_dim)
    fail("attention: q_stride {} / out_stride {} smaller than heads·head_dim {}", s.q_stride, s.out_stride,
         s.heads * s.head_dim);
  if (s.kv_stride < s.kv_heads * s.head_dim)
    fail("attention: kv_stride {} smaller than kv_heads·head_dim {}", s.kv_stride, s.kv_heads * s.head_dim);
  const bool empty = s.batch == 0 || s.kv_len == 0;
  if (!empty && (!a || !b || !c || !d || !e)) fail("attention: null tensor pointer");
}

// exp(x) on the fp32 path. glibc's expf does not vectorise without -ffast-math and would cost more than the
// tile products, so: x = n·ln2 + r with |r| ≤ ln2/2, e^r by its Taylor series to degree 7 (error ~5e-9, below
// fp32 rounding), 2^n put straight into the exponent bits. Inputs here are ≤ ~0 (scores minus their max or
// their lse); x is clamped to [−87, 88] so 2^n stays a normal float. Masked entries are zeroed by the callers,
// not through this function.
inline float exp_fast(float x) {
  x = std::min(std::max(x, -87.0f), 88.0f);
  // Adding 1.5·2^23 rounds x·log2(e) to an integer that lands in the low mantissa bits.
  const float shifter = 12582912.0f;
  const float t = x * 1.44269504088896341f + shifter;
  const float n = t - shifter;
  const int32_t ni = std::bit_cast<int32_t>(t) - std::bit_cast<int32_t>(shifter);
  const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;  // ln2 split in two for an exact n·ln2_hi
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  return p * std::bit_cast<float>((ni + 127) << 23);
}
// The fp64 path exists for gradient checks: exactness matters there, not speed.
inline double exp_fast(double x) { return std::exp(x); }

}  // namespace

template <class T>
void attention_forward(const AttentionShape& s, const T* q, const T* k, const T* v, T* out, T* lse) {
  check_shape(s, q, k, v, out, lse);
  const int64_t B = s.batch, Tq = s.q_len, Tk = s.kv_len, H = s.heads, P = s.head_dim;
  const int64_t group = H / s.kv_heads, offset = Tk - Tq;  // query t sees keys 0 .. t + offset
  const T scale = T(1) / std::sqrt(T(P));
  const int64_t n_qt = (Tq + kFwdQ - 1) / kFwdQ;
  const int64_t n_tasks = B * H * n_qt;
  if (n_tasks == 0) return;

#pragma omp parallel
  {
    static thread_local Buffer<T> work;
    work.resize(kFwdQ * kFwdK + kFwdQ * P + 2 * kFwdQ);
    T* S = work.data();           // [kFwdQ, kFwdK] scores, then probabilities
    T* acc = S + kFwdQ * kFwdK;   // [kFwdQ, P] unnormalised output
    T* m = acc + kFwdQ * P;       // running row max
    T* l = m + kFwdQ;             // running row sum of exp(S − m)

    // Query tiles further down see more keys: hand those out first so the last tasks are short ones.
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < n_tasks; ++task) {
      const int64_t qt = n_qt - 1 - task / (B * H), b = (task % (B * H)) / H, h = task % H;
      const int64_t q0 = qt * kFwdQ, nq = std::min(kFwdQ, Tq - q0);
      const int64_t key_end = q0 + nq + offset;  // keys [0, key_end) are visible to some row of the tile
      const T* Q = q + (b * Tq + q0) * s.q_stride + h * P;
      const T* K = k + b * Tk * s.kv_stride + (h / group) * P;
      const T* V = v + b * Tk * s.kv_stride + (h / group) * P;

      std::fill(acc, acc + nq * P, T(0));
      std::fill(m, m + nq, -std::numeric_limits<T>::infinity());
      std::fill(l, l + nq, T(0));
      for (int64_t k0 = 0; k0 < key_end; k0 += kFwdK) {
        const int64_t nk = std::min(kFwdK, key_end - k0);
        gemm<T>(false, true, nq, nk, P, scale, Q, s.q_stride, K + k0 * s.kv_stride, s.kv_stride, T(0), S, kFwdK);
        for (int64_t r = 0; r < nq; ++r) {
          T* Sr = S + r * kFwdK;
          // Row r (query q0 + r) sees keys up to q0 + r + offset: the first `valid` columns of this tile.
          const int64_t valid = std::clamp<int64_t>(q0 + r + offset + 1 - k0, 0, nk);
          T mx = m[r];
#pragma omp simd reduction(max : mx)
          for (int64_t j = 0; j < valid; ++j) mx = Sr[j] > mx ? Sr[j] : mx;  // (std::max does not vectorise)
          T sum = 0;
#pragma omp simd reduction(+ : sum)
          for (int64_t j = 0; j < valid; ++j) {
            Sr[j] = exp_fast(Sr[j] - mx);
            sum += Sr[j];
          }
          std::fill(Sr + valid, Sr + nk, T(0));
          if (valid == 0) continue;
          if (mx != m[r]) {  // the running max moved: rescale what was accumulated under the old one
            const T alpha = std::exp(m[r] - mx);  // exp(−inf) = 0 on the first tile
            T* Ar = acc + r * P;
            for (int64_t p = 0; p < P; ++p) Ar[p] *= alpha;
            l[r] *= alpha;
            m[r] = mx;
          }
          l[r] += sum;
        }
        gemm<T>(false, false, nq, P, nk, T(1), S, kFwdK, V + k0 * s.kv_stride, s.kv_stride, T(1), acc, P);
      }
      for (int64_t r = 0; r < nq; ++r) {
        T* O = out + (b * Tq + q0 + r) * s.out_stride + h * P;
        const T inv = T(1) / l[r];
        for (int64_t p = 0; p < P; ++p) O[p] = acc[r * P + p] * inv;
        lse[(b * H + h) * Tq + q0 + r] = m[r] + std::log(l[r]);
      }
    }
  }
}

template <class T>
void attention_backward(const AttentionShape& s, const T* q, const T* k, const T* v, const T* out, const T* lse,
                        const T* dout, T* dq, T* dk, T* dv) {
  check_shape(s, q, k, v, out, lse);
  check_shape(s, dout, dq, dk, dv, dv);
  const int64_t B = s.batch, Tq = s.q_len, Tk = s.kv_len, H = s.heads, Hkv = s.kv_heads, P = s.head_dim;
  const int64_t group = H / Hkv, GP = group * P, offset = Tk - Tq;
  const T scale = T(1) / std::sqrt(T(P));
  if (B == 0 || Tk == 0) return;

  // D [B, H, Tq] = rowsum(dout ⊙ out): the softmax Jacobian term shared by every key of a query.
  static thread_local Buffer<T> D_buf, dq_part;
  D_buf.resize(B * H * Tq);
  T* D = D_buf.data();
#pragma omp parallel for schedule(static)
  for (int64_t bt = 0; bt < B * Tq; ++bt) {
    const int64_t b = bt / Tq, t = bt % Tq;
    for (int64_t h = 0; h < H; ++h) {
      const T* O = out + bt * s.out_stride + h * P;
      const T* dO = dout + bt * s.out_stride + h * P;
      T d = 0;
#pragma omp simd reduction(+ : d)
      for (int64_t p = 0; p < P; ++p) d += O[p] * dO[p];
      D[(b * H + h) * Tq + t] = d;
    }
  }

  // Tasks: (batch row, kv head) units, each cut into `split` interleaved sets of key tiles when there are
  // too few units to keep every thread busy (e.g. batch 1 with a single kv head).
  const int64_t n_kt = (Tk + kBwdK - 1) / kBwdK;
  const int64_t units = B * Hkv, threads = omp_get_max_threads();
  int64_t split = 1;
  if (units % threads != 0 && units < 4 * threads) split = threads / std::gcd(units, threads);
  split = std::max<int64_t>(1, std::min(split, n_kt));
  const int64_t n_tasks = units * split;
  if (split > 1) dq_part.resize(n_tasks * Tq * GP);
  T* part = dq_part.data();

#pragma omp parallel
  {
    static thread_local Buffer<T> work;
    work.resize(2 * kBwdQ * kBwdK + 2 * kBwdK * P);
    T* S = work.data();            // [kBwdQ, kBwdK] scores, then probabilities Pt
    T* dP = S + kBwdQ * kBwdK;     // [kBwdQ, kBwdK] dO Vᵀ, then dS
    T* dK = dP + kBwdQ * kBwdK;    // [kBwdK, P] accumulated over the group's heads and all queries
    T* dV = dK + kBwdK * P;

#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < n_tasks; ++task) {
      const int64_t c = task % split, unit = task / split, b = unit / Hkv, hk = unit % Hkv;
      // dQ of this group's heads: straight into dq when this task is the only one for the unit.
      T* dQ = split == 1 ? dq + b * Tq * s.q_stride + hk * GP : part + task * Tq * GP;
      const int64_t ldq = split == 1 ? s.q_stride : GP;
      for (int64_t t = 0; t < Tq; ++t) std::fill(dQ + t * ldq, dQ + t * ldq + GP, T(0));

      for (int64_t kt = c; kt < n_kt; kt += split) {
        const int64_t k0 = kt * kBwdK, nk = std::min(kBwdK, Tk - k0);
        const T* K = k + (b * Tk + k0) * s.kv_stride + hk * P;
        const T* V = v + (b * Tk + k0) * s.kv_stride + hk * P;
        std::fill(dK, dK + 2 * kBwdK * P, T(0));  // dK and dV
        // Queries before k0 − offset cannot see this tile; starting the query tiles exactly there leaves
        // no fully masked row in any of them.
        const int64_t q_first = std::max<int64_t>(0, k0 - offset);
        for (int64_t h = hk * group; h < (hk + 1) * group; ++h) {
          for (int64_t q0 = q_first; q0 < Tq; q0 += kBwdQ) {
            const int64_t nq = std::min(kBwdQ, Tq - q0);
            const T* Q = q + (b * Tq + q0) * s.q_stride + h * P;
            const T* dO = dout + (b * Tq + q0) * s.out_stride + h * P;
            const T* L = lse + (b * H + h) * Tq + q0;
            const T* Dr = D + (b * H + h) * Tq + q0;
            gemm<T>(false, true, nq, nk, P, scale, Q, s.q_stride, K, s.kv_stride, T(0), S, kBwdK);
            gemm<T>(false, true, nq, nk, P, T(1), dO, s.out_stride, V, s.kv_stride, T(0), dP, kBwdK);
            for (int64_t r = 0; r < nq; ++r) {
              T* Sr = S + r * kBwdK;
              T* dPr = dP + r * kBwdK;
              const int64_t valid = std::min(nk, q0 + r + offset + 1 - k0);  // ≥ 1 given q_first
              const T Lr = L[r], Dv = Dr[r];
#pragma omp simd
              for (int64_t j = 0; j < valid; ++j) {
                const T p = exp_fast(Sr[j] - Lr);
                Sr[j] = p;
                dPr[j] = p * (dPr[j] - Dv);
              }
              std::fill(Sr + valid, Sr + nk, T(0));
              std::fill(dPr + valid, dPr + nk, T(0));
            }
            gemm<T>(true, false, nk, P, nq, T(1), S, kBwdK, dO, s.out_stride, T(1), dV, P);
            gemm<T>(true, false, nk, P, nq, T(1), dP, kBwdK, Q, s.q_stride, T(1), dK, P);
            gemm<T>(false, false, nq, P, nk, scale, dP, kBwdK, K, s.kv_stride, T(1),
                    dQ + q0 * ldq + (h - hk * group) * P, ldq);
          }
        }
        for (int64_t r = 0; r < nk; ++r) {
          T* dKr = dk + (b * Tk + k0 + r) * s.kv_stride + hk * P;
          T* dVr = dv + (b * Tk + k0 + r) * s.kv_stride + hk * P;
          for (int64_t p = 0; p < P; ++p) {
            dKr[p] = scale * dK[r * P + p];
            dVr[p] = dV[r * P + p];
          }
        }
      }
    }

    if (split > 1) {  // sum the partial dQ of each unit's tasks
#pragma omp for schedule(static)
      for (int64_t ut = 0; ut < units * Tq; ++ut) {
        const int64_t unit = ut / Tq, t = ut % Tq, b = unit / Hkv, hk = unit % Hkv;
        T* row = dq + (b * Tq + t) * s.q_stride + hk * GP;
        std::fill(row, row + GP, T(0));
        for (int64_t c = 0; c < split; ++c) {
          const T* src = part + ((unit * split + c) * Tq + t) * GP;
          for (int64_t x = 0; x < GP; ++x) row[x] += src[x];
        }
      }
    }
  }
}

template void attention_forward<float>(const AttentionShape&, const float*, const float*, const float*, float*,
                                       float*);
template void attention_forward<double>(const AttentionShape&, const double*, const double*, const double*,
                                        double*, double*);
template void attention_backward<float>(const AttentionShape&, const float*, const float*, const float*,
                                        const float*, const float*, const float*, float*, float*, float*);
template void attention_backward<double>(const AttentionShape&, const double*, const double*, const double*,
                                         const double*, const double*, const double*, double*, double*, double*);

}  // namespace txs::cpu
