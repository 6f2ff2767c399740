// The op table: every computation the model, trainer, optimizer, inference engine, eval and server do on
// tensor memory goes through one Backend, and only src/ops/<backend> knows how. A backend owns its memory
// (alloc/free, upload/download, copy, synchronise) and checks the dtype and device of every operand.
//
// Conventions. Operands are 2-D strided views (ops/tensor.h); an absent optional operand is an empty
// Tensor{}. Outputs are written, except where an op says "accumulated" (+=): parameter gradients
// accumulate so that several passes can share one gradient buffer. Semantics of each op are documented
// next to the CPU kernels in src/ops/cpu/*.h; the float64 instantiations of those kernels are what the
// backend-conformance suite (tests/test_backend_conformance.cpp) checks every backend against.
// The CPU backend computes in fp32, or with bf16 weights in its products (the bf16 mode); its kernels are
// also instantiated in fp64 for the tests.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "ops/shapes.h"
#include "ops/tensor.h"

namespace txs {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  virtual Device device() const = 0;

  // ---- memory -------------------------------------------------------------------------------------------
  virtual void* alloc(size_t bytes) = 0;  // 64-byte aligned; throws std::bad_alloc
  virtual void free(void* p) = 0;
  // Host ↔ backend transfers of a whole view; the host side is contiguous [rows, cols] of the same dtype.
  virtual void upload(const void* host, const Tensor& dst) = 0;
  virtual void download(const Tensor& src, void* host) = 0;
  // dst = src (same shape, any strides; both in this backend's memory). Overlap is not allowed. Same dtype,
  // or f32 → bf16 (round to nearest even: the bf16 mode's weight copies) and bf16 → f32 (exact).
  virtual void copy(const Tensor& src, const Tensor& dst) = 0;
  virtual void fill(const Tensor& dst, double value) = 0;
  // Waits until every op issued so far has finished (a no-op where ops are synchronous).
  virtual void synchronize() = 0;

  // ---- dense --------------------------------------------------------------------------------------------
  // Mixed precision: W (and the LM head's / the embedding's table) may be bf16 while activations and
  // gradients stay fp32; then the products take bf16 inputs (fp32 operands rounded on the way in) and
  // accumulate in fp32. Every other op computes in fp32; each kernel's header in src/ops/cpu says why.
  // y[rows,out] = x[rows,in] · W[out,in]ᵀ. x, y contiguous.
  virtual void linear_forward(const Tensor& x, const Tensor& W, const Tensor& y) = 0;
  // dx = dy·W (written, or accumulated when accumulate_dx; dx may be absent), dW += dyᵀ·x.
  virtual void linear_backward(const Tensor& dy, const Tensor& x, const Tensor& W, const Tensor& dx,
                               const Tensor& dW, bool accumulate_dx) = 0;

  // ---- normalisation, position --------------------------------------------------------------------------
  // y = x / rms(x) ⊙ gain per row; rstd [rows] saved for the backward pass.
  virtual void rmsnorm_forward(const Tensor& x, const Tensor& gain, const Tensor& y, const Tensor& rstd,
                               double eps) = 0;
  // dx written, dgain accumulated.
  virtual void rmsnorm_backward(const Tensor& dy, const Tensor& x, const Tensor& gain, const Tensor& rstd,
                                const Tensor& dx, const Tensor& dgain) = 0;
  // Rotates in place `heads` vectors of size coeffs.dim at the start of each row of x, row r at position
  // pos[r] (pos: I32 [1, rows]); inverse rotates by −pos (the backward pass).
  virtual void rope_apply(const Tensor& x, int64_t heads, const Tensor& pos, const RopeCoeffs& coeffs,
                          bool inverse) = 0;

  // ---- attention ----------------------------------------------------------------------------------------
  // Causal flash attention; q [B·q_len, H·P], k, v [B·kv_len, Hkv·P], out [B·q_len, H·P], lse [B·H, q_len].
  virtual void attention_forward(const AttentionShape& s, const Tensor& q, const Tensor& k, const Tensor& v,
                                 const Tensor& out, const Tensor& lse) = 0;
  // dq, dk, dv written.
  virtual void attention_backward(const AttentionShape& s, const Tensor& q, const Tensor& k, const Tensor& v,
                                  const Tensor& out, const Tensor& lse, const Tensor& dout, const Tensor& dq,
                                  const Tensor& dk, const Tensor& dv) = 0;
  // One query (the newest token of one sequence) over its KV cache: q [1, H·P], k, v [kv_len, Hkv·P]
  // (every cached key is visible), out [1, H·P].
  virtual void attention_decode(int64_t heads, int64_t kv_heads, int64_t head_dim, const Tensor& q,
                                const Tensor& k, const Tensor& v, const Tensor& out) = 0;

  // ---- state-space (SSD) --------------------------------------------------------------------------------
  // A = −exp(A_log) (per head), and its backward: dA_log += dA ⊙ A.
  virtual void ssd_decay_forward(const Tensor& A_log, const Tensor& A) = 0;
  virtual void ssd_decay_backward(const Tensor& dA, const Tensor& A, const Tensor& dA_log) = 0;
  // The chunked scan over [B·T] rows: x [rows, H·P], dt [rows, H], A [1,H], B, C [rows, G·N], D [1,H] or
  // absent, init_state [B, H·P·N] or absent (zeros), y [rows, H·P], final_state [B, H·P·N] or absent.
  virtual void ssd_forward(const SsdShape& s, const Tensor& x, const Tensor& dt, const Tensor& A, const Tensor& B,
                           const Tensor& C, const Tensor& D, const Tensor& init_state, const Tensor& y,
                           const Tensor& final_state) = 0;
  // dx, ddt, dB, dC, dinit_state written; dA, dD accumulated.
  virtual void ssd_backward(const SsdShape& s, const Tensor& x, const Tensor& dt, const Tensor& A,
                            const Tensor& B, const Tensor& C, const Tensor& D, const Tensor& init_state,
                            const Tensor& dy, const Tensor& dfinal_state, const Tensor& dx, const Tensor& ddt,
                            const Tensor& dA, const Tensor& dB, const Tensor& dC, const Tensor& dD,
                            const Tensor& dinit_state) = 0;
  // One decoding step of one sequence: state [1, H·P·N] updated in place; x [1, H·P], dt [1, H],
  // B, C [1, G·N], y [1, H·P].
  virtual void ssd_step(int64_t heads, int64_t head_dim, int64_t groups, int64_t state_dim, const Tensor& x,
                        const Tensor& dt, const Tensor& A, const Tensor& B, const Tensor& C, const Tensor& D,
                        const Tensor& state, const Tensor& y) = 0;

  // ---- convolution, activations, residual, embedding ------------------------------------------------------
  // Causal depthwise conv (width K, zero left padding per batch row) + SiLU: x, y [batch·seq, channels],
  // w [channels, K], bias [1, channels].
  virtual void conv1d_silu_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y,
                                   int64_t batch, int64_t seq) = 0;
  // dx written; dw, dbias accumulated.
  virtual void conv1d_silu_backward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& bias,
                                    const Tensor& dx, const Tensor& dw, const Tensor& dbias, int64_t batch,
                                    int64_t seq) = 0;
  // out = silu(gate) ⊙ up; backward writes dgate, dup.
  virtual void silu_mul_forward(const Tensor& gate, const Tensor& up, const Tensor& out) = 0;
  virtual void silu_mul_backward(const Tensor& dout, const Tensor& gate, const Tensor& up, const Tensor& dgate,
                                 const Tensor& dup) = 0;
  // out = w ⊙ skip + branch (w absent: 1); out may alias skip or branch. Backward: dskip = w ⊙ dout
  // (may alias dout), dw += Σ_rows dout ⊙ skip.
  virtual void residual_forward(const Tensor& skip, const Tensor& w, const Tensor& branch, const Tensor& out) = 0;
  virtual void residual_backward(const Tensor& dout, const Tensor& skip, const Tensor& w, const Tensor& dskip,
                                 const Tensor& dw) = 0;
  // dt = softplus(raw + bias) (bias absent: 0); backward writes draw, accumulates dbias.
  virtual void softplus_forward(const Tensor& raw, const Tensor& bias, const Tensor& dt) = 0;
  virtual void softplus_backward(const Tensor& ddt, const Tensor& raw, const Tensor& bias, const Tensor& draw,
                                 const Tensor& dbias) = 0;
  // out[r] = table[ids[r]] (ids: I32 [1, rows]); backward accumulates into dtable.
  virtual void embedding_forward(const Tensor& ids, const Tensor& table, const Tensor& out) = 0;
  virtual void embedding_backward(const Tensor& ids, const Tensor& dout, const Tensor& dtable) = 0;

  // ---- LM head ------------------------------------------------------------------------------------------
  // Fused LM head + cross-entropy in row blocks (never rows × vocab): h [rows, dim], W [vocab, dim],
  // targets I32 [1, rows] (−1 = not counted). target_logprob [1, rows] optional. When dh is given the
  // backward runs: dh written, dW accumulated, both scaled by grad_scale.
  virtual CrossEntropyResult lm_head_cross_entropy(const Tensor& h, const Tensor& W, const Tensor& targets,
                                                   const Tensor& target_logprob, const Tensor& dh,
                                                   const Tensor& dW, float grad_scale) = 0;
  // logits [rows, vocab] = h · Wᵀ.
  virtual void lm_head_logits(const Tensor& h, const Tensor& W, const Tensor& logits) = 0;

  // ---- optimizer, reductions ------------------------------------------------------------------------------
  // One AdamW update of one parameter (w, g, m, v of the same shape); decay: apply weight decay.
  virtual void adamw_update(const Tensor& w, const Tensor& g, const Tensor& m, const Tensor& v,
                            const AdamWParams& p, bool decay) = 0;
  // The same update for many parameters stored one after another in flat views w, g, m, v ([1, n] each):
  // `segments` (ascending, non-overlapping, offsets relative to the views) say which runs are which parameter
  // and whether it decays; elements outside every segment are left alone. The default runs adamw_update per
  // segment; a GPU backend fuses them into one launch (a multi-tensor update: hundreds of parameters, one kernel).
  virtual void adamw_update_segments(const Tensor& w, const Tensor& g, const Tensor& m, const Tensor& v,
                                     const std::vector<AdamWSegment>& segments, const AdamWParams& p);
  // Σ x² in double (gradient norm), and x *= scale (clipping).
  virtual double sum_squares(const Tensor& x) = 0;
  virtual void scale(const Tensor& x, float scale) = 0;
  // True when every element is finite.
  virtual bool all_finite(const Tensor& x) = 0;
};

// The CPU backend (OpenMP + oneDNN); a process-wide instance.
Backend& cpu_backend();

// The backend of a device (process-wide instances). cpu: always. cuda: when this build has the CUDA backend
// (TRANSXSSM_BACKEND_CUDA) and the process sees a GPU; otherwise an error that says which is missing.
Backend& backend_for(Device device);
// "cpu" or "cuda"; anything else is an error that names the choices.
Device parse_device(const std::string& name);
// Why backend_for(Device::Cuda) would fail here ("" when it would not): no CUDA in this build, no GPU
// visible, or the driver's own error. Tests that need a GPU skip with this message.
std::string cuda_unavailable_reason();
// Binds this process to GPU `index` modulo the GPUs it sees, before its CUDA backend is first used (data
// parallelism: one process per GPU, index = the launcher's local rank); returns how many GPUs it sees.
int select_cuda_device(int index);
// One line about the device: the CPU's logical cores, the GPU's name, memory and CUDA versions (or why none).
std::string device_description(Device device);

}  // namespace txs
