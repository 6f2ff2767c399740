// Chunked SSD scan (spec section 4), forward and backward, T = float and double.
//
// Per (batch b, head h) and chunk c of L ≤ Q tokens starting at t0, with the chunk-local log-decay
// l_i = Σ_{k≤i} Δ_k·A (inclusive cumulative sum over the chunk, in double), X = x rows of the chunk
// [L×P], B, C [L×N] (the head's group), S = S_{c−1} the state entering the chunk [P×N]:
//   intra  Y  = M·X,                 M_ij = ⟨C_i,B_j⟩·exp(l_i − l_j)·Δ_j  for j ≤ i, 0 above
//   inter  Y += diag(e)·C·Sᵀ,        e_i = exp(l_i)
//   skip   Y += D·X
//   state  S_c = α·S + Xᵀ·diag(w)·B,  α = exp(l_{L−1}),  w_j = exp(l_{L−1} − l_j)·Δ_j
// Every exponent is a difference l_i − l_j ≤ 0, so nothing overflows however long the chunk.
//
// Three phases, each parallel over independent work items:
//   1. chunk-local states Xᵀ·diag(w)·B                      items (b, h, c)
//   2. the recurrence S_c = α_c·S_{c−1} + local_c           sequential in c, items (b, h, block of S)
//   3. outputs of each chunk                                items (b, g, c): the Gram matrix C·Bᵀ of a
//      group is computed once for all heads sharing it (Mamba-2 has G = 1).
// The backward recomputes 1–2, runs the adjoint of 2 backwards in c, then differentiates 3 and the state
// equation chunk by chunk; parameter gradients (dA, dD) go through per-item partial sums that are added
// in a fixed order, so results do not depend on the thread count.
#include "ops/cpu/ssd_scan.h"

#include <omp.h>

#include <algorithm>
#include <bit>
#include <cmath>

#include "core/buffer.h"
#include "core/error.h"
#include "ops/cpu/gemm.h"
#include "ops/cpu/vec_exp.h"

namespace txs::cpu {
namespace {

// Row-block size of the causal products inside a chunk: only blocks on or below the diagonal are
// computed (10 of 16 blocks at Q = 256) while each gemm stays large enough to run near peak.
constexpr int64_t kTri = 64;

// exp of a decay exponent (≤ 0 in practice). fp32: exp_fast (vec_exp.h), with results below e^−86 flushed
// to 0, since subnormals are very slow in the gemms that follow and are 0 at fp32 precision anyway.
// fp64 (gradient checks and tests): libm.
inline float decay_exp(float x) { return x < -86.0f ? 0.0f : exp_fast(x); }
inline double decay_exp(double x) { return std::exp(x); }

template <class T>
T dot(const T* a, const T* b, int64_t n) {
  T acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < n; ++i) acc += a[i] * b[i];
  return acc;
}

// Shape with the derived sizes every phase needs.
struct Geo {
  int64_t batch, seq, H, P, G, N, Q, nc, hpg;  // hpg: heads per group
  int64_t xs, bs, ds, ys;                      // row strides of x/dx, B/C/dB/dC, dt/ddt, y/dy
  int64_t PN() const { return P * N; }
  int64_t row(int64_t b, int64_t c) const { return b * seq + c * Q; }     // first row of chunk c
  int64_t len(int64_t c) const { return std::min(Q, seq - c * Q); }       // tokens in chunk c
  int64_t idx(int64_t b, int64_t h, int64_t c) const { return (b * H + h) * nc + c; }  // per-chunk arrays
};

Geo make_geo(const SsdShape& s, const char* fn) {
  check_shape(s, fn);
  Geo g;
  g.batch = s.batch, g.seq = s.seq, g.H = s.heads, g.P = s.head_dim, g.G = s.groups, g.N = s.state_dim;
  g.Q = s.chunk, g.nc = (s.seq + s.chunk - 1) / s.chunk, g.hpg = s.heads / s.groups;
  g.xs = s.x_stride, g.bs = s.bc_stride, g.ds = s.dt_stride, g.ys = s.y_stride;
  return g;
}

// Per-thread work buffers, grown once and reused by every call (fresh pages are expensive).
template <class T>
struct Scratch {
  Buffer<T> gram, m, dm, dgram;  // L×L: C·Bᵀ, the masked decay matrix M (or E), dM, Σ_heads dGram
  Buffer<T> ln1, ln2, lp;        // L×N, L×N, L×P row-scaled copies and small products
  Buffer<T> dtv, e, w, eta, colf;
  Buffer<double> l, dl, ddt;
  void reserve(int64_t L, int64_t P, int64_t N) {
    for (auto* b : {&gram, &m, &dm, &dgram}) b->resize(size_t(L * L));
    ln1.resize(size_t(L * N)), ln2.resize(size_t(L * N)), lp.resize(size_t(L * P));
    for (auto* b : {&dtv, &e, &w, &eta, &colf}) b->resize(size_t(L));
    for (auto* b : {&l, &dl, &ddt}) b->resize(size_t(L));
  }
};
template <class T>
Scratch<T>& thread_scratch() {
  static thread_local Scratch<T> s;
  return s;
}

// Chunk-level arrays shared by the threads of one call, owned by the calling thread.
template <class T>
struct ChunkArrays {
  Buffer<T> states, dstates, alpha;  // [B,H,nc,P,N], [B,H,nc,P,N], [B,H,nc]
  Buffer<double> dA_part, dD_part;   // [B,H,nc]
};
template <class T>
ChunkArrays<T>& call_arrays() {
  static thread_local ChunkArrays<T> a;
  return a;
}

// Loads the chunk's Δ (contiguous) and its log-decay l_i = Σ_{k≤i} Δ_k·A in double.
template <class T>
void chunk_decay(const T* dt, int64_t ds, T A, int64_t L, T* dtv, double* l) {
  double acc = 0;
  for (int64_t i = 0; i < L; ++i) {
    dtv[i] = dt[i * ds];
    acc += double(dtv[i]) * double(A);
    l[i] = acc;
  }
}

// dst[i,:] = scale[i] · src[i,:] for L rows of n.
template <class T>
void scale_rows(int64_t L, int64_t n, const T* scale, const T* src, int64_t lds, T* dst, int64_t ldd) {
  for (int64_t i = 0; i < L; ++i)
    for (int64_t k = 0; k < n; ++k) dst[i * ldd + k] = scale[i] * src[i * lds + k];
}

// dst = scale·src (assign) or dst += scale·src, n entries.
template <class T>
void add_row(int64_t n, T scale, const T* src, T* dst, bool assign) {
  if (assign)
    for (int64_t k = 0; k < n; ++k) dst[k] = scale * src[k];
  else
    for (int64_t k = 0; k < n; ++k) dst[k] += scale * src[k];
}

// gram[i,j] = ⟨C_i, B_j⟩ on the causal row blocks (row block I: columns before the end of block I).
template <class T>
void causal_gram(int64_t L, int64_t N, const T* Cc, const T* Bc, int64_t ld, T* gram) {
  for (int64_t i0 = 0; i0 < L; i0 += kTri) {
    const int64_t rows = std::min(kTri, L - i0);
    gemm<T>(false, true, rows, i0 + rows, N, T(1), Cc + i0 * ld, ld, Bc, ld, T(0), gram + i0 * L, L);
  }
}

// Phase 1. states[b,h,c] = Xᵀ·diag(w)·B (the chunk's own contribution to its end state), alpha = exp(l_{L−1}).
// With dy (backward) also dstates[b,h,c] = dYᵀ·diag(e)·C: the gradient the chunk's inter-chunk outputs
// send to the state entering it.
template <class T>
void chunk_states(const Geo& g, const T* x, const T* dt, const T* A, const T* B, const T* C, const T* dy,
                  T* states, T* alpha, T* dstates) {
#pragma omp parallel for collapse(3) schedule(dynamic)
  for (int64_t b = 0; b < g.batch; ++b)
    for (int64_t h = 0; h < g.H; ++h)
      for (int64_t c = 0; c < g.nc; ++c) {
        Scratch<T>& sc = thread_scratch<T>();
        const int64_t L = g.len(c), r0 = g.row(b, c), grp = h / g.hpg, id = g.idx(b, h, c);
        sc.reserve(L, g.P, g.N);
        T *dtv = sc.dtv.data(), *w = sc.w.data();
        double* l = sc.l.data();
        chunk_decay(dt + r0 * g.ds + h, g.ds, A[h], L, dtv, l);
        const double last = l[L - 1];
        for (int64_t j = 0; j < L; ++j) w[j] = decay_exp(T(last - l[j])) * dtv[j];
        scale_rows(L, g.N, w, B + r0 * g.bs + grp * g.N, g.bs, sc.ln1.data(), g.N);
        gemm<T>(true, false, g.P, g.N, L, T(1), x + r0 * g.xs + h * g.P, g.xs, sc.ln1.data(), g.N, T(0),
                states + id * g.PN(), g.N);
        alpha[id] = decay_exp(T(last));
        if (dy) {
          T* e = sc.e.data();
          for (int64_t i = 0; i < L; ++i) e[i] = decay_exp(T(l[i]));
          scale_rows(L, g.N, e, C + r0 * g.bs + grp * g.N, g.bs, sc.ln2.data(), g.N);
          gemm<T>(true, false, g.P, g.N, L, T(1), dy + r0 * g.ys + h * g.P, g.ys, sc.ln2.data(), g.N, T(0),
                  dstates + id * g.PN(), g.N);
        }
      }
}

constexpr int64_t kStateBlock = 512;  // state elements per work item of the chunk recurrences

// Phase 2. On entry states[c] is chunk c's local state; on exit it is S_{c−1}, the state entering chunk c.
// final (when non-null) gets the state after the last chunk.
template <class T>
void state_recurrence(const Geo& g, const T* alpha, const T* init, T* states, T* final) {
  const int64_t PN = g.PN(), nblk = (PN + kStateBlock - 1) / kStateBlock;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t bh = 0; bh < g.batch * g.H; ++bh)
    for (int64_t blk = 0; blk < nblk; ++blk) {
      const int64_t e0 = blk * kStateBlock, ne = std::min(kStateBlock, PN - e0);
      T run[kStateBlock];
      for (int64_t e = 0; e < ne; ++e) run[e] = init ? init[bh * PN + e0 + e] : T(0);
      for (int64_t c = 0; c < g.nc; ++c) {
        const T a = alpha[bh * g.nc + c];
        T* s = states + (bh * g.nc + c) * PN + e0;
        for (int64_t e = 0; e < ne; ++e) {
          const T local = s[e];
          s[e] = run[e];
          run[e] = a * run[e] + local;
        }
      }
      if (final)
        for (int64_t e = 0; e < ne; ++e) final[bh * PN + e0 + e] = run[e];
    }
}

// Adjoint of phase 2. On entry dstates[c] = Z_c (gradient w.r.t. S_{c−1} from chunk c's outputs); on exit
// it is G_c, the gradient w.r.t. the state leaving chunk c: G_{nc−1} = dfinal, G_{c−1} = α_c·G_c + Z_c.
// dinit (when non-null) gets G_{−1}.
template <class T>
void state_recurrence_backward(const Geo& g, const T* alpha, const T* dfinal, T* dstates, T* dinit) {
  const int64_t PN = g.PN(), nblk = (PN + kStateBlock - 1) / kStateBlock;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t bh = 0; bh < g.batch * g.H; ++bh)
    for (int64_t blk = 0; blk < nblk; ++blk) {
      const int64_t e0 = blk * kStateBlock, ne = std::min(kStateBlock, PN - e0);
      T run[kStateBlock];
      for (int64_t e = 0; e < ne; ++e) run[e] = dfinal ? dfinal[bh * PN + e0 + e] : T(0);
      for (int64_t c = g.nc - 1; c >= 0; --c) {
        const T a = alpha[bh * g.nc + c];
        T* s = dstates + (bh * g.nc + c) * PN + e0;
        for (int64_t e = 0; e < ne; ++e) {
          const T z = s[e];
          s[e] = run[e];
          run[e] = a * run[e] + z;
        }
      }
      if (dinit)
        for (int64_t e = 0; e < ne; ++e) dinit[bh * PN + e0 + e] = run[e];
    }
}

// Fills m with E_ij = exp(l_i − l_j) (times gram_ij·Δ_j when with_gram) on the causal blocks, 0 above the
// diagonal.
template <class T>
void decay_matrix(int64_t L, const double* l, const T* gram, const T* dtv, bool with_gram, T* m) {
  for (int64_t i = 0; i < L; ++i) {
    const int64_t end = std::min(L, (i / kTri + 1) * kTri);
    const double li = l[i];
    T* row = m + i * L;
    if (with_gram) {
      const T* grow = gram + i * L;
      for (int64_t j = 0; j <= i; ++j) row[j] = grow[j] * decay_exp(T(li - l[j])) * dtv[j];
    } else {
      for (int64_t j = 0; j <= i; ++j) row[j] = decay_exp(T(li - l[j]));
    }
    for (int64_t j = i + 1; j < end; ++j) row[j] = T(0);
  }
}

// Phase 3 (forward): y of chunk c for heads [h_begin, h_end) of group grp.
template <class T>
void chunk_outputs(const Geo& g, int64_t b, int64_t grp, int64_t c, int64_t h_begin, int64_t h_end, const T* x,
                   const T* dt, const T* A, const T* B, const T* C, const T* D, const T* states, T* y) {
  Scratch<T>& sc = thread_scratch<T>();
  const int64_t L = g.len(c), r0 = g.row(b, c);
  sc.reserve(L, g.P, g.N);
  const T* Bc = B + r0 * g.bs + grp * g.N;
  const T* Cc = C + r0 * g.bs + grp * g.N;
  causal_gram(L, g.N, Cc, Bc, g.bs, sc.gram.data());
  for (int64_t h = h_begin; h < h_end; ++h) {
    const T* Xc = x + r0 * g.xs + h * g.P;
    T* Yc = y + r0 * g.ys + h * g.P;
    T *dtv = sc.dtv.data(), *e = sc.e.data(), *m = sc.m.data();
    double* l = sc.l.data();
    chunk_decay(dt + r0 * g.ds + h, g.ds, A[h], L, dtv, l);
    // inter-chunk: Y = diag(e)·C·Sᵀ
    for (int64_t i = 0; i < L; ++i) e[i] = decay_exp(T(l[i]));
    scale_rows(L, g.N, e, Cc, g.bs, sc.ln1.data(), g.N);
    gemm<T>(false, true, L, g.P, g.N, T(1), sc.ln1.data(), g.N, states + g.idx(b, h, c) * g.PN(), g.N, T(0), Yc,
            g.ys);
    // intra-chunk: Y += M·X, one gemm per causal row block
    decay_matrix(L, l, sc.gram.data(), dtv, true, m);
    for (int64_t i0 = 0; i0 < L; i0 += kTri) {
      const int64_t rows = std::min(kTri, L - i0);
      gemm<T>(false, false, rows, g.P, i0 + rows, T(1), m + i0 * L, L, Xc, g.xs, T(1), Yc + i0 * g.ys, g.ys);
    }
    if (D)
      for (int64_t i = 0; i < L; ++i)
        for (int64_t p = 0; p < g.P; ++p) Yc[i * g.ys + p] += D[h] * Xc[i * g.xs + p];
  }
}

// Phase 3 (backward): all gradients of chunk c of group grp (its heads in order, so dB/dC of the group's
// rows are owned by this item). states/dstates hold S_{c−1} and G_c (gradient of the state leaving c).
template <class T>
void chunk_backward(const Geo& g, int64_t b, int64_t grp, int64_t c, const T* x, const T* dt, const T* A,
                    const T* B, const T* C, const T* D, const T* dy, const T* states, const T* dstates,
                    const T* alpha, T* dx, T* ddt, T* dB, T* dC, double* dA_part, double* dD_part) {
  Scratch<T>& sc = thread_scratch<T>();
  const int64_t L = g.len(c), r0 = g.row(b, c), P = g.P, N = g.N;
  sc.reserve(L, P, N);
  const T* Bc = B + r0 * g.bs + grp * N;
  const T* Cc = C + r0 * g.bs + grp * N;
  T* dBc = dB + r0 * g.bs + grp * N;
  T* dCc = dC + r0 * g.bs + grp * N;
  T *gram = sc.gram.data(), *m = sc.m.data(), *dm = sc.dm.data(), *dgram = sc.dgram.data();
  T *dtv = sc.dtv.data(), *e = sc.e.data(), *w = sc.w.data(), *eta = sc.eta.data(), *colf = sc.colf.data();
  T *W = sc.ln1.data(), *Bw = sc.ln2.data(), *dYe = sc.lp.data();
  double *l = sc.l.data(), *dl = sc.dl.data(), *ddtv = sc.ddt.data();

  causal_gram(L, N, Cc, Bc, g.bs, gram);

  for (int64_t h = grp * g.hpg; h < (grp + 1) * g.hpg; ++h) {
    // the group's first head writes dB, dC and dgram, the others add to them (saves zeroing passes)
    const bool first = h == grp * g.hpg;
    const int64_t id = g.idx(b, h, c);
    const T* Xc = x + r0 * g.xs + h * P;
    const T* dYc = dy + r0 * g.ys + h * P;
    T* dXc = dx + r0 * g.xs + h * P;
    const T* S = states + id * g.PN();   // S_{c−1}
    const T* Gs = dstates + id * g.PN();  // dL/dS_c
    chunk_decay(dt + r0 * g.ds + h, g.ds, A[h], L, dtv, l);
    const double last = l[L - 1];
    for (int64_t i = 0; i < L; ++i) {
      e[i] = decay_exp(T(l[i]));
      eta[i] = decay_exp(T(last - l[i]));
      w[i] = eta[i] * dtv[i];
      dl[i] = 0, ddtv[i] = 0;
    }

    // inter-chunk Y += diag(e)·C·Sᵀ:  with W = diag(e)·dY·S,  dC += W,  dl_i += ⟨C_i, W_i⟩ (= de_i·e_i)
    scale_rows(L, P, e, dYc, g.ys, dYe, P);
    gemm<T>(false, false, L, N, P, T(1), dYe, P, S, N, T(0), W, N);
    for (int64_t i = 0; i < L; ++i) {
      dl[i] += dot(Cc + i * g.bs, W + i * N, N);
      add_row(N, T(1), W + i * N, dCc + i * g.bs, first);
    }

    // state S_c = α·S + Xᵀ·diag(w)·B:  dα = ⟨G, S⟩,  dX = diag(w)·B·Gᵀ,  with W = X·G:  dB += diag(w)·W,
    // dw_j = ⟨B_j, W_j⟩; w_j = exp(l_{L−1} − l_j)·Δ_j and α = exp(l_{L−1}) pass it on to Δ and l.
    dl[L - 1] += double(dot(Gs, S, g.PN())) * double(alpha[id]);
    scale_rows(L, N, w, Bc, g.bs, Bw, N);
    gemm<T>(false, true, L, P, N, T(1), Bw, N, Gs, N, T(0), dXc, g.xs);
    gemm<T>(false, false, L, N, P, T(1), Xc, g.xs, Gs, N, T(0), W, N);
    for (int64_t j = 0; j < L; ++j) {
      const double dw = dot(Bc + j * g.bs, W + j * N, N);
      add_row(N, w[j], W + j * N, dBc + j * g.bs, first);
      ddtv[j] += dw * double(eta[j]);
      dl[L - 1] += dw * double(w[j]);
      dl[j] -= dw * double(w[j]);
    }

    // intra-chunk Y += M·X, M_ij = gram_ij·E_ij·Δ_j:  dM = dY·Xᵀ (causal blocks), dX += Mᵀ·dY,
    // dgram += dM·E·Δ (summed over the group's heads), and with f_ij = dM_ij·gram_ij·E_ij:
    // dΔ_j += Σ_i f_ij,  d(l_i − l_j) = f_ij·Δ_j.
    decay_matrix(L, l, gram, dtv, false, m);  // m = E for now
    for (int64_t i0 = 0; i0 < L; i0 += kTri) {
      const int64_t rows = std::min(kTri, L - i0);
      gemm<T>(false, true, rows, i0 + rows, P, T(1), dYc + i0 * g.ys, g.ys, Xc, g.xs, T(0), dm + i0 * L, L);
    }
    std::fill_n(colf, L, T(0));
    for (int64_t i = 0; i < L; ++i) {
      T* mrow = m + i * L;
      const T *dmrow = dm + i * L, *grow = gram + i * L;
      T* dgrow = dgram + i * L;
      if (first) std::fill_n(dgrow, std::min(L, (i / kTri + 1) * kTri), T(0));
      T rowk = 0;
#pragma omp simd reduction(+ : rowk)
      for (int64_t j = 0; j <= i; ++j) {
        const T t = dmrow[j] * mrow[j];
        const T f = t * grow[j];
        dgrow[j] += t * dtv[j];
        colf[j] += f;
        rowk += f * dtv[j];
        mrow[j] = grow[j] * mrow[j] * dtv[j];  // now M
      }
      dl[i] += double(rowk);
    }
    for (int64_t j = 0; j < L; ++j) {
      ddtv[j] += double(colf[j]);
      dl[j] -= double(dtv[j]) * double(colf[j]);
    }
    for (int64_t j0 = 0; j0 < L; j0 += kTri) {
      const int64_t cols = std::min(kTri, L - j0);
      gemm<T>(true, false, cols, P, L - j0, T(1), m + j0 * L + j0, L, dYc + j0 * g.ys, g.ys, T(1), dXc + j0 * g.xs,
              g.xs);
    }

    // skip Y += D·X
    if (D) {
      double acc = 0;
      for (int64_t i = 0; i < L; ++i) {
        acc += double(dot(Xc + i * g.xs, dYc + i * g.ys, P));
        for (int64_t p = 0; p < P; ++p) dXc[i * g.xs + p] += D[h] * dYc[i * g.ys + p];
      }
      dD_part[id] = acc;
    }

    // l_i = A·Σ_{k≤i} Δ_k:  with R_k = Σ_{i≥k} dl_i,  dΔ_k += A·R_k,  dA += Σ_k Δ_k·R_k
    double R = 0, dAc = 0;
    for (int64_t k = L - 1; k >= 0; --k) {
      R += dl[k];
      ddtv[k] += double(A[h]) * R;
      dAc += double(dtv[k]) * R;
    }
    dA_part[id] = dAc;
    for (int64_t k = 0; k < L; ++k) ddt[(r0 + k) * g.ds + h] = T(ddtv[k]);
  }

  // group products of dgram = Σ_heads dGram: dC += dgram·B (causal row blocks), dB += dgramᵀ·C (column blocks)
  for (int64_t i0 = 0; i0 < L; i0 += kTri) {
    const int64_t rows = std::min(kTri, L - i0);
    gemm<T>(false, false, rows, N, i0 + rows, T(1), dgram + i0 * L, L, Bc, g.bs, T(1), dCc + i0 * g.bs, g.bs);
  }
  for (int64_t j0 = 0; j0 < L; j0 += kTri) {
    const int64_t cols = std::min(kTri, L - j0);
    gemm<T>(true, false, cols, N, L - j0, T(1), dgram + j0 * L + j0, L, Cc + j0 * g.bs, g.bs, T(1),
            dBc + j0 * g.bs, g.bs);
  }
}

}  // namespace

template <class T>
void ssd_forward(const SsdShape& s, const T* x, const T* dt, const T* A, const T* B, const T* C, const T* D,
                 const T* init_state, T* y, T* final_state) {
  const Geo g = make_geo(s, "ssd_forward");
  if (g.batch * g.seq > 0 && (!x || !dt || !A || !B || !C || !y))
    fail("ssd_forward: x, dt, A, B, C and y must be non-null");
  ChunkArrays<T>& ca = call_arrays<T>();
  const int64_t nchunks = g.batch * g.H * g.nc;
  ca.states.resize(size_t(nchunks * g.PN()));
  ca.alpha.resize(size_t(nchunks));
  chunk_states<T>(g, x, dt, A, B, C, nullptr, ca.states.data(), ca.alpha.data(), nullptr);
  state_recurrence<T>(g, ca.alpha.data(), init_state, ca.states.data(), final_state);

  // Split a group's heads over several items only when there are too few (b, g, c) items to keep every
  // thread busy (short prompts); each split recomputes the group's Gram matrix.
  const int64_t items = g.batch * g.G * g.nc;
  const int64_t want = 2 * int64_t(omp_get_max_threads());
  const int64_t parts = items >= want ? 1 : std::min(g.hpg, (want + items - 1) / std::max<int64_t>(items, 1));
  const int64_t per_part = (g.hpg + parts - 1) / parts;
  const T* states = ca.states.data();
#pragma omp parallel for collapse(4) schedule(dynamic)
  for (int64_t b = 0; b < g.batch; ++b)
    for (int64_t grp = 0; grp < g.G; ++grp)
      for (int64_t c = 0; c < g.nc; ++c)
        for (int64_t part = 0; part < parts; ++part) {
          const int64_t h0 = grp * g.hpg + part * per_part;
          const int64_t h1 = std::min((grp + 1) * g.hpg, h0 + per_part);
          if (h0 < h1) chunk_outputs<T>(g, b, grp, c, h0, h1, x, dt, A, B, C, D, states, y);
        }
}

template <class T>
void ssd_backward(const SsdShape& s, const T* x, const T* dt, const T* A, const T* B, const T* C, const T* D,
                  const T* init_state, const T* dy, const T* dfinal_state, T* dx, T* ddt, T* dA, T* dB, T* dC,
                  T* dD, T* dinit_state) {
  const Geo g = make_geo(s, "ssd_backward");
  if (g.batch * g.seq > 0 && (!x || !dt || !A || !B || !C || !dy || !dx || !ddt || !dB || !dC))
    fail("ssd_backward: x, dt, A, B, C, dy, dx, ddt, dB and dC must be non-null");
  if (!dA) fail("ssd_backward: dA must be non-null");
  if (D && !dD) fail("ssd_backward: dD must be non-null when D is given");
  ChunkArrays<T>& ca = call_arrays<T>();
  const int64_t nchunks = g.batch * g.H * g.nc;
  ca.states.resize(size_t(nchunks * g.PN()));
  ca.dstates.resize(size_t(nchunks * g.PN()));
  ca.alpha.resize(size_t(nchunks));
  ca.dA_part.resize(size_t(nchunks));
  ca.dD_part.resize(size_t(nchunks));
  chunk_states<T>(g, x, dt, A, B, C, dy, ca.states.data(), ca.alpha.data(), ca.dstates.data());
  state_recurrence<T>(g, ca.alpha.data(), init_state, ca.states.data(), nullptr);
  state_recurrence_backward<T>(g, ca.alpha.data(), dfinal_state, ca.dstates.data(), dinit_state);

#pragma omp parallel for collapse(3) schedule(dynamic)
  for (int64_t b = 0; b < g.batch; ++b)
    for (int64_t grp = 0; grp < g.G; ++grp)
      for (int64_t c = 0; c < g.nc; ++c)
        chunk_backward<T>(g, b, grp, c, x, dt, A, B, C, D, dy, ca.states.data(), ca.dstates.data(),
                          ca.alpha.data(), dx, ddt, dB, dC, ca.dA_part.data(), ca.dD_part.data());

  // Parameter gradients: fixed-order sums of the per-chunk parts.
  for (int64_t h = 0; h < g.H; ++h) {
    double a = 0, d = 0;
    for (int64_t b = 0; b < g.batch; ++b)
      for (int64_t c = 0; c < g.nc; ++c) {
        a += ca.dA_part[size_t(g.idx(b, h, c))];
        if (D) d += ca.dD_part[size_t(g.idx(b, h, c))];
      }
    dA[h] += T(a);
    if (D) dD[h] += T(d);
  }
}

template <class T>
void ssd_step(int64_t batch, int64_t heads, int64_t head_dim, int64_t groups, int64_t state_dim, const T* x,
              const T* dt, const T* A, const T* B, const T* C, const T* D, T* state, T* y) {
  if (batch < 0 || heads < 1 || head_dim < 1 || groups < 1 || state_dim < 1 || heads % groups)
    fail("ssd_step: bad shape batch {} heads {} head_dim {} groups {} state_dim {}", batch, heads, head_dim, groups,
         state_dim);
  if (!x || !dt || !A || !B || !C || !state || !y) fail("ssd_step: x, dt, A, B, C, state and y must be non-null");
  const int64_t H = heads, P = head_dim, N = state_dim, hpg = heads / groups;
#pragma omp parallel for collapse(2) schedule(static) if (batch * H * P * N >= (1 << 16))
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t h = 0; h < H; ++h) {
      const T d = dt[b * H + h];
      const T a = T(std::exp(double(d) * double(A[h])));
      const T* xt = x + (b * H + h) * P;
      const T* Bt = B + (b * groups + h / hpg) * N;
      const T* Ct = C + (b * groups + h / hpg) * N;
      T* S = state + (b * H + h) * P * N;
      for (int64_t p = 0; p < P; ++p) {
        const T dx = d * xt[p];
        T* Sp = S + p * N;
        T acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int64_t n = 0; n < N; ++n) {
          Sp[n] = a * Sp[n] + dx * Bt[n];
          acc += Sp[n] * Ct[n];
        }
        y[(b * H + h) * P + p] = acc + (D ? D[h] * xt[p] : T(0));
      }
    }
}

#define TXS_SSD_INSTANTIATE(T)                                                                                   \
  template void ssd_forward<T>(const SsdShape&, const T*, const T*, const T*, const T*, const T*, const T*,      \
                               const T*, T*, T*);                                                               \
  template void ssd_backward<T>(const SsdShape&, const T*, const T*, const T*, const T*, const T*, const T*,     \
                                const T*, const T*, const T*, T*, T*, T*, T*, T*, T*, T*);                      \
  template void ssd_step<T>(int64_t, int64_t, int64_t, int64_t, int64_t, const T*, const T*, const T*, const T*, \
                            const T*, const T*, T*, T*);
TXS_SSD_INSTANTIATE(float)
TXS_SSD_INSTANTIATE(double)
#undef TXS_SSD_INSTANTIATE

template <class T>
void ssd_decay_forward(const T* A_log, T* A, int64_t heads) {
  for (int64_t h = 0; h < heads; ++h) A[h] = -std::exp(A_log[h]);
}

template <class T>
void ssd_decay_backward(const T* dA, const T* A, T* dA_log, int64_t heads) {
  for (int64_t h = 0; h < heads; ++h) dA_log[h] += dA[h] * A[h];
}

template void ssd_decay_forward<float>(const float*, float*, int64_t);
template void ssd_decay_forward<double>(const double*, double*, int64_t);
template void ssd_decay_backward<float>(const float*, const float*, float*, int64_t);
template void ssd_decay_backward<double>(const double*, const double*, double*, int64_t);

}  // namespace txs::cpu
