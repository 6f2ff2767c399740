// Per-thread work of the SSD scan kernels (ops/cuda/ssd.cu), as functors that compile for both sides: each
// phase is a struct holding the geometry and the pointers it reads and writes, and its operator()(idx) does
// the whole work of one item idx ∈ [0, count) — the index decoding included. The CUDA kernel is a grid-stride
// loop over idx calling it; tests/test_cuda_ssd_bodies.cpp loops over idx on the host. T is float on the
// device; the host test also runs T = double to check the algebra tightly.
//
// Notation (per batch row b, head h, chunk c of L ≤ Q tokens starting at token t0 = c·Q, group g = h / (H/G)):
//   l_i = Σ_{k≤i} Δ_k·A_h (chunk-local inclusive cumulative sum), e_i = exp(l_i), α = exp(l_{L−1}),
//   w_j = exp(l_{L−1} − l_j)·Δ_j, GE_ij = ⟨C_i, B_j⟩·exp(l_i − l_j) for j ≤ i (the decayed Gram matrix),
//   S_prev = the state entering the chunk, Gs = ∂loss/∂(state leaving the chunk).
//   y_i = Σ_{j≤i} GE_ij·Δ_j·x_j + e_i·S_prev·C_i + D·x_i,   S_c = α·S_prev + Σ_j w_j·x_j ⊗ B_j.
// Scratch layout (Work, carved in ssd_phases.h): per-token arrays [B·H, T] (token t of row b, head h at
// (b·H + h)·T + t), per-chunk arrays [B·H, nc], chunk states [B·H, nc, P, N] and their transposes
// [B·H, nc, N, P], chunk matrices [B·H, nc, Qe, Qe] (per head) or [B·G, nc, Qe, Qe] (per group) with
// Qe = min(Q, T). Only entries j ≤ i < L of a chunk matrix are written or read.
// Memory access: consecutive items differ in their fastest index (noted per functor), which the 32 threads
// of a warp share; the layouts are chosen so that the inner loops read either one address for the whole warp
// or consecutive addresses — hence the transposed copies of B, x and the states.
#pragma once
#include <cstdint>

#include "ops/cuda/portable.h"

namespace txs::cuda::ssd {

TXS_HD float exp_t(float x) { return expf(x); }
TXS_HD double exp_t(double x) { return exp(x); }

// The shape with its derived sizes; row strides in elements (token (b, t) is row b·seq + t).
struct Geo {
  int64_t batch, seq, H, P, G, N, Q, nc, hpg, Qe;
  int64_t xs, bs, ds, ys;
  TXS_HD int64_t len(int64_t c) const { return Q < seq - c * Q ? Q : seq - c * Q; }  // tokens in chunk c
  TXS_HD int64_t PN() const { return P * N; }
  TXS_HD int64_t QQ() const { return Qe * Qe; }
};

template <class T>
struct Work {
  T *cum, *erow, *wrow;           // [B·H, T]: l_i, e_i, w_i
  T *alpha;                       // [B·H, nc]
  T *states, *states_t;           // [B·H, nc, P, N]: local chunk states, then (after the pass) S_prev; S_prev [N, P]
  T *Bt;                          // [B, G, N, T]: B transposed
  T *dstates, *dstates_t;         // backward: Z_c = ∂loss/∂S_prev from chunk c's outputs, then Gs; Gs [N, P]
  T *Xt;                          // backward, [B, H, P, T]: x transposed
  T *V, *U;                       // backward, [B·H, T, N]: V_i = dy_i·S_prev, U_i = x_i·Gs
  T *dl, *ddt_direct, *dww, *dxy;  // backward, [B·H, T]: ∂loss/∂l_i (row-local terms), direct ∂loss/∂Δ_i,
                                  // dw_i·w_i, ⟨x_i, dy_i⟩
  T *dA_part, *dD_part;           // backward, [B·H, nc]
  T *m1;                          // [B·H, nc, Qe, Qe]: GE (then F in the backward)
  T *m2;                          // backward, [B·G, nc, Qe, Qe]: dG summed over the group's heads
};

// Item (b, k, m, t), t fastest: dst[b, k, m, t] = src[row (b, t), k·width + m] for k < blocks, m < width —
// the per-group (or per-head) column blocks of a strided [B·T, stride] operand, transposed so that loops over
// tokens read consecutive addresses.
template <class T>
struct Transpose {
  int64_t batch, seq, blocks, width, stride;
  const T* src;
  T* dst;
  TXS_HD int64_t count() const { return batch * blocks * width * seq; }
  TXS_HD void operator()(int64_t idx) const {
    const int64_t t = idx % seq, col = idx / seq % (blocks * width), b = idx / (seq * blocks * width);
    dst[idx] = src[(b * seq + t) * stride + col];
  }
};

// Item (b, h, c): the chunk's cumulative decay l (fp32 on the device), e, w and α. Sequential in the chunk.
template <class T>
struct ChunkDecay {
  Geo g;
  const T *dt, *A;
  T *cum, *erow, *wrow, *alpha;
  TXS_HD int64_t count() const { return g.batch * g.H * g.nc; }
  TXS_HD void operator()(int64_t idx) const {
    const int64_t c = idx % g.nc, bh = idx / g.nc, h = bh % g.H, b = bh / g.H;
    const int64_t L = g.len(c), t0 = c * g.Q, r0 = b * g.seq + t0, base = bh * g.seq + t0;
    const T a = A[h];
    T acc = 0;
    for (int64_t i = 0; i < L; ++i) {
      acc += dt[(r0 + i) * g.ds + h] * a;
      cum[base + i] = acc;
    }
    for (int64_t i = 0; i < L; ++i) {
      erow[base + i] = exp_t(cum[base + i]);
      wrow[base + i] = exp_t(acc - cum[base + i]) * dt[(r0 + i) * g.ds + h];
    }
    alpha[idx] = exp_t(acc);
  }
};

// Item (b, h, c, p, n), n fastest: the chunk's own contribution to its end state, Σ_j x_jp·w_j·B_jn.
// With dy (backward) also Z_c[p, n] = Σ_i e_i·dy_ip·C_in, the gradient the chunk's inter-chunk outputs send
// to the state entering it.
template <class T>
struct ChunkStates {
  Geo g;
  const T *x, *B, *C, *dy, *erow, *wrow;
  T *states, *dstates;
  TXS_HD int64_t count() const { return g.batch * g.H * g.nc * g.PN(); }
  TXS_HD void operator()(int64_t idx) const {
    const int64_t n = idx % g.N, p = idx / g.N % g.P, bhc = idx / g.PN(), c = bhc % g.nc, bh = bhc / g.nc;
    const int64_t h = bh % g.H, b = bh / g.H, grp = h / g.hpg;
    const int64_t L = g.len(c), t0 = c * g.Q, r0 = b * g.seq + t0, base = bh * g.seq + t0;
    const T* xc = x + r0 * g.xs + h * g.P + p;
    const T* Bc = B + r0 * g.bs + grp * g.N + n;
    T st = 0;
    for (int64_t j = 0; j < L; ++j) st += xc[j * g.xs] * wrow[base + j] * Bc[j * g.bs];
    states[idx] = st;
    if (dy) {
      const T* dyc = dy + r0 * g.ys + h * g.P + p;
      const T* Cc = C + r0 * g.bs + grp * g.N + n;
      T z = 0;
      for (int64_t i = 0; i < L; ++i) z += dyc[i * g.ys] * erow[base + i] * Cc[i * g.bs];
      dstates[idx] = z;
    }
  }
};

// Item (b, h, e) over the P·N state entries: the inter-chunk recurrence, sequential over chunks. On entry
// states[c] is chunk c's local state; on exit it is S_prev of chunk c. final (when non-null) gets the state
// after the last chunk; init null means zeros. states_t gets S_prev transposed ([N, P]).
template <class T>
struct StatePass {
  Geo g;
  const T *alpha, *init;
  T *states, *states_t, *final_state;
  TXS_HD int64_t count() const { return g.batch * g.H * g.PN(); }
  TXS_HD void operator()(int64_t idx) const {
    const int64_t e = idx % g.PN(), bh = idx / g.PN(), et = e % g.N * g.P + e / g.N;
    T run = init ? init[idx] : T(0);
    for (int64_t c = 0; c < g.nc; ++c) {
      T* s = states + (bh * g.nc + c) * g.PN() + e;
      const T local = *s;
      *s = run;
      states_t[(bh * g.nc + c) * g.PN() + et] = run;
      run = alpha[bh * g.nc + c] * run + local;
    }
    if (final_state) final_state[idx] = run;
  }
};

// Adjoint of StatePass, backwards over chunks: on entry dstates[c] = Z_c, on exit Gs of chunk c
// (G_{nc−1} = dfinal or 0, G_{c−1} = α_c·G_c + Z_c), and dstates_t the same transposed; dinit (when non-null)
// gets G_{−1}.
template <class T>
struct StatePassBackward {
  Geo g;
  const T *alpha, *dfinal;
  T *dstates, *dstates_t, *dinit;
  TXS_HD int64_t count() const { return g.batch * g.H * g.PN(); }
  TXS_HD void operator()(int64_t idx) const {
    const int64_t e = idx % g.PN(), bh = idx / g.PN(), et = e % g.N * g.P + e / g.N;
    T run = dfinal ? dfinal[idx] : T(0);
    for (int64_t c = g.nc - 1; c >= 0; --c) {
      T* s = dstates + (bh * g.nc + c) * g.PN() + e;
      const T z = *s;
      *s = run;
      dstates_t[(bh * g.nc + c) * g.PN() + et] = run;
      run = alpha[bh * g.nc + c] * run + z;
    }
    if (dinit) dinit[idx] = run;
  }
};

// Item (b, grp, c, i, j), j fastest, for j ≤ i < L (other items do nothing): the Gram entry ⟨C_i, B_j⟩ once
// per group, then GE_ij = ⟨C_i, B_j⟩·exp(l_i − l_j) for each of the group's heads. B read transposed (Bt).
template <class T>
struct DecayedGram {
  Geo g;
  const T *Bt, *C, *cum;
  T* m1;
  TXS_HD int64_t count() const { return g.batch * g.G * g.nc * g.QQ(); }
  TXS_HD void operator()(int64_t idx) const {
    const int64_t j = idx % g.Qe, i = idx / g.Qe % g.Qe, bgc = idx / g.QQ(), c = bgc % g.nc, bg = bgc / g.nc;
    if (j > i || i >= g.len(c)) return;
    const int64_t grp = bg % g.G, b = bg / g.G, t0 = c * g.Q;
    const T* Ci = C + (b * g.seq + t0 + i) * g.bs + grp * g.N;
    const T* Bj = Bt + bg * g.N * g.seq + t0 + j;
    T dot = 0;
    for (int64_t n = 0; n < g.N; ++n) dot += Ci[n] * Bj[n * g.seq];
    for (int64_t h = grp * g.hpg; h < (grp + 1) * g.hpg; ++h) {
      const int64_t bh = b * g.H + h, base = bh * g.seq + t0;
      m1[(bh * g.nc + c) * g.QQ() + i * g.Qe + j] = dot * exp_t(cum[base + i] - cum[base + j]);
    }
  }
};

// Item (b, t, h, p), p fastest: y = Σ_{j≤i} GE_ij·Δ_j·x_jp + e_i·Σ_n C_in·S_prev[p, n] + D_h·x_ip.
template <class T>
struct Outputs {
  Geo g;
  const T *x, *dt, *C, *D, *erow, *states_t, *m1;
  T* y;
  TXS_HD int64_t count() const { return g.batch * g.seq * g.H * g.P; }
  TXS_HD void operator()(int64_t idx) const {
    const int64_t p = idx % g.P, h = idx / g.P % g.H, row = idx / (g.H * g.P), b = row / g.seq, t = row % g.seq;
    const int64_t c = t / g.Q, i = t - c * g.Q, t0 = c * g.Q, r0 = b * g.seq + t0, grp = h / g.hpg;
    const int64_t bh = b * g.H + h, bhc = bh * g.nc + c;
    const T* Mi = m1 + bhc * g.QQ() + i * g.Qe;
    const T* xc = x + r0 * g.xs + h * g.P + p;
    const T* dtc = dt + r0 * g.ds + h;
    T acc = 0;
    for (int64_t j = 0; j <= i; ++j) acc += Mi[j] * dtc[j * g.ds] * xc[j * g.xs];
    const T* Ci = C + row * g.bs + grp * g.N;
    const T* S = states_t + bhc * g.PN() + p;
    T inter = 0;
    for (int64_t n = 0; n < g.N; ++n) inter += Ci[n] * S[n * g.P];
    acc += erow[bh * g.seq + t] * inter;
    if (D) acc += D[h] * xc[i * g.xs];
    y[row * g.ys + h * g.P + p] = acc;
  }
};

// Item (b, t, h, p), p fastest: dx_ip = Σ_{k≥i} GE_ki·Δ_i·dy_kp + w_i·Σ_n B_in·Gs[p, n] + D_h·dy_ip (written).
// Reads GE (m1) before DecayedGramBackward overwrites it.
template <class T>
struct InputGrad {
  Geo g;
  const T *dt, *B, *D, *dy, *wrow, *dstates_t, *m1;
  T* dx;
  TXS_HD int64_t count() const { return g.batch * g.seq * g.H * g.P; }
  TXS_HD void operator()(int64_t idx) const {
    const int64_t p = idx % g.P, h = idx / g.P % g.H, row = idx / (g.H * g.P), b = row / g.seq, t = row % g.seq;
    const int64_t c = t / g.Q, i = t - c * g.Q, L = g.len(c), r0 = b * g.seq + c * g.Q, grp = h / g.hpg;
    const int64_t bh = b * g.H + h, bhc = bh * g.nc + c;
    const T* Mc = m1 + bhc * g.QQ();
    const T* dyc = dy + r0 * g.ys + h * g.P + p;
    T acc = 0;
    for (int64_t k = i; k < L; ++k) acc += Mc[k * g.Qe + i] * dyc[k * g.ys];
    acc *= dt[row * g.ds + h];
    const T* Bi = B + row * g.bs + grp * g.N;
    const T* Gs = dstates_t + bhc * g.PN() + p;
    T st = 0;
    for (int64_t n = 0; n < g.N; ++n) st += Bi[n] * Gs[n * g.P];
    acc += wrow[bh * g.seq + t] * st;
    if (D) acc += D[h] * dyc[i * g.ys];
    dx[row * g.xs + h * g.P + p] = acc;
  }
};

// Item (b, grp, c, i, j), j fastest, j ≤ i < L: for each head of the group, with dmx_ij = ⟨dy_i, x_j⟩ (the
// gradient of Σ_p M_ij·x_jp), F_ij = dmx_ij·GE_ij in place of GE (m1, per head); and the group's
// dG_ij = Σ_h dmx_ij·exp(l_i − l_j)·Δ_j = ∂loss/∂⟨C_i, B_j⟩ (m2, per group). x read transposed (Xt).
template <class T>
struct DecayedGramBackward {
  Geo g;
  const T *Xt, *dt, *dy, *cum;
  T *m1, *m2;
  TXS_HD int64_t count() const { return g.batch * g.G * g.nc * g.QQ(); }
  TXS_HD void operator()(int64_t idx) const {
    const int64_t j = idx % g.Qe, i = idx / g.Qe % g.Qe, bgc = idx / g.QQ(), c = bgc % g.nc, bg = bgc / g.nc;
    if (j > i || i >= g.len(c)) return;
    const int64_t grp = bg % g.G, b = bg / g.G, t0 = c * g.Q, r0 = b * g.seq + t0;
    T dg = 0;
    for (int64_t h = grp * g.hpg; h < (grp + 1) * g.hpg; ++h) {
      const int64_t bh = b * g.H + h, base = bh * g.seq + t0;
      const T* dyi = dy + (r0 + i) * g.ys + h * g.P;
      const T* xj = Xt + bh * g.P * g.seq + t0 + j;
      T dmx = 0;
      for (int64_t p = 0; p < g.P; ++p) dmx += dyi[p] * xj[p * g.seq];
      T& ge = m1[(bh * g.nc + c) * g.QQ() + i * g.Qe + j];
      ge = dmx * ge;
      dg += dmx * exp_t(cum[base + i] - cum[base + j]) * dt[(r0 + j) * g.ds + h];
    }
    m2[idx] = dg;
  }
};

// Item (b, h, t, n), n fastest: the state products of a token that both RowGrads and BCGrads need,
// V_in = Σ_p dy_ip·S_prev[p, n] and U_in = Σ_p x_ip·Gs[p, n].
template <class T>
struct StateRowProducts {
  Geo g;
  const T *x, *dy, *states, *dstates;
  T *V, *U;
  TXS_HD int64_t count() const { return g.batch * g.H * g.seq * g.N; }
  TXS_HD void operator()(int64_t idx) const {
    const int64_t n = idx % g.N, t = idx / g.N % g.seq, bh = idx / (g.N * g.seq), h = bh % g.H, b = bh / g.H;
    const int64_t row = b * g.seq + t, bhc = bh * g.nc + t / g.Q;
    const T* dyi = dy + row * g.ys + h * g.P;
    const T* xi = x + row * g.xs + h * g.P;
    const T* S = states + bhc * g.PN() + n;
    const T* Gs = dstates + bhc * g.PN() + n;
    T v = 0, u = 0;
    for (int64_t p = 0; p < g.P; ++p) {
      v += dyi[p] * S[p * g.N];
      u += xi[p] * Gs[p * g.N];
    }
    V[idx] = v;
    U[idx] = u;
  }
};

// Item (b, h, t), t fastest: the row-local parts of ∂loss/∂l_i and ∂loss/∂Δ_i.
//   intra: rowf_i = Σ_{j≤i} F_ij·Δ_j enters dl_i; colf_i = Σ_{k≥i} F_ki enters dΔ_i, and −Δ_i·colf_i dl_i
//   inter: dl_i += e_i·⟨C_i, V_i⟩ (= e_i·Σ_p dy_ip·(S_prev·C_i)_p)
//   state: dw_i = ⟨B_i, U_i⟩; w_i = exp(l_{L−1} − l_i)·Δ_i gives dΔ_i += dw_i·exp(l_{L−1} − l_i),
//          dl_i −= dw_i·w_i and dl_{L−1} += dw_i·w_i (the last is summed by ChunkParamGrads, from dww)
//   skip:  dxy_i = ⟨x_i, dy_i⟩ (summed into dD by ChunkParamGrads) when D is given.
template <class T>
struct RowGrads {
  Geo g;
  const T *x, *dt, *B, *C, *D, *dy, *cum, *erow, *wrow, *V, *U, *m1;
  T *dl, *ddt_direct, *dww, *dxy;
  TXS_HD int64_t count() const { return g.batch * g.H * g.seq; }
  TXS_HD void operator()(int64_t idx) const {
    const int64_t t = idx % g.seq, bh = idx / g.seq, h = bh % g.H, b = bh / g.H, grp = h / g.hpg;
    const int64_t c = t / g.Q, i = t - c * g.Q, L = g.len(c), t0 = c * g.Q, r0 = b * g.seq + t0;
    const int64_t row = r0 + i, bhc = bh * g.nc + c, base = bh * g.seq + t0;
    const T* Fc = m1 + bhc * g.QQ();
    const T* dtc = dt + r0 * g.ds + h;
    T rowf = 0, colf = 0;
    for (int64_t j = 0; j <= i; ++j) rowf += Fc[i * g.Qe + j] * dtc[j * g.ds];
    for (int64_t k = i; k < L; ++k) colf += Fc[k * g.Qe + i];
    const T* Ci = C + row * g.bs + grp * g.N;
    const T* Bi = B + row * g.bs + grp * g.N;
    const T* Vi = V + idx * g.N;
    const T* Ui = U + idx * g.N;
    T inter = 0, dw = 0;
    for (int64_t n = 0; n < g.N; ++n) {
      inter += Ci[n] * Vi[n];
      dw += Bi[n] * Ui[n];
    }
    const T delta = dtc[i * g.ds], w = wrow[idx];
    const T eta = exp_t(cum[base + L - 1] - cum[idx]);
    dl[idx] = rowf - delta * colf + erow[idx] * inter - dw * w;
    ddt_direct[idx] = colf + dw * eta;
    dww[idx] = dw * w;
    if (D) {
      const T* xi = x + row * g.xs + h * g.P;
      const T* dyi = dy + row * g.ys + h * g.P;
      T s = 0;
      for (int64_t p = 0; p < g.P; ++p) s += xi[p] * dyi[p];
      dxy[idx] = s;
    }
  }
};

// Item (b, h, c): the chunk-level terms of dl_{L−1} (α·⟨Gs, S_prev⟩ and Σ_j dw_j·w_j), then through
// l_i = A·Σ_{k≤i} Δ_k with R_k = Σ_{i≥k} dl_i: ddt_k = ddt_direct_k + A·R_k (written), and the chunk's parts of
// dA (Σ_k Δ_k·R_k) and dD (Σ_i dxy_i).
template <class T>
struct ChunkParamGrads {
  Geo g;
  const T *dt, *A, *D, *alpha, *states, *dstates, *dl, *ddt_direct, *dww, *dxy;
  T *ddt, *dA_part, *dD_part;
  TXS_HD int64_t count() const { return g.batch * g.H * g.nc; }
  TXS_HD void operator()(int64_t idx) const {
    const int64_t c = idx % g.nc, bh = idx / g.nc, h = bh % g.H, b = bh / g.H;
    const int64_t L = g.len(c), t0 = c * g.Q, r0 = b * g.seq + t0, base = bh * g.seq + t0;
    const T* S = states + idx * g.PN();
    const T* Gs = dstates + idx * g.PN();
    T gs = 0;
    for (int64_t e = 0; e < g.PN(); ++e) gs += Gs[e] * S[e];
    T extra = alpha[idx] * gs;
    for (int64_t j = 0; j < L; ++j) extra += dww[base + j];
    const T a = A[h];
    T R = extra, dAc = 0;
    for (int64_t k = L - 1; k >= 0; --k) {
      R += dl[base + k];
      const T delta = dt[(r0 + k) * g.ds + h];
      ddt[(r0 + k) * g.ds + h] = ddt_direct[base + k] + a * R;
      dAc += delta * R;
    }
    dA_part[idx] = dAc;
    if (D) {
      T d = 0;
      for (int64_t i = 0; i < L; ++i) d += dxy[base + i];
      dD_part[idx] = d;
    }
  }
};

// Item h: dA_h += Σ_{b,c} dA_part, dD_h += Σ_{b,c} dD_part (D non-null), in a fixed order.
template <class T>
struct HeadParamGrads {
  Geo g;
  const T *D, *dA_part, *dD_part;
  T *dA, *dD;
  TXS_HD int64_t count() const { return g.H; }
  TXS_HD void operator()(int64_t h) const {
    T a = 0, d = 0;
    for (int64_t b = 0; b < g.batch; ++b)
      for (int64_t c = 0; c < g.nc; ++c) {
        a += dA_part[(b * g.H + h) * g.nc + c];
        if (D) d += dD_part[(b * g.H + h) * g.nc + c];
      }
    dA[h] += a;
    if (D) dD[h] += d;
  }
};

// Item (b, t, grp, n), n fastest: dC and dB of a row (written); dG (m2) is already the group's sum.
//   dC_in = Σ_h e_i·V_in + Σ_{j≤i} dG_ij·B_jn
//   dB_in = Σ_h w_i·U_in + Σ_{k≥i} dG_ki·C_kn
template <class T>
struct BCGrads {
  Geo g;
  const T *B, *C, *erow, *wrow, *V, *U, *m2;
  T *dB, *dC;
  TXS_HD int64_t count() const { return g.batch * g.seq * g.G * g.N; }
  TXS_HD void operator()(int64_t idx) const {
    const int64_t n = idx % g.N, grp = idx / g.N % g.G, row = idx / (g.G * g.N), b = row / g.seq, t = row % g.seq;
    const int64_t c = t / g.Q, i = t - c * g.Q, L = g.len(c), t0 = c * g.Q, r0 = b * g.seq + t0;
    T dc = 0, db = 0;
    for (int64_t h = grp * g.hpg; h < (grp + 1) * g.hpg; ++h) {
      const int64_t tok = (b * g.H + h) * g.seq + t;
      dc += erow[tok] * V[tok * g.N + n];
      db += wrow[tok] * U[tok * g.N + n];
    }
    const T* dGc = m2 + ((b * g.G + grp) * g.nc + c) * g.QQ();
    const T* Bc = B + r0 * g.bs + grp * g.N + n;
    const T* Cc = C + r0 * g.bs + grp * g.N + n;
    for (int64_t j = 0; j <= i; ++j) dc += dGc[i * g.Qe + j] * Bc[j * g.bs];
    for (int64_t k = i; k < L; ++k) db += dGc[k * g.Qe + i] * Cc[k * g.bs];
    dC[row * g.bs + grp * g.N + n] = dc;
    dB[row * g.bs + grp * g.N + n] = db;
  }
};

// Item (b, h, p) of a decoding step: S_p = a·S_p + Δ·x_p·B, y_p = ⟨S_p, C⟩ (+ D·x_p), a = exp(Δ·A_h).
// Contiguous layouts: x, y [batch, H·P], dt [batch, H], B, C [batch, G·N], state [batch, H·P·N].
template <class T>
struct Step {
  int64_t batch, H, P, G, N;
  const T *x, *dt, *A, *B, *C, *D;
  T *state, *y;
  TXS_HD int64_t count() const { return batch * H * P; }
  TXS_HD void operator()(int64_t idx) const {
    const int64_t bh = idx / P, h = bh % H, b = bh / H, grp = h / (H / G);
    const T d = dt[bh], a = exp_t(d * A[h]), dx = d * x[idx];
    const T* Bt = B + (b * G + grp) * N;
    const T* Ct = C + (b * G + grp) * N;
    T* S = state + idx * N;
    T acc = 0;
    for (int64_t n = 0; n < N; ++n) {
      S[n] = a * S[n] + dx * Bt[n];
      acc += S[n] * Ct[n];
    }
    y[idx] = acc + (D ? D[h] * x[idx] : T(0));
  }
};

// Item h: A = −exp(A_log).
template <class T>
struct DecayForward {
  const T* A_log;
  T* A;
  int64_t heads;
  TXS_HD int64_t count() const { return heads; }
  TXS_HD void operator()(int64_t h) const { A[h] = -exp_t(A_log[h]); }
};

// Item h: dA_log += dA·A.
template <class T>
struct DecayBackward {
  const T *dA, *A;
  T* dA_log;
  int64_t heads;
  TXS_HD int64_t count() const { return heads; }
  TXS_HD void operator()(int64_t h) const { dA_log[h] += dA[h] * A[h]; }
};

}  // namespace txs::cuda::ssd
