// The SSD scan on the GPU (fp32 operands; cumulative sums and exponentials in fp32), with the semantics of
// ops/cpu/ssd_scan.h (spec section 4): per head h with state S ∈ R^{P×N},
//   S_t = exp(Δ_t·A_h)·S_{t−1} + Δ_t · x_t ⊗ B_t,   y_t = S_t · C_t (+ D_h·x_t).
// Training runs the chunked algorithm (chunk s.chunk, default 256): the intra-chunk quadratic form, the chunk
// states, the inter-chunk state pass, the state-to-output products. All pointers are device pointers (null
// where the CPU kernel allows null), all launches on the default stream.
#pragma once
#include <cstdint>

#include "ops/shapes.h"

namespace txs::cuda {

void ssd_forward(const SsdShape& s, const float* x, const float* dt, const float* A, const float* B, const float* C,
                 const float* D, const float* init_state, float* y, float* final_state);
// dx, ddt, dB, dC, dinit_state written; dA, dD accumulated (+=).
void ssd_backward(const SsdShape& s, const float* x, const float* dt, const float* A, const float* B,
                  const float* C, const float* D, const float* init_state, const float* dy,
                  const float* dfinal_state, float* dx, float* ddt, float* dA, float* dB, float* dC, float* dD,
                  float* dinit_state);
// One decoding step of `batch` rows: state [batch, H·P·N] updated in place; x [batch, H·P], dt [batch, H],
// B, C [batch, G·N], y [batch, H·P], all contiguous.
void ssd_step(int64_t batch, int64_t heads, int64_t head_dim, int64_t groups, int64_t state_dim, const float* x,
              const float* dt, const float* A, const float* B, const float* C, const float* D, float* state,
              float* y);
// A = −exp(A_log), and dA_log += dA ⊙ A, per head.
void ssd_decay_forward(const float* A_log, float* A, int64_t heads);
void ssd_decay_backward(const float* dA, const float* A, float* dA_log, int64_t heads);

}  // namespace txs::cuda
