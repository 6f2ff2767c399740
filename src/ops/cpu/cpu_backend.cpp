// Binds the CPU kernels (fp32 instantiations) into the op table.
#include "ops/backend.h"
#include "ops/cpu/conv1d.h"
#include "ops/cpu/elementwise.h"
#include "ops/cpu/gemm.h"
#include "ops/cpu/rmsnorm.h"

namespace txs {
namespace {

class CpuBackend final : public Backend {
 public:
  const char* name() const override { return "cpu"; }

  void linear_forward(const float* x, const float* W, float* y, int64_t rows, int64_t in, int64_t out) override {
    cpu::linear_forward(x, W, y, rows, in, out);
  }
  void linear_backward(const float* dy, const float* x, const float* W, float* dx, float* dW, int64_t rows,
                       int64_t in, int64_t out, bool accumulate_dx) override {
    cpu::linear_backward(dy, x, W, dx, dW, rows, in, out, accumulate_dx);
  }
  void rmsnorm_forward(const float* x, const float* gain, float* y, float* rstd, int64_t rows, int64_t dim,
                       double eps) override {
    cpu::rmsnorm_forward(x, gain, y, rstd, rows, dim, eps);
  }
  void rmsnorm_backward(const float* dy, const float* x, const float* gain, const float* rstd, float* dx,
                        float* dgain, int64_t rows, int64_t dim) override {
    cpu::rmsnorm_backward(dy, x, gain, rstd, dx, dgain, rows, dim);
  }
  void rope_apply(float* x, int64_t rows, int64_t heads, int64_t row_stride, const int32_t* pos,
                  const RopeTable& table, bool inverse) override {
    cpu::rope_apply(x, rows, heads, row_stride, pos, table, inverse);
  }
  void attention_forward(const AttentionShape& s, const float* q, const float* k, const float* v, float* out,
                         float* lse) override {
    cpu::attention_forward(s, q, k, v, out, lse);
  }
  void attention_backward(const AttentionShape& s, const float* q, const float* k, const float* v, const float* out,
                          const float* lse, const float* dout, float* dq, float* dk, float* dv) override {
    cpu::attention_backward(s, q, k, v, out, lse, dout, dq, dk, dv);
  }
  void ssd_forward(const SsdShape& s, const float* x, const float* dt, const float* A, const float* B, const float* C,
                   const float* D, const float* init_state, float* y, float* final_state) override {
    cpu::ssd_forward(s, x, dt, A, B, C, D, init_state, y, final_state);
  }
  void ssd_backward(const SsdShape& s, const float* x, const float* dt, const float* A, const float* B,
                    const float* C, const float* D, const float* init_state, const float* dy,
                    const float* dfinal_state, float* dx, float* ddt, float* dA, float* dB, float* dC, float* dD,
                    float* dinit_state) override {
    cpu::ssd_backward(s, x, dt, A, B, C, D, init_state, dy, dfinal_state, dx, ddt, dA, dB, dC, dD, dinit_state);
  }
  void ssd_step(int64_t batch, int64_t heads, int64_t head_dim, int64_t groups, int64_t state_dim, const float* x,
                const float* dt, const float* A, const float* B, const float* C, const float* D, float* state,
                float* y) override {
    cpu::ssd_step(batch, heads, head_dim, groups, state_dim, x, dt, A, B, C, D, state, y);
  }
  void conv1d_silu_forward(const float* x, int64_t x_stride, const float* w, const float* bias, float* y,
                           int64_t y_stride, int64_t batch, int64_t seq, int64_t channels, int64_t width) override {
    cpu::conv1d_silu_forward(x, x_stride, w, bias, y, y_stride, batch, seq, channels, width);
  }
  void conv1d_silu_backward(const float* dy, int64_t y_stride, const float* x, int64_t x_stride, const float* w,
                            const float* bias, float* dx, float* dw, float* dbias, int64_t batch, int64_t seq,
                            int64_t channels, int64_t width) override {
    cpu::conv1d_silu_backward(dy, y_stride, x, x_stride, w, bias, dx, dw, dbias, batch, seq, channels, width);
  }
  void silu_mul_forward(const float* gate, int64_t gate_stride, const float* up, int64_t up_stride, float* out,
                        int64_t out_stride, int64_t rows, int64_t n) override {
    cpu::silu_mul_forward(gate, gate_stride, up, up_stride, out, out_stride, rows, n);
  }
  void silu_mul_backward(const float* dout, int64_t out_stride, const float* gate, int64_t gate_stride,
                         const float* up, int64_t up_stride, float* dgate, float* dup, int64_t rows,
                         int64_t n) override {
    cpu::silu_mul_backward(dout, out_stride, gate, gate_stride, up, up_stride, dgate, dup, rows, n);
  }
  void residual_forward(const float* skip, const float* w, const float* branch, float* out, int64_t rows,
                        int64_t dim) override {
    cpu::residual_forward(skip, w, branch, out, rows, dim);
  }
  void residual_backward(const float* dout, const float* skip, const float* w, float* dskip, float* dw,
                         int64_t rows, int64_t dim) override {
    cpu::residual_backward(dout, skip, w, dskip, dw, rows, dim);
  }
  void softplus_forward(const float* raw, int64_t raw_stride, const float* bias, float* dt, int64_t rows,
                        int64_t heads) override {
    cpu::softplus_forward(raw, raw_stride, bias, dt, rows, heads);
  }
  void softplus_backward(const float* ddt, const float* raw, int64_t raw_stride, const float* bias, float* draw,
                         float* dbias, int64_t rows, int64_t heads) override {
    cpu::softplus_backward(ddt, raw, raw_stride, bias, draw, dbias, rows, heads);
  }
  void embedding_forward(const int32_t* ids, const float* table, float* out, int64_t rows, int64_t dim) override {
    cpu::embedding_forward(ids, table, out, rows, dim);
  }
  void embedding_backward(const int32_t* ids, const float* dout, float* dtable, int64_t rows, int64_t dim) override {
    cpu::embedding_backward(ids, dout, dtable, rows, dim);
  }
  CrossEntropyResult lm_head_cross_entropy(const float* h, const float* W, const int32_t* targets, int64_t rows,
                                           int64_t dim, int64_t vocab, float* target_logprob, float* dh, float* dW,
                                           float grad_scale) override {
    return cpu::lm_head_cross_entropy(h, W, targets, rows, dim, vocab, target_logprob, dh, dW, grad_scale);
  }
  void lm_head_logits(const float* h, const float* W, float* logits, int64_t rows, int64_t dim,
                      int64_t vocab) override {
    cpu::lm_head_logits(h, W, logits, rows, dim, vocab);
  }
  void adamw_update(float* w, const float* g, float* m, float* v, int64_t n, const cpu::AdamWParams& p,
                    bool decay) override {
    cpu::adamw_update(w, g, m, v, n, p, decay);
  }
  double sum_squares(const float* x, int64_t n) override { return cpu::sum_squares(x, n); }
  void scale_inplace(float* x, int64_t n, float scale) override { cpu::scale_inplace(x, n, scale); }
};

}  // namespace

Backend& cpu_backend() {
  static CpuBackend backend;
  return backend;
}

}  // namespace txs
