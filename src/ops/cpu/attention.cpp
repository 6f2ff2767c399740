// Causal flash attention on CPU (layout and alignment in attention.h).
//
// Forward, for each (batch row b, query head h, tile of kFwdQ queries), with m and l running per query:
//   for each tile of keys that some query of the tile can see:
//     S    = scale · Q Kᵀ                                   (a kFwdQ × kFwdK tile, never T × T)
//     m'   = max(m, rowmax S);  α = exp(m − m')
//     Pt   = exp(S − m') (0 where masked);  l = α·l + rowsum Pt
//     acc  = α·acc + Pt V
//   out = acc / l,  lse = m + log l  (saved for the backward pass).
// The tile is held transposed (Sᵀ = K Qᵀ, keys × queries): Qᵀ is packed once per task and reused for every
// key tile, K is read in place, and the per-query max and sum become plain vector operations down the rows.
//
// Backward (FlashAttention-2 style), D_i = Σ_p dout_ip · out_ip, scores recomputed from q, k and lse:
//   Pt = exp(scale · Q Kᵀ − lse),  dP = dO Vᵀ,  dS = scale · Pt ⊙ (dP − D)
//   dV += Ptᵀ dO,  dK += dSᵀ Q,  dQ += dS K.
// Key tiles run outside (Kᵀ and Vᵀ packed once each) and query tiles inside, so dK and dV of a key tile stay in
// a small local accumulator. One task owns a (batch row, kv head): it sums the dK/dV contributions of every
// query head of its group itself and is the only writer of those heads' dQ columns — no races, no atomics.
// When there are too few (batch, kv head) pairs to feed the threads, each pair's key tiles are dealt out to
// `split` tasks that add their dQ into private partial buffers, summed at the end.
//
// The tile products use a small register-blocked kernel instead of txs::cpu::gemm: at these sizes (K = 64..256)
// a library sgemm spends much of its time packing and dispatching (oneDNN's sgemm measured ~105–165 GFLOP/s
// per core here against ~165–185 for the kernel below; fp32 peak is 221). The kernel broadcasts elements of A,
// so A is read in any layout (transposed tiles cost nothing); B is read as rows of whole vectors, so it is
// packed or copied once per tile, which the reuse of each tile amortises.
#include "ops/cpu/attention.h"
#include "ops/cpu/vec_exp.h"

#include <omp.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>

#include "core/buffer.h"
#include "core/error.h"

namespace txs::cpu {
namespace {

// ---- Vector tile products ----

// One cache line of T (16 floats / 8 doubles) as a GCC/Clang vector: one zmm register with AVX-512, two ymm
// with AVX2, plain scalars elsewhere.
template <class T>
struct Simd {
  typedef T V __attribute__((vector_size(64)));
  static constexpr int64_t L = 64 / sizeof(T);  // lanes
  static constexpr int64_t W = 4 * L;           // widest column block of the kernel (a "panel")
};

template <class T>
int64_t round_up(int64_t n) {
  return (n + Simd<T>::L - 1) / Simd<T>::L * Simd<T>::L;
}

// C[0:MR, 0:NV·L] (+)= A·B over k < K. A(i, k) = A[i·ars + k·acs] is broadcast; row k of B is NV vectors at
// B + k·ldb. MR·NV accumulators (24 at 6 × 4) stay in registers for the whole k loop.
template <class T, int MR, int NV>
inline void micro_tile(int64_t K, const T* A, int64_t ars, int64_t acs, const T* B, int64_t ldb, T* C, int64_t ldc,
                       bool accumulate) {
  using V = typename Simd<T>::V;
  constexpr int64_t L = Simd<T>::L;
  V c[MR][NV];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) {
      if (accumulate)
        std::memcpy(&c[i][j], C + i * ldc + j * L, sizeof(V));
      else
        c[i][j] = V{};
    }
  for (int64_t k = 0; k < K; ++k) {
    V b[NV];
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) std::memcpy(&b[j], B + k * ldb + j * L, sizeof(V));
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const T a = A[i * ars + k * acs];
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) c[i][j] += a * b[j];
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) std::memcpy(C + i * ldc + j * L, &c[i][j], sizeof(V));
}

// The causal part of a tile product. Entry (i, c) — c a column of C (on_k false) or the reduction index
// (on_k true) — is needed iff c ≤ i + d (kUpper) or c ≥ i − d (kLower). Unneeded columns of C are left
// unwritten (the caller masks them anyway); unneeded reduction terms are zeros of A, skipped exactly. This
// drops the masked half of the diagonal tiles, which is most of the work when T is a few tiles.
struct Band {
  enum Kind { kNone, kUpper, kLower } kind = kNone;
  bool on_k = false;
  int64_t d = 0;
};

// All M rows against one panel of NV vectors (columns [n0, n0 + NV·L) of C): blocks of 6 rows.
template <class T, int NV>
void panel_rows(int64_t M, int64_t K, int64_t n0, const T* A, int64_t ars, int64_t acs, const T* B, int64_t ldb,
                T* C, int64_t ldc, bool acc, const Band& band) {
  constexpr int MR = 6;  // 6 × 4 accumulators + 4 B vectors + 1 broadcast fit the 32 AVX-512 registers
  constexpr int64_t width = NV * Simd<T>::L;
  for (int64_t i0 = 0; i0 < M; i0 += MR) {
    const int64_t mr = std::min<int64_t>(MR, M - i0);
    int64_t kb = 0, ke = K;
    if (band.on_k) {
      if (band.kind == Band::kUpper) ke = std::clamp<int64_t>(i0 + mr + band.d, 0, K);
      if (band.kind == Band::kLower) kb = std::clamp<int64_t>(i0 - band.d, 0, K);
      if (kb >= ke) {
        if (acc) continue;
        ke = kb;  // nothing to add: store zeros
      }
    } else {
      if (band.kind == Band::kUpper && n0 > i0 + mr - 1 + band.d) continue;
      if (band.kind == Band::kLower && n0 + width - 1 < i0 - band.d) continue;
    }
    const T* Ai = A + i0 * ars + kb * acs;
    const T* Bk = B + kb * ldb;
    T* Ci = C + i0 * ldc;
    switch (mr) {
      case 6: micro_tile<T, 6, NV>(ke - kb, Ai, ars, acs, Bk, ldb, Ci, ldc, acc); break;
      case 5: micro_tile<T, 5, NV>(ke - kb, Ai, ars, acs, Bk, ldb, Ci, ldc, acc); break;
      case 4: micro_tile<T, 4, NV>(ke - kb, Ai, ars, acs, Bk, ldb, Ci, ldc, acc); break;
      case 3: micro_tile<T, 3, NV>(ke - kb, Ai, ars, acs, Bk, ldb, Ci, ldc, acc); break;
      case 2: micro_tile<T, 2, NV>(ke - kb, Ai, ars, acs, Bk, ldb, Ci, ldc, acc); break;
      default: micro_tile<T, 1, NV>(ke - kb, Ai, ars, acs, Bk, ldb, Ci, ldc, acc); break;
    }
  }
}

// C[M, N] (+)= A·B, N a multiple of the vector width L; C has row stride ldc. A(i, k) = A[i·ars + k·acs].
// B is read in panels of W columns: columns [n, n+W) of row k start at B + (n/W)·panel_stride + k·ldb —
// for a row-major B, ldb is its row stride and panel_stride = W; for pack_transposed's output, ldb = W and
// panel_stride = K·W.
template <class T>
void tile_product(int64_t M, int64_t N, int64_t K, const T* A, int64_t ars, int64_t acs, const T* B, int64_t ldb,
                  int64_t panel_stride, T* C, int64_t ldc, bool accumulate, const Band& band = {}) {
  constexpr int64_t L = Simd<T>::L, W = Simd<T>::W;
  for (int64_t n = 0; n < N; n += W) {
    const T* Bp = B + (n / W) * panel_stride;
    switch (std::min<int64_t>(4, (N - n) / L)) {
      case 4: panel_rows<T, 4>(M, K, n, A, ars, acs, Bp, ldb, C + n, ldc, accumulate, band); break;
      case 3: panel_rows<T, 3>(M, K, n, A, ars, acs, Bp, ldb, C + n, ldc, accumulate, band); break;
      case 2: panel_rows<T, 2>(M, K, n, A, ars, acs, Bp, ldb, C + n, ldc, accumulate, band); break;
      case 1: panel_rows<T, 1>(M, K, n, A, ars, acs, Bp, ldb, C + n, ldc, accumulate, band); break;
      default: break;
    }
  }
}

// Rows [0, n) of X (P columns, row stride ld), transposed into panels of W: panel c is a [P, W] block with
// element (p, w) = X[(c·W + w)·ld + p], zero past row n. The B operand of tile_product for X·ᵀ.
template <class T>
void pack_transposed(const T* X, int64_t ld, int64_t n, int64_t P, T* dst) {
  constexpr int64_t W = Simd<T>::W;
  for (int64_t c = 0; c * W < n; ++c) {
    T* panel = dst + c * P * W;
    const int64_t rows = std::min(W, n - c * W);
    for (int64_t w = 0; w < rows; ++w) {
      const T* x = X + (c * W + w) * ld;
      for (int64_t p = 0; p < P; ++p) panel[p * W + w] = x[p];
    }
    for (int64_t p = 0; p < P; ++p) std::fill(panel + p * W + rows, panel + p * W + W, T(0));
  }
}

// Rows [0, n) of X (P columns, row stride ld) copied contiguously with rows of round_up(P) columns, zero-
// padded: the B operand of tile_product when X's rows are its reduction dimension. Copied even when X could be
// read in place: rows one head apart in a [T, H·P] buffer sit a multiple of 4 KB apart and all fall into the
// same few L1 sets, which made the kernel wait on L2 (measured).
template <class T>
void copy_rows(const T* X, int64_t ld, int64_t n, int64_t P, T* dst) {
  const int64_t Pp = round_up<T>(P);
  for (int64_t r = 0; r < n; ++r) {
    std::copy(X + r * ld, X + r * ld + P, dst + r * Pp);
    std::fill(dst + r * Pp + P, dst + r * Pp + Pp, T(0));
  }
}

// Tile sizes. Forward: the tile of keys is the row dimension of Sᵀ, the tile of queries its columns. Backward:
// queries are the rows of S, keys its columns. 192 = 32 blocks of 6 rows = 3 panels of 64 fp32 columns, so
// full tiles have no ragged edge in the kernel; score tiles (144 KB each in fp32) stay in L2. Measured a little
// faster than 128 or 256 at T = 4096, P = 64.
constexpr int64_t kFwdQ = 192, kFwdK = 192;
constexpr int64_t kBwdQ = 192, kBwdK = 192;

void check_operands(const AttentionShape& s, const void* a, const void* b, const void* c, const void* d,
                    const void* e) {
  check_shape(s, "attention");
  const bool empty = s.batch == 0 || s.kv_len == 0;
  if (!empty && (!a || !b || !c || !d || !e)) fail("attention: null tensor pointer");
}

// Below ~2 MFLOP of work a parallel region costs more than it saves (and on busy cores a descheduled
// thread stalls the barrier for a whole time slice): run on the calling thread.
bool worth_threads(const AttentionShape& s) {
  const double pairs = double(s.q_len) * double(s.kv_len) - 0.5 * double(s.q_len) * double(s.q_len - 1);
  return 4.0 * pairs * double(s.head_dim) * double(s.heads) * double(s.batch) > 2e6;
}

}  // namespace

template <class T>
void attention_forward(const AttentionShape& s, const T* q, const T* k, const T* v, T* out, T* lse) {
  check_operands(s, q, k, v, out, lse);
  constexpr int64_t W = Simd<T>::W;
  const int64_t B = s.batch, Tq = s.q_len, Tk = s.kv_len, H = s.heads, P = s.head_dim, Pp = round_up<T>(P);
  const int64_t group = H / s.kv_heads, offset = Tk - Tq;  // query t sees keys 0 .. t + offset
  const T scale = T(1) / std::sqrt(T(P));
  const int64_t n_qt = (Tq + kFwdQ - 1) / kFwdQ;
  const int64_t n_tasks = B * H * n_qt;
  if (n_tasks == 0) return;
  static_assert(kFwdQ % W == 0 || W % kFwdQ == 0);
  const int64_t ldS = std::max(kFwdQ, W);  // row stride of Sᵀ: whole panels of queries

#pragma omp parallel if (worth_threads(s))
  {
    static thread_local Buffer<T> work;
    work.resize(ldS * P + kFwdK * ldS + kFwdK * Pp + kFwdQ * Pp + 4 * kFwdQ);
    T* Qt = work.data();       // [P, queries] Q tile transposed into panels (B operand of Sᵀ = K Qᵀ)
    T* St = Qt + ldS * P;      // [kFwdK, ldS] scores, keys × queries, then probabilities
    T* Vr = St + kFwdK * ldS;  // [kFwdK, Pp] V tile, contiguous rows
    T* acc = Vr + kFwdK * Pp;  // [kFwdQ, Pp] unnormalised output
    T* m = acc + kFwdQ * Pp;   // running max of the scaled scores, per query
    T* l = m + kFwdQ;          // running sum of exp(score − m)
    T* tile_max = l + kFwdQ;
    T* tile_sum = tile_max + kFwdQ;

    // Query tiles further down see more keys: hand those out first so the last tasks are short ones.
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < n_tasks; ++task) {
      const int64_t qt = n_qt - 1 - task / (B * H), b = (task % (B * H)) / H, h = task % H;
      const int64_t q0 = qt * kFwdQ, nq = std::min(kFwdQ, Tq - q0), nq_pad = round_up<T>(nq);
      const int64_t key_end = q0 + nq + offset;  // keys [0, key_end) are visible to some query of the tile
      const T* K = k + b * Tk * s.kv_stride + (h / group) * P;
      const T* V = v + b * Tk * s.kv_stride + (h / group) * P;
      pack_transposed(q + (b * Tq + q0) * s.q_stride + h * P, s.q_stride, nq, P, Qt);

      std::fill(acc, acc + nq * Pp, T(0));
      std::fill(m, m + nq, -std::numeric_limits<T>::infinity());
      std::fill(l, l + nq, T(0));
      for (int64_t k0 = 0; k0 < key_end; k0 += kFwdK) {
        const int64_t nk = std::min(kFwdK, key_end - k0);
        // Key k0 + r is visible to queries q0 + i with i ≥ first(r) = r − d.
        const int64_t d = q0 + offset - k0;
        auto first = [&](int64_t r) { return std::clamp<int64_t>(r - d, 0, nq); };
        // Sᵀ[key, query] = k · q (scaled below): the rows of K are broadcast straight from memory.
        tile_product<T>(nk, nq_pad, P, K + k0 * s.kv_stride, s.kv_stride, 1, Qt, W, P * W, St, ldS, false,
                        {Band::kLower, false, d});

        std::fill(tile_max, tile_max + nq, -std::numeric_limits<T>::infinity());
        for (int64_t r = 0; r < nk; ++r) {
          T* Sr = St + r * ldS;
#pragma omp simd
          for (int64_t i = first(r); i < nq; ++i) {
            Sr[i] *= scale;
            tile_max[i] = Sr[i] > tile_max[i] ? Sr[i] : tile_max[i];
          }
        }
        // New running max; what was accumulated under the old one is rescaled by α = exp(m − m').
        // Every query sees key 0, so after the first tile m is finite; on it m = −inf gives α ≈ 0 times 0.
        for (int64_t i = 0; i < nq; ++i) {
          const T mx = std::max(m[i], tile_max[i]);
          const T alpha = exp_fast(m[i] - mx);
          m[i] = mx;
          l[i] *= alpha;
          if (alpha != T(1))
            for (int64_t p = 0; p < P; ++p) acc[i * Pp + p] *= alpha;
        }
        std::fill(tile_sum, tile_sum + nq, T(0));
        for (int64_t r = 0; r < nk; ++r) {
          T* Sr = St + r * ldS;
          const int64_t f = first(r);
          std::fill(Sr, Sr + f, T(0));
#pragma omp simd
          for (int64_t i = f; i < nq; ++i) {
            Sr[i] = exp_fast(Sr[i] - m[i]);
            tile_sum[i] += Sr[i];
          }
        }
        for (int64_t i = 0; i < nq; ++i) l[i] += tile_sum[i];
        // acc[query, :] += Σ_key Pt[query, key] V[key, :], reading Pt from the transposed tile.
        copy_rows(V + k0 * s.kv_stride, s.kv_stride, nk, P, Vr);
        tile_product<T>(nq, Pp, nk, St, 1, ldS, Vr, Pp, W, acc, Pp, true, {Band::kUpper, true, d});
      }
      for (int64_t i = 0; i < nq; ++i) {
        T* O = out + (b * Tq + q0 + i) * s.out_stride + h * P;
        const T inv = T(1) / l[i];
        for (int64_t p = 0; p < P; ++p) O[p] = acc[i * Pp + p] * inv;
        lse[(b * H + h) * Tq + q0 + i] = m[i] + std::log(l[i]);
      }
    }
  }
}

template <class T>
void attention_backward(const AttentionShape& s, const T* q, const T* k, const T* v, const T* out, const T* lse,
                        const T* dout, T* dq, T* dk, T* dv) {
  check_operands(s, q, k, v, out, lse);
  check_operands(s, dout, dq, dk, dv, dv);
  constexpr int64_t W = Simd<T>::W;
  const int64_t B = s.batch, Tq = s.q_len, Tk = s.kv_len, H = s.heads, Hkv = s.kv_heads, P = s.head_dim;
  const int64_t Pp = round_up<T>(P), group = H / Hkv, GP = group * P, offset = Tk - Tq;
  const T scale = T(1) / std::sqrt(T(P));
  if (B == 0 || Tk == 0) return;
  static_assert(kBwdK % W == 0 || W % kBwdK == 0);
  const int64_t ldS = std::max(kBwdK, W);  // row stride of the score tiles: whole panels of keys
  const bool parallel = worth_threads(s);

  // D [B, H, Tq] = rowsum(dout ⊙ out): the softmax Jacobian term shared by every key of a query.
  static thread_local Buffer<T> D_buf, dq_part;
  D_buf.resize(B * H * Tq);
  T* D = D_buf.data();
#pragma omp parallel for schedule(static) if (parallel)
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
  const int64_t units = B * Hkv, threads = parallel ? omp_get_max_threads() : 1;
  int64_t split = 1;
  if (units % threads != 0 && units < 4 * threads) split = threads / std::gcd(units, threads);
  split = std::max<int64_t>(1, std::min(split, n_kt));
  const int64_t n_tasks = units * split;
  if (split > 1) dq_part.resize(n_tasks * Tq * GP);
  T* part = dq_part.data();

#pragma omp parallel if (parallel)
  {
    static thread_local Buffer<T> work;
    work.resize(2 * ldS * P + 2 * kBwdQ * ldS + 2 * kBwdK * Pp + kBwdK * Pp + 3 * kBwdQ * Pp);
    T* Kt = work.data();          // [P, keys] K tile transposed into panels (B operand of S = Q Kᵀ)
    T* Vt = Kt + ldS * P;         // same for V (dP = dO Vᵀ)
    T* S = Vt + ldS * P;          // [kBwdQ, ldS] scores, queries × keys, then probabilities Pt
    T* dP = S + kBwdQ * ldS;      // [kBwdQ, ldS] dO Vᵀ, then dS
    T* dK = dP + kBwdQ * ldS;     // [kBwdK, Pp] accumulated over the group's heads and all queries
    T* dV = dK + kBwdK * Pp;
    T* Kr = dV + kBwdK * Pp;      // contiguous copies of the K, Q and dO rows (B operands)
    T* Qr = Kr + kBwdK * Pp;
    T* dOr = Qr + kBwdQ * Pp;
    T* dQt = dOr + kBwdQ * Pp;    // [kBwdQ, Pp] this key tile's dQ, when it cannot go to dq in place

#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < n_tasks; ++task) {
      const int64_t c = task % split, unit = task / split, b = unit / Hkv, hk = unit % Hkv;
      // dQ of this group's heads: straight into dq when this task is the only one for the unit.
      T* dQ = split == 1 ? dq + b * Tq * s.q_stride + hk * GP : part + task * Tq * GP;
      const int64_t ldq = split == 1 ? s.q_stride : GP;
      for (int64_t t = 0; t < Tq; ++t) std::fill(dQ + t * ldq, dQ + t * ldq + GP, T(0));

      for (int64_t kt = c; kt < n_kt; kt += split) {
        const int64_t k0 = kt * kBwdK, nk = std::min(kBwdK, Tk - k0), nk_pad = round_up<T>(nk);
        const T* K = k + (b * Tk + k0) * s.kv_stride + hk * P;
        const T* V = v + (b * Tk + k0) * s.kv_stride + hk * P;
        pack_transposed(K, s.kv_stride, nk, P, Kt);
        pack_transposed(V, s.kv_stride, nk, P, Vt);
        copy_rows(K, s.kv_stride, nk, P, Kr);
        std::fill(dK, dK + 2 * kBwdK * Pp, T(0));  // dK and dV
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
            // Query q0 + r sees key k0 + j iff j ≤ r + d.
            const int64_t d = q0 + offset - k0;
            tile_product<T>(nq, nk_pad, P, Q, s.q_stride, 1, Kt, W, P * W, S, ldS, false, {Band::kUpper, false, d});
            tile_product<T>(nq, nk_pad, P, dO, s.out_stride, 1, Vt, W, P * W, dP, ldS, false,
                            {Band::kUpper, false, d});
            for (int64_t r = 0; r < nq; ++r) {
              T* Sr = S + r * ldS;
              T* dPr = dP + r * ldS;
              const int64_t valid = std::min(nk, r + d + 1);  // ≥ 1 given q_first
              const T Lr = L[r], Dv = Dr[r];
#pragma omp simd
              for (int64_t j = 0; j < valid; ++j) {
                const T p = exp_fast(scale * Sr[j] - Lr);
                Sr[j] = p;
                dPr[j] = scale * p * (dPr[j] - Dv);
              }
              std::fill(Sr + valid, Sr + nk, T(0));
              std::fill(dPr + valid, dPr + nk, T(0));
            }
            copy_rows(dO, s.out_stride, nq, P, dOr);
            copy_rows(Q, s.q_stride, nq, P, Qr);
            const Band lower_k{Band::kLower, true, d}, upper_k{Band::kUpper, true, d};
            tile_product<T>(nk, Pp, nq, S, 1, ldS, dOr, Pp, W, dV, Pp, true, lower_k);  // dV += Ptᵀ dO
            tile_product<T>(nk, Pp, nq, dP, 1, ldS, Qr, Pp, W, dK, Pp, true, lower_k);  // dK += dSᵀ Q
            T* dQi = dQ + q0 * ldq + (h - hk * group) * P;
            if (P % Simd<T>::L == 0) {
              tile_product<T>(nq, P, nk, dP, ldS, 1, Kr, Pp, W, dQi, ldq, true, upper_k);  // dQ += dS K
            } else {  // whole vectors would spill into the next head's columns: go through dQt
              tile_product<T>(nq, Pp, nk, dP, ldS, 1, Kr, Pp, W, dQt, Pp, false, upper_k);
              for (int64_t r = 0; r < nq; ++r)
                for (int64_t p = 0; p < P; ++p) dQi[r * ldq + p] += dQt[r * Pp + p];
            }
          }
        }
        for (int64_t r = 0; r < nk; ++r) {
          std::copy(dK + r * Pp, dK + r * Pp + P, dk + (b * Tk + k0 + r) * s.kv_stride + hk * P);
          std::copy(dV + r * Pp, dV + r * Pp + P, dv + (b * Tk + k0 + r) * s.kv_stride + hk * P);
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
