// The CPU backend: host memory, fp32 instantiations of the kernels in this folder. Every operand is checked
// for the shape the op needs (ops/op_checks.h, shared with every backend), dtype and device before a kernel
// sees it, so a wrong view is a one-line error instead of an out-of-bounds read.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

#include "core/error.h"
#include "ops/backend.h"
#include "ops/bf16.h"
#include "ops/cpu/adamw.h"
#include "ops/cpu/attention.h"
#include "ops/cpu/conv1d.h"
#include "ops/cpu/cross_entropy.h"
#include "ops/cpu/elementwise.h"
#include "ops/cpu/gemm.h"
#include "ops/cpu/rmsnorm.h"
#include "ops/cpu/rope.h"
#include "ops/cpu/ssd_scan.h"
#include "ops/op_checks.h"
#include "ops/operand_checks.h"

namespace txs {
namespace {

// Typed pointer of an operand in host memory (ops/operand_checks.h).
template <class T = float>
T* ptr(const Tensor& t, const char* op) {
  return operand_ptr<T>(t, Device::Cpu, op);
}

class CpuBackend final : public Backend {
 public:
  const char* name() const override { return "cpu"; }
  Device device() const override { return Device::Cpu; }

  void* alloc(size_t bytes) override {
    void* p = std::aligned_alloc(64, std::max<size_t>(64, (bytes + 63) / 64 * 64));
    if (!p) throw std::bad_alloc();
    return p;
  }
  void free(void* p) override { std::free(p); }

  void upload(const void* host, const Tensor& dst) override { copy_rows(host, dst.cols, dst, "upload", true); }
  void download(const Tensor& src, void* host) override { copy_rows(host, src.cols, src, "download", false); }
  void copy(const Tensor& src, const Tensor& dst) override {
    need_shape(dst, src.rows, src.cols, "copy", "dst");
    check_host(src, "copy"), check_host(dst, "copy");
    if (src.dtype == DType::F32 && dst.dtype == DType::BF16) {  // the bf16 mode's weight refresh
      for (int64_t r = 0; r < src.rows; ++r)
        to_bf16(static_cast<const float*>(src.data) + r * src.stride, static_cast<bf16*>(dst.data) + r * dst.stride,
                src.cols);
      return;
    }
    if (src.dtype == DType::BF16 && dst.dtype == DType::F32) {
      for (int64_t r = 0; r < src.rows; ++r)
        to_f32(static_cast<const bf16*>(src.data) + r * src.stride, static_cast<float*>(dst.data) + r * dst.stride,
               src.cols);
      return;
    }
    need(src.dtype == dst.dtype, "copy", "dtypes differ (only f32 <-> bf16 converts)");
    const size_t row_bytes = size_t(src.cols) * dtype_size(src.dtype), es = dtype_size(src.dtype);
    for (int64_t r = 0; r < src.rows; ++r)
      std::memmove(static_cast<char*>(dst.data) + size_t(r * dst.stride) * es,
                   static_cast<const char*>(src.data) + size_t(r * src.stride) * es, row_bytes);
  }
  void fill(const Tensor& dst, double value) override {
    check_host(dst, "fill");
    for (int64_t r = 0; r < dst.rows; ++r) {
      switch (dst.dtype) {
        case DType::F32: {
          float* p = static_cast<float*>(dst.data) + r * dst.stride;
          std::fill(p, p + dst.cols, float(value));
          break;
        }
        case DType::F64: {
          double* p = static_cast<double*>(dst.data) + r * dst.stride;
          std::fill(p, p + dst.cols, value);
          break;
        }
        case DType::I32: {
          int32_t* p = static_cast<int32_t*>(dst.data) + r * dst.stride;
          std::fill(p, p + dst.cols, int32_t(value));
          break;
        }
        case DType::BF16: {
          bf16* p = static_cast<bf16*>(dst.data) + r * dst.stride;
          std::fill(p, p + dst.cols, to_bf16(float(value)));
          break;
        }
      }
    }
  }
  void synchronize() override {}

  void linear_forward(const Tensor& x, const Tensor& W, const Tensor& y) override {
    const char* op = "linear_forward";
    op_checks::linear_forward(x, W, y);
    if (W.dtype == DType::BF16)
      cpu::linear_forward_bf16(ptr(x, op), ptr<bf16>(W, op), ptr(y, op), x.rows, x.cols, W.rows);
    else
      cpu::linear_forward(ptr(x, op), ptr(W, op), ptr(y, op), x.rows, x.cols, W.rows);
  }
  void linear_backward(const Tensor& dy, const Tensor& x, const Tensor& W, const Tensor& dx, const Tensor& dW,
                       bool accumulate_dx) override {
    const char* op = "linear_backward";
    op_checks::linear_backward(dy, x, W, dx, dW);
    if (W.dtype == DType::BF16)
      cpu::linear_backward_bf16(ptr(dy, op), ptr(x, op), ptr<bf16>(W, op), ptr(dx, op), ptr(dW, op), x.rows, x.cols,
                                W.rows, accumulate_dx);
    else
      cpu::linear_backward(ptr(dy, op), ptr(x, op), ptr(W, op), ptr(dx, op), ptr(dW, op), x.rows, x.cols, W.rows,
                           accumulate_dx);
  }
  void rmsnorm_forward(const Tensor& x, const Tensor& gain, const Tensor& y, const Tensor& rstd,
                       double eps) override {
    const char* op = "rmsnorm_forward";
    op_checks::rmsnorm_forward(x, gain, y, rstd, eps);
    cpu::rmsnorm_forward(ptr(x, op), ptr(gain, op), ptr(y, op), ptr(rstd, op), x.rows, x.cols, eps);
  }
  void rmsnorm_backward(const Tensor& dy, const Tensor& x, const Tensor& gain, const Tensor& rstd, const Tensor& dx,
                        const Tensor& dgain) override {
    const char* op = "rmsnorm_backward";
    op_checks::rmsnorm_backward(dy, x, gain, rstd, dx, dgain);
    cpu::rmsnorm_backward(ptr(dy, op), ptr(x, op), ptr(gain, op), ptr(rstd, op), ptr(dx, op), ptr(dgain, op), x.rows,
                          x.cols);
  }
  void rope_apply(const Tensor& x, int64_t heads, const Tensor& pos, const RopeCoeffs& c, bool inverse) override {
    const char* op = "rope_apply";
    op_checks::rope_apply(x, heads, pos, c);
    cpu::rope_apply(ptr(x, op), x.rows, heads, x.stride, ptr<int32_t>(pos, op), c, inverse);
  }
  void attention_forward(const AttentionShape& s0, const Tensor& q, const Tensor& k, const Tensor& v,
                         const Tensor& out, const Tensor& lse) override {
    const char* op = "attention_forward";
    const AttentionShape s = op_checks::attention_forward(s0, q, k, v, out, lse);
    cpu::attention_forward(s, ptr(q, op), ptr(k, op), ptr(v, op), ptr(out, op), ptr(lse, op));
  }
  void attention_backward(const AttentionShape& s0, const Tensor& q, const Tensor& k, const Tensor& v,
                          const Tensor& out, const Tensor& lse, const Tensor& dout, const Tensor& dq, const Tensor& dk,
                          const Tensor& dv) override {
    const char* op = "attention_backward";
    const AttentionShape s = op_checks::attention_backward(s0, q, k, v, out, lse, dout, dq, dk, dv);
    cpu::attention_backward(s, ptr(q, op), ptr(k, op), ptr(v, op), ptr(out, op), ptr(lse, op), ptr(dout, op),
                            ptr(dq, op), ptr(dk, op), ptr(dv, op));
  }
  void attention_decode(int64_t heads, int64_t kv_heads, int64_t head_dim, const Tensor& q, const Tensor& k,
                        const Tensor& v, const Tensor& out) override {
    const char* op = "attention_decode";
    op_checks::attention_decode(heads, kv_heads, head_dim, q, k, v, out);
    cpu::attention_decode(heads, kv_heads, head_dim, ptr(q, op), ptr(k, op), ptr(v, op), k.rows, k.stride,
                          ptr(out, op));
  }
  void ssd_decay_forward(const Tensor& A_log, const Tensor& A) override {
    const char* op = "ssd_decay_forward";
    op_checks::ssd_decay_forward(A_log, A);
    cpu::ssd_decay_forward(ptr(A_log, op), ptr(A, op), A_log.numel());
  }
  void ssd_decay_backward(const Tensor& dA, const Tensor& A, const Tensor& dA_log) override {
    const char* op = "ssd_decay_backward";
    op_checks::ssd_decay_backward(dA, A, dA_log);
    cpu::ssd_decay_backward(ptr(dA, op), ptr(A, op), ptr(dA_log, op), A.numel());
  }
  void ssd_forward(const SsdShape& s0, const Tensor& x, const Tensor& dt, const Tensor& A, const Tensor& B,
                   const Tensor& C, const Tensor& D, const Tensor& init_state, const Tensor& y,
                   const Tensor& final_state) override {
    const char* op = "ssd_forward";
    const SsdShape s = op_checks::ssd_forward(s0, x, dt, A, B, C, D, init_state, y, final_state);
    cpu::ssd_forward(s, ptr(x, op), ptr(dt, op), ptr(A, op), ptr(B, op), ptr(C, op), ptr(D, op), ptr(init_state, op),
                     ptr(y, op), ptr(final_state, op));
  }
  void ssd_backward(const SsdShape& s0, const Tensor& x, const Tensor& dt, const Tensor& A, const Tensor& B,
                    const Tensor& C, const Tensor& D, const Tensor& init_state, const Tensor& dy,
                    const Tensor& dfinal_state, const Tensor& dx, const Tensor& ddt, const Tensor& dA, const Tensor& dB,
                    const Tensor& dC, const Tensor& dD, const Tensor& dinit_state) override {
    const char* op = "ssd_backward";
    const SsdShape s = op_checks::ssd_backward(s0, x, dt, A, B, C, D, init_state, dy, dfinal_state, dx, ddt,
                                                     dA, dB, dC, dD, dinit_state);
    cpu::ssd_backward(s, ptr(x, op), ptr(dt, op), ptr(A, op), ptr(B, op), ptr(C, op), ptr(D, op),
                      ptr(init_state, op), ptr(dy, op), ptr(dfinal_state, op), ptr(dx, op), ptr(ddt, op),
                      ptr(dA, op), ptr(dB, op), ptr(dC, op), ptr(dD, op), ptr(dinit_state, op));
  }
  void ssd_step(int64_t H, int64_t P, int64_t G, int64_t N, const Tensor& x, const Tensor& dt, const Tensor& A,
                const Tensor& B, const Tensor& C, const Tensor& D, const Tensor& state, const Tensor& y) override {
    const char* op = "ssd_step";
    op_checks::ssd_step(H, P, G, N, x, dt, A, B, C, D, state, y);
    cpu::ssd_step(1, H, P, G, N, ptr(x, op), ptr(dt, op), ptr(A, op), ptr(B, op), ptr(C, op), ptr(D, op),
                  ptr(state, op), ptr(y, op));
  }
  void conv1d_silu_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y, int64_t batch,
                           int64_t seq) override {
    const char* op = "conv1d_silu_forward";
    op_checks::conv1d_silu_forward(x, w, bias, y, batch, seq);
    cpu::conv1d_silu_forward(ptr(x, op), x.stride, ptr(w, op), ptr(bias, op), ptr(y, op), y.stride, batch, seq,
                             x.cols, w.cols);
  }
  void conv1d_silu_backward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& dx,
                            const Tensor& dw, const Tensor& dbias, int64_t batch, int64_t seq) override {
    const char* op = "conv1d_silu_backward";
    op_checks::conv1d_silu_backward(dy, x, w, bias, dx, dw, dbias, batch, seq);
    cpu::conv1d_silu_backward(ptr(dy, op), dy.stride, ptr(x, op), x.stride, ptr(w, op), ptr(bias, op), ptr(dx, op),
                              ptr(dw, op), ptr(dbias, op), batch, seq, x.cols, w.cols);
  }
  void silu_mul_forward(const Tensor& gate, const Tensor& up, const Tensor& out) override {
    const char* op = "silu_mul_forward";
    op_checks::silu_mul_forward(gate, up, out);
    cpu::silu_mul_forward(ptr(gate, op), gate.stride, ptr(up, op), up.stride, ptr(out, op), out.stride, gate.rows,
                          gate.cols);
  }
  void silu_mul_backward(const Tensor& dout, const Tensor& gate, const Tensor& up, const Tensor& dgate,
                         const Tensor& dup) override {
    const char* op = "silu_mul_backward";
    op_checks::silu_mul_backward(dout, gate, up, dgate, dup);
    cpu::silu_mul_backward(ptr(dout, op), dout.stride, ptr(gate, op), gate.stride, ptr(up, op), up.stride,
                           ptr(dgate, op), ptr(dup, op), gate.rows, gate.cols);
  }
  void residual_forward(const Tensor& skip, const Tensor& w, const Tensor& branch, const Tensor& out) override {
    const char* op = "residual_forward";
    op_checks::residual_forward(skip, w, branch, out);
    cpu::residual_forward(ptr(skip, op), ptr(w, op), ptr(branch, op), ptr(out, op), skip.rows, skip.cols);
  }
  void residual_backward(const Tensor& dout, const Tensor& skip, const Tensor& w, const Tensor& dskip,
                         const Tensor& dw) override {
    const char* op = "residual_backward";
    op_checks::residual_backward(dout, skip, w, dskip, dw);
    cpu::residual_backward(ptr(dout, op), ptr(skip, op), ptr(w, op), ptr(dskip, op), ptr(dw, op), dout.rows,
                           dout.cols);
  }
  void softplus_forward(const Tensor& raw, const Tensor& bias, const Tensor& dt) override {
    const char* op = "softplus_forward";
    op_checks::softplus_forward(raw, bias, dt);
    cpu::softplus_forward(ptr(raw, op), raw.stride, ptr(bias, op), ptr(dt, op), raw.rows, raw.cols);
  }
  void softplus_backward(const Tensor& ddt, const Tensor& raw, const Tensor& bias, const Tensor& draw,
                         const Tensor& dbias) override {
    const char* op = "softplus_backward";
    op_checks::softplus_backward(ddt, raw, bias, draw, dbias);
    cpu::softplus_backward(ptr(ddt, op), ptr(raw, op), raw.stride, ptr(bias, op), ptr(draw, op), ptr(dbias, op),
                           raw.rows, raw.cols);
  }
  void embedding_forward(const Tensor& ids, const Tensor& table, const Tensor& out) override {
    const char* op = "embedding_forward";
    op_checks::embedding_forward(ids, table, out);
    const int32_t* id = ptr<int32_t>(ids, op);
    for (int64_t i = 0; i < ids.numel(); ++i)
      if (id[i] < 0 || id[i] >= table.rows) fail("{}: id {} outside [0, {})", op, id[i], table.rows);
    if (table.dtype == DType::BF16)
      cpu::embedding_forward(id, ptr<bf16>(table, op), ptr(out, op), out.rows, out.cols);
    else
      cpu::embedding_forward(id, ptr(table, op), ptr(out, op), out.rows, out.cols);
  }
  void embedding_backward(const Tensor& ids, const Tensor& dout, const Tensor& dtable) override {
    const char* op = "embedding_backward";
    op_checks::embedding_backward(ids, dout, dtable);
    cpu::embedding_backward(ptr<int32_t>(ids, op), ptr(dout, op), ptr(dtable, op), dout.rows, dout.cols);
  }
  CrossEntropyResult lm_head_cross_entropy(const Tensor& h, const Tensor& W, const Tensor& targets,
                                           const Tensor& target_logprob, const Tensor& dh, const Tensor& dW,
                                           float grad_scale) override {
    const char* op = "lm_head_cross_entropy";
    op_checks::lm_head_cross_entropy(h, W, targets, target_logprob, dh, dW);
    if (W.dtype == DType::BF16)
      return cpu::lm_head_cross_entropy(ptr(h, op), ptr<bf16>(W, op), ptr<int32_t>(targets, op), h.rows, h.cols,
                                        W.rows, ptr(target_logprob, op), ptr(dh, op), ptr(dW, op), grad_scale);
    return cpu::lm_head_cross_entropy(ptr(h, op), ptr(W, op), ptr<int32_t>(targets, op), h.rows, h.cols, W.rows,
                                      ptr(target_logprob, op), ptr(dh, op), ptr(dW, op), grad_scale);
  }
  void lm_head_logits(const Tensor& h, const Tensor& W, const Tensor& logits) override {
    const char* op = "lm_head_logits";
    op_checks::lm_head_logits(h, W, logits);
    if (W.dtype == DType::BF16)
      cpu::lm_head_logits(ptr(h, op), ptr<bf16>(W, op), ptr(logits, op), h.rows, h.cols, W.rows);
    else
      cpu::lm_head_logits(ptr(h, op), ptr(W, op), ptr(logits, op), h.rows, h.cols, W.rows);
  }
  void adamw_update(const Tensor& w, const Tensor& g, const Tensor& m, const Tensor& v, const AdamWParams& p,
                    bool decay) override {
    const char* op = "adamw_update";
    op_checks::adamw_update(w, g, m, v, p);
    cpu::adamw_update(ptr(w, op), ptr(g, op), ptr(m, op), ptr(v, op), w.numel(), p, decay);
  }
  double sum_squares(const Tensor& x) override {
    op_checks::flat(x, "sum_squares");
    return cpu::sum_squares(ptr(x, "sum_squares"), x.numel());
  }
  void scale(const Tensor& x, float s) override {
    op_checks::flat(x, "scale");
    cpu::scale_inplace(ptr(x, "scale"), x.numel(), s);
  }
  bool all_finite(const Tensor& x) override {
    op_checks::flat(x, "all_finite");
    return cpu::all_finite(ptr(x, "all_finite"), x.numel());
  }

 private:
  static void check_host(const Tensor& t, const char* op) {
    if (t.data && t.device != Device::Cpu) fail("{}: operand on device {}", op, device_name(t.device));
  }
  // Host rows of `cols` elements ↔ a (possibly strided) view.
  static void copy_rows(const void* host, int64_t cols, const Tensor& t, const char* op, bool to_view) {
    check_host(t, op);
    const size_t es = dtype_size(t.dtype), row_bytes = size_t(cols) * es;
    for (int64_t r = 0; r < t.rows; ++r) {
      char* dev = static_cast<char*>(t.data) + size_t(r * t.stride) * es;
      char* h = static_cast<char*>(const_cast<void*>(host)) + size_t(r) * row_bytes;
      if (to_view) std::memcpy(dev, h, row_bytes);
      else std::memcpy(h, dev, row_bytes);
    }
  }
};

}  // namespace

Backend& cpu_backend() {
  static CpuBackend backend;
  return backend;
}

}  // namespace txs
