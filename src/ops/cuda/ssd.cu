// The SSD scan on the GPU (interface and semantics: ops/cuda/ssd.h, ops/cpu/ssd_scan.h, spec section 4).
//
// Algorithm: the chunked SSD, in fp32 throughout (cumulative sums and exponentials included). Per batch row b,
// head h and chunk c of L ≤ Q tokens (the last chunk may be ragged), with l_i = Σ_{k≤i} Δ_k·A_h:
//   Y_i = Σ_{j≤i} ⟨C_i, B_j⟩·exp(l_i − l_j)·Δ_j·x_j + exp(l_i)·S_prev·C_i + D·x_i
//   S_c = exp(l_{L−1})·S_prev + Σ_j exp(l_{L−1} − l_j)·Δ_j·x_j ⊗ B_j
// Forward kernels, in order (each one thread per item; items and formulas in bodies/ssd_bodies.h):
//   ssd_chunk_decay     (b,h,c)        l, exp(l_i), the state weights w_j, α = exp(l_{L−1}); sequential over
//                                      the chunk's tokens
//   ssd_transpose_b     (b,g,n,t)      B transposed to [B, G, N, T], so that loops over tokens read it coalesced
//   ssd_chunk_states    (b,h,c,p,n)    the chunk's local state Σ_j x_jp·w_j·B_jn
//   ssd_state_pass      (b,h,p,n)      S_c = α_c·S_{c−1} + local_c, sequential over chunks; leaves S_prev per
//                                      chunk in place (and transposed, [N, P]) and writes the final state
//   ssd_decayed_gram    (b,g,c,i,j)    ⟨C_i, B_j⟩ once per group, then for each of its heads
//                                      GE_ij = ⟨C_i, B_j⟩·exp(l_i − l_j), j ≤ i, into a [Qe×Qe] matrix per chunk
//   ssd_outputs         (b,t,h,p)      y = intra (GE·Δ·x) + inter (exp(l_i)·C_i·S_prev) + D·x
// Backward kernels, in order: chunk_decay; transpose_b; transpose_x; chunk_states, also computing
// Z_c = Σ_i exp(l_i)·dy_i ⊗ C_i; state_pass; state_pass_backward (the adjoint recurrence backwards over chunks
// → Gs = ∂loss/∂(state leaving c), dinit); decayed_gram; input_grad (dx; reads GE); decayed_gram_backward
// (per group: F = ⟨dy_i, x_j⟩·GE in place of each head's GE, and dG = ∂loss/∂⟨C_i, B_j⟩ summed over the
// group's heads); state_row_products (V_i = dy_i·S_prev,
// U_i = x_i·Gs per token); row_grads (per token: the row-local parts of ∂loss/∂l and ∂loss/∂Δ, ⟨x_i, dy_i⟩);
// chunk_param_grads (per chunk: the suffix sums through the cumulative sum → ddt, partial dA and dD);
// head_param_grads (dA, dD += fixed-order sums of the partials); bc_grads (dB, dC, summed over a group's heads).
// Scratch (device_scratch.h): slot Ssd holds the per-token, per-chunk and chunk-state arrays (chunk states,
// their transposes and gradients: B·H·nc·P·N floats each), B and x transposed, V and U (B·H·T·N each);
// SsdAux the per-head chunk matrices (B·H·nc·Qe² floats, Qe = min(chunk, T): with T = 2048, chunk 256,
// B·H = 128, 256 MiB), SsdAux2 the per-group ones of the backward (B·G·nc·Qe²).
//
// Structure: every kernel is the one template ssd_items — a grid-stride loop over the item index calling a
// functor's operator()(idx) — and the functors (index decoding and all arithmetic) live in
// bodies/ssd_bodies.h, the phase order and scratch layout in bodies/ssd_phases.h. No shared memory, no warp
// intrinsics, no tensor cores: products are fp32 FMA, operands read through L1/L2. The items of a warp differ
// in their fastest index, and the layouts make every inner loop of the heavy kernels read either one address
// per warp or consecutive addresses (the transposed copies exist for that); only row_grads' loops read a row
// per thread. Simple rather than fast: a tiled tensor-core version is future work.
//
// Verified where: tests/test_cuda_ssd_bodies.cpp runs exactly these functors and this phase sequence on the
// host, in fp32 and fp64, against cpu::ssd_forward/ssd_backward<double> (ragged chunks, G < H, strided slices,
// with and without D / init_state / dfinal_state, T = 0). Only this file's launch code (the grid-stride loop,
// the launch configuration, the scratch requests) and device-side expf are left to the GPU: the CudaSsdDevice
// tests of the same file run these launchers against the CPU kernel there (they skip without a GPU).
#include "ops/cuda/ssd.h"

#include <cuda_runtime.h>

#include <algorithm>

#include "core/error.h"
#include "ops/cuda/bodies/ssd_phases.h"
#include "ops/cuda/device_scratch.h"

namespace txs::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = int64_t(1) << 20;  // grid-stride beyond this (gridDim.x may go to 2³¹ − 1)

template <class Item>
__global__ void __launch_bounds__(kThreads) ssd_items(const Item item, int64_t total) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total; idx += stride) item(idx);
}

// The `run` of ssd_phases.h on the device: one launch per phase on the default stream.
struct Launch {
  template <class Item>
  void operator()(const Item& item, const char* name) const {
    const int64_t total = item.count();
    if (total <= 0) return;  // an empty grid is a launch error
    const int64_t blocks = std::min((total + kThreads - 1) / kThreads, kMaxBlocks);
    ssd_items<Item><<<unsigned(blocks), kThreads>>>(item, total);
    const cudaError_t err = cudaGetLastError();  // cleared: not blamed on a later launch
    if (err != cudaSuccess) fail("CUDA error launching {} ({} items): {}", name, total, cudaGetErrorString(err));
  }
};

ssd::Work<float> work(const ssd::Geo& g, bool backward) {
  const ssd::WorkSize size = ssd::work_size(g, backward);
  auto* small = static_cast<float*>(scratch(ScratchSlot::Ssd, size_t(size.small) * sizeof(float)));
  auto* m1 = static_cast<float*>(scratch(ScratchSlot::SsdAux, size_t(size.m1) * sizeof(float)));
  auto* m2 = backward ? static_cast<float*>(scratch(ScratchSlot::SsdAux2, size_t(size.m2) * sizeof(float))) : nullptr;
  return ssd::carve<float>(g, backward, small, m1, m2);
}

}  // namespace

void ssd_forward(const SsdShape& s, const float* x, const float* dt, const float* A, const float* B, const float* C,
                 const float* D, const float* init_state, float* y, float* final_state) {
  const ssd::Geo g = ssd::make_geo(s, "ssd_forward");
  ssd::forward_phases<float>(Launch{}, g, work(g, false), x, dt, A, B, C, D, init_state, y, final_state);
}

void ssd_backward(const SsdShape& s, const float* x, const float* dt, const float* A, const float* B,
                  const float* C, const float* D, const float* init_state, const float* dy,
                  const float* dfinal_state, float* dx, float* ddt, float* dA, float* dB, float* dC, float* dD,
                  float* dinit_state) {
  const ssd::Geo g = ssd::make_geo(s, "ssd_backward");
  ssd::backward_phases<float>(Launch{}, g, work(g, true), x, dt, A, B, C, D, init_state, dy, dfinal_state, dx, ddt,
                              dA, dB, dC, dD, dinit_state);
}

void ssd_step(int64_t batch, int64_t heads, int64_t head_dim, int64_t groups, int64_t state_dim, const float* x,
              const float* dt, const float* A, const float* B, const float* C, const float* D, float* state,
              float* y) {
  if (batch < 0 || heads < 1 || head_dim < 1 || groups < 1 || state_dim < 1 || heads % groups)
    fail("ssd_step: bad shape batch {} heads {} head_dim {} groups {} state_dim {}", batch, heads, head_dim, groups,
         state_dim);
  if (batch > 0 && (!x || !dt || !A || !B || !C || !state || !y))
    fail("ssd_step: x, dt, A, B, C, state and y must be non-null");
  Launch{}(ssd::Step<float>{batch, heads, head_dim, groups, state_dim, x, dt, A, B, C, D, state, y}, "ssd_step");
}

void ssd_decay_forward(const float* A_log, float* A, int64_t heads) {
  Launch{}(ssd::DecayForward<float>{A_log, A, heads}, "ssd_decay_forward");
}

void ssd_decay_backward(const float* dA, const float* A, float* dA_log, int64_t heads) {
  Launch{}(ssd::DecayBackward<float>{dA, A, dA_log, heads}, "ssd_decay_backward");
}

}  // namespace txs::cuda
