// Plain reference forms of the SSD scan (spec section 4) for tests: the token-by-token recurrence and the
// quadratic ("attention-like") form. Same layout and strides as ssd_forward; slow, written for clarity,
// accumulating in double whatever T is.
#pragma once
#include <algorithm>
#include <cmath>
#include <vector>

#include "ops/cpu/ssd_scan.h"

namespace txs::cpu::reference {

// S_t = exp(Δ_t·A_h)·S_{t−1} + Δ_t·x_t⊗B_t,  y_t = S_t·C_t + D_h·x_t.
template <class T>
void ssd_recurrent(const SsdShape& s, const T* x, const T* dt, const T* A, const T* B, const T* C, const T* D,
                   const T* init_state, T* y, T* final_state) {
  const int64_t H = s.heads, P = s.head_dim, N = s.state_dim, hpg = s.heads / s.groups;
  std::vector<double> S(static_cast<size_t>(P * N));
  for (int64_t b = 0; b < s.batch; ++b)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t g = h / hpg;
      const int64_t sidx = (b * H + h) * P * N;
      for (int64_t i = 0; i < P * N; ++i) S[size_t(i)] = init_state ? double(init_state[sidx + i]) : 0.0;
      for (int64_t t = 0; t < s.seq; ++t) {
        const int64_t row = b * s.seq + t;
        const double d = dt[row * s.dt_stride + h];
        const double a = std::exp(d * double(A[h]));
        const T* xt = x + row * s.x_stride + h * P;
        const T* Bt = B + row * s.bc_stride + g * N;
        const T* Ct = C + row * s.bc_stride + g * N;
        for (int64_t p = 0; p < P; ++p) {
          double acc = 0;
          for (int64_t n = 0; n < N; ++n) {
            double& v = S[size_t(p * N + n)];
            v = a * v + d * double(xt[p]) * double(Bt[n]);
            acc += v * double(Ct[n]);
          }
          if (D) acc += double(D[h]) * double(xt[p]);
          y[row * s.y_stride + h * P + p] = T(acc);
        }
      }
      if (final_state)
        for (int64_t i = 0; i < P * N; ++i) final_state[sidx + i] = T(S[size_t(i)]);
    }
}

// y_t = Σ_{s≤t} exp(Λ_t − Λ_s)·⟨C_t, B_s⟩·Δ_s·x_s + exp(Λ_t)·S_init·C_t + D·x_t, Λ_t = Σ_{k≤t} Δ_k·A;
// final state = exp(Λ_{T−1})·S_init + Σ_s exp(Λ_{T−1} − Λ_s)·Δ_s·x_s⊗B_s. O(T²) per head.
template <class T>
void ssd_quadratic(const SsdShape& s, const T* x, const T* dt, const T* A, const T* B, const T* C, const T* D,
                   const T* init_state, T* y, T* final_state) {
  const int64_t H = s.heads, P = s.head_dim, N = s.state_dim, hpg = s.heads / s.groups, L = s.seq;
  std::vector<double> lam(static_cast<size_t>(L)), out(static_cast<size_t>(P));
  for (int64_t b = 0; b < s.batch; ++b)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t g = h / hpg;
      const int64_t sidx = (b * H + h) * P * N;
      auto row = [&](int64_t t) { return b * s.seq + t; };
      double acc_l = 0;
      for (int64_t t = 0; t < L; ++t) lam[size_t(t)] = acc_l += double(dt[row(t) * s.dt_stride + h]) * double(A[h]);
      for (int64_t t = 0; t < L; ++t) {
        const T* Ct = C + row(t) * s.bc_stride + g * N;
        std::fill(out.begin(), out.end(), 0.0);
        for (int64_t u = 0; u <= t; ++u) {
          const T* Bu = B + row(u) * s.bc_stride + g * N;
          double cb = 0;
          for (int64_t n = 0; n < N; ++n) cb += double(Ct[n]) * double(Bu[n]);
          const double w = std::exp(lam[size_t(t)] - lam[size_t(u)]) * cb * double(dt[row(u) * s.dt_stride + h]);
          for (int64_t p = 0; p < P; ++p) out[size_t(p)] += w * double(x[row(u) * s.x_stride + h * P + p]);
        }
        const double e = std::exp(lam[size_t(t)]);
        for (int64_t p = 0; p < P; ++p) {
          double v = out[size_t(p)];
          if (init_state)
            for (int64_t n = 0; n < N; ++n) v += e * double(init_state[sidx + p * N + n]) * double(Ct[n]);
          if (D) v += double(D[h]) * double(x[row(t) * s.x_stride + h * P + p]);
          y[row(t) * s.y_stride + h * P + p] = T(v);
        }
      }
      if (final_state)
        for (int64_t p = 0; p < P; ++p)
          for (int64_t n = 0; n < N; ++n) {
            const double last = L ? lam[size_t(L - 1)] : 0.0;
            double v = init_state ? std::exp(last) * double(init_state[sidx + p * N + n]) : 0.0;
            for (int64_t u = 0; u < L; ++u)
              v += std::exp(last - lam[size_t(u)]) * double(dt[row(u) * s.dt_stride + h]) *
                   double(x[row(u) * s.x_stride + h * P + p]) * double(B[row(u) * s.bc_stride + g * N + n]);
            final_state[sidx + p * N + n] = T(v);
          }
    }
}

}  // namespace txs::cpu::reference
