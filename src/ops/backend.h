// The op layer: every computation of the model goes through one Backend, so that a CUDA backend (and a
// data-parallel wrapper) can be added without touching model code. Pointers are in the backend's memory.
// Semantics of each op are documented next to the CPU kernels in src/ops/cpu/*.h.
#pragma once
#include <cstdint>
#include <memory>

#include "ops/cpu/adamw.h"
#include "ops/cpu/attention.h"
#include "ops/cpu/cross_entropy.h"
#include "ops/cpu/rope.h"
#include "ops/cpu/ssd_scan.h"

namespace txs {

using cpu::AttentionShape;
using cpu::CrossEntropyResult;
using cpu::RopeTable;
using cpu::SsdShape;

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;

  virtual void linear_forward(const float* x, const float* W, float* y, int64_t rows, int64_t in, int64_t out) = 0;
  virtual void linear_backward(const float* dy, const float* x, const float* W, float* dx, float* dW, int64_t rows,
                               int64_t in, int64_t out, bool accumulate_dx) = 0;

  virtual void rmsnorm_forward(const float* x, const float* gain, float* y, float* rstd, int64_t rows, int64_t dim,
                               double eps) = 0;
  virtual void rmsnorm_backward(const float* dy, const float* x, const float* gain, const float* rstd, float* dx,
                                float* dgain, int64_t rows, int64_t dim) = 0;

  virtual void rope_apply(float* x, int64_t rows, int64_t heads, int64_t row_stride, const int32_t* pos,
                          const RopeTable& table, bool inverse) = 0;

  virtual void attention_forward(const AttentionShape& s, const float* q, const float* k, const float* v, float* out,
                                 float* lse) = 0;
  virtual void attention_backward(const AttentionShape& s, const float* q, const float* k, const float* v,
                                  const float* out, const float* lse, const float* dout, float* dq, float* dk,
                                  float* dv) = 0;

  virtual void ssd_forward(const SsdShape& s, const float* x, const float* dt, const float* A, const float* B,
                           const float* C, const float* D, const float* init_state, float* y,
                           float* final_state) = 0;
  virtual void ssd_backward(const SsdShape& s, const float* x, const float* dt, const float* A, const float* B,
                            const float* C, const float* D, const float* init_state, const float* dy,
                            const float* dfinal_state, float* dx, float* ddt, float* dA, float* dB, float* dC,
                            float* dD, float* dinit_state) = 0;
  virtual void ssd_step(int64_t batch, int64_t heads, int64_t head_dim, int64_t groups, int64_t state_dim,
                        const float* x, const float* dt, const float* A, const float* B, const float* C,
                        const float* D, float* state, float* y) = 0;

  virtual void conv1d_silu_forward(const float* x, int64_t x_stride, const float* w, const float* bias, float* y,
                                   int64_t y_stride, int64_t batch, int64_t seq, int64_t channels,
                                   int64_t width) = 0;
  virtual void conv1d_silu_backward(const float* dy, int64_t y_stride, const float* x, int64_t x_stride,
                                    const float* w, const float* bias, float* dx, float* dw, float* dbias,
                                    int64_t batch, int64_t seq, int64_t channels, int64_t width) = 0;

  virtual void silu_mul_forward(const float* gate, int64_t gate_stride, const float* up, int64_t up_stride,
                                float* out, int64_t out_stride, int64_t rows, int64_t n) = 0;
  virtual void silu_mul_backward(const float* dout, int64_t out_stride, const float* gate, int64_t gate_stride,
                                 const float* up, int64_t up_stride, float* dgate, float* dup, int64_t rows,
                                 int64_t n) = 0;
  virtual void residual_forward(const float* skip, const float* w, const float* branch, float* out, int64_t rows,
                                int64_t dim) = 0;
  virtual void residual_backward(const float* dout, const float* skip, const float* w, float* dskip, float* dw,
                                 int64_t rows, int64_t dim) = 0;
  virtual void softplus_forward(const float* raw, int64_t raw_stride, const float* bias, float* dt, int64_t rows,
                                int64_t heads) = 0;
  virtual void softplus_backward(const float* ddt, const float* raw, int64_t raw_stride, const float* bias,
                                 float* draw, float* dbias, int64_t rows, int64_t heads) = 0;
  virtual void embedding_forward(const int32_t* ids, const float* table, float* out, int64_t rows, int64_t dim) = 0;
  virtual void embedding_backward(const int32_t* ids, const float* dout, float* dtable, int64_t rows,
                                  int64_t dim) = 0;

  virtual CrossEntropyResult lm_head_cross_entropy(const float* h, const float* W, const int32_t* targets,
                                                   int64_t rows, int64_t dim, int64_t vocab, float* target_logprob,
                                                   float* dh, float* dW, float grad_scale) = 0;
  virtual void lm_head_logits(const float* h, const float* W, float* logits, int64_t rows, int64_t dim,
                              int64_t vocab) = 0;

  virtual void adamw_update(float* w, const float* g, float* m, float* v, int64_t n, const cpu::AdamWParams& p,
                            bool decay) = 0;
  virtual double sum_squares(const float* x, int64_t n) = 0;
  virtual void scale_inplace(float* x, int64_t n, float scale) = 0;
};

// The CPU backend (OpenMP + oneDNN); a process-wide instance.
Backend& cpu_backend();

}  // namespace txs
