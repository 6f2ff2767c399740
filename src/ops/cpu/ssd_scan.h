// The SSD scan (spec section 4), per head h with state S ∈ R^{P×N}:
//   S_t = exp(Δ_t·A_h)·S_{t−1} + Δ_t · x_t ⊗ B_t,   y_t = S_t · C_t  (+ D_h·x_t when D is given)
// Training uses the chunked algorithm (intra-chunk quadratic part, chunk states, inter-chunk
// recurrence, state-to-output) with cumulative sums and exponentials in fp32 or better.
// bf16 mode: fp32. exp(cumsum(Δ·A)) over a chunk needs fp32 (a bf16 cumulative sum loses the small decay
// differences the scan depends on), and the carried state accumulates over every token of a sequence.
#pragma once
#include <cstdint>

#include "ops/shapes.h"

namespace txs::cpu {

using txs::SsdShape;

// x [rows,H,P], dt [rows,H] (Δ, already softplus'd), A [H] (negative), B, C [rows,G,N], D [H] or null,
// init_state [B,H,P,N] or null (zeros), y [rows,H,P], final_state [B,H,P,N] or null.
template <class T>
void ssd_forward(const SsdShape& s, const T* x, const T* dt, const T* A, const T* B, const T* C, const T* D,
                 const T* init_state, T* y, T* final_state);

// dy [rows,H,P] (stride y_stride); dfinal_state [B,H,P,N] or null. Writes (not accumulates) dx, ddt, dB, dC
// with the strides of their inputs, dinit_state when non-null; dA [H] and dD [H] (when D given) are
// accumulated (+=) so several calls can share parameter-gradient buffers.
template <class T>
void ssd_backward(const SsdShape& s, const T* x, const T* dt, const T* A, const T* B, const T* C, const T* D,
                  const T* init_state, const T* dy, const T* dfinal_state, T* dx, T* ddt, T* dA, T* dB, T* dC,
                  T* dD, T* dinit_state);

// One decoding step for `batch` independent rows: state [batch,H,P,N] updated in place; x [batch,H,P],
// dt [batch,H], B, C [batch,G,N] contiguous; y [batch,H,P].
template <class T>
void ssd_step(int64_t batch, int64_t heads, int64_t head_dim, int64_t groups, int64_t state_dim, const T* x,
              const T* dt, const T* A, const T* B, const T* C, const T* D, T* state, T* y);

// A = −exp(A_log) per head, and the backward dA_log += dA ⊙ A (dA/dA_log = A).
template <class T>
void ssd_decay_forward(const T* A_log, T* A, int64_t heads);
template <class T>
void ssd_decay_backward(const T* dA, const T* A, T* dA_log, int64_t heads);

}  // namespace txs::cpu
