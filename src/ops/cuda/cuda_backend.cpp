// The CUDA backend (ops/cuda/cuda_backend.h): the op table of ops/backend.h on the process's current GPU.
// This file checks every operand exactly as the CPU backend does (device, dtype, view, the shapes each op
// needs; ops/operand_checks.h) and then calls the launchers: pointwise.h (norms, RoPE, conv, activations,
// embedding, optimizer, reductions, fill, conversions), dense.h (linear layers, LM head), attention.h and
// ssd.h. Memory is cudaMalloc'd; transfers are cudaMemcpy2D over the view's row stride, and everything runs
// on the legacy default stream, so no op needs an event.
#include "ops/cuda/cuda_backend.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <new>
#include <string>

#include "core/error.h"
#include "ops/cuda/attention.h"
#include "ops/cuda/bodies/convert.h"
#include "ops/cuda/cuda_check.h"
#include "ops/cuda/dense.h"
#include "ops/cuda/pointwise.h"
#include "ops/cuda/ssd.h"
#include "ops/operand_checks.h"

namespace txs::cuda {
namespace {

// Typed device pointer of an operand (null when absent), after the checks of ops/operand_checks.h.
template <class T = float>
T* ptr(const Tensor& t, const char* op) {
  return operand_ptr<T>(t, Device::Cuda, op);
}

// A weight operand of the products and the embedding: fp32, or bf16 (the bf16 mode) passed as raw bits.
struct Weight {
  const void* data = nullptr;
  bool bf16 = false;
};
Weight weight(const Tensor& W, const char* op) {
  if (W.dtype == DType::BF16) return {ptr<txs::bf16>(W, op), true};
  return {ptr(W, op), false};
}

// Device memory ran out: a std::bad_alloc (what callers catch for "out of memory") that says how much.
class DeviceOutOfMemory : public std::bad_alloc {
 public:
  explicit DeviceOutOfMemory(std::string what) : what_(std::move(what)) {}
  const char* what() const noexcept override { return what_.c_str(); }

 private:
  std::string what_;
};

class CudaBackend final : public Backend {
 public:
  const char* name() const override { return "cuda"; }
  Device device() const override { return Device::Cuda; }

  // ---- memory -------------------------------------------------------------------------------------------
  void* alloc(size_t bytes) override {
    void* p = nullptr;
    const cudaError_t err = cudaMalloc(&p, std::max<size_t>(256, (bytes + 255) / 256 * 256));  // 256-aligned
    if (err == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();  // an allocation failure is not sticky: clear it for the calls that follow
      size_t free_bytes = 0, total_bytes = 0;
      (void)cudaMemGetInfo(&free_bytes, &total_bytes);
      throw DeviceOutOfMemory(fmt::format("cuda: out of device memory allocating {} bytes ({} of {} bytes free)", bytes,
                                          free_bytes, total_bytes));
    }
    if (err != cudaSuccess) fail("cuda: cudaMalloc of {} bytes failed: {}", bytes, cudaGetErrorString(err));
    return p;
  }
  void free(void* p) override {
    // Unchecked: free runs in destructors, also while an earlier CUDA error unwinds the stack; a sticky
    // device error surfaces at the next checked call anyway.
    if (p) (void)cudaFree(p);
  }

  void upload(const void* host, const Tensor& dst) override { transfer(const_cast<void*>(host), dst, "upload", true); }
  void download(const Tensor& src, void* host) override { transfer(host, src, "download", false); }

  void copy(const Tensor& src, const Tensor& dst) override {
    const char* op = "copy";
    need_shape(dst, src.rows, src.cols, op, "dst");
    check_view(src, op), check_view(dst, op);
    need(src.numel() == 0 || (src.data && dst.data), op, "src and dst are required");
    if (src.dtype == DType::F32 && dst.dtype == DType::BF16) {  // the bf16 mode's weight refresh
      convert_f32_to_bf16(ptr(src, op), src.stride, bits(dst, op), dst.stride, src.rows, src.cols);
      return;
    }
    if (src.dtype == DType::BF16 && dst.dtype == DType::F32) {
      convert_bf16_to_f32(bits(src, op), src.stride, ptr(dst, op), dst.stride, src.rows, src.cols);
      return;
    }
    need(src.dtype == dst.dtype, op, "dtypes differ (only f32 <-> bf16 converts)");
    if (src.numel() == 0) return;
    const size_t es = dtype_size(src.dtype), width = size_t(src.cols) * es;
    // Contiguous views copy flat: cudaMemcpy2D refuses pitches above 2^31 − 1 bytes (a one-row view of a
    // large model's whole weight buffer).
    if (src.contiguous() && dst.contiguous())
      TXS_CUDA_CHECK(cudaMemcpyAsync(dst.data, src.data, width * size_t(src.rows), cudaMemcpyDeviceToDevice, 0));
    else
      TXS_CUDA_CHECK(cudaMemcpy2DAsync(dst.data, pitch(dst), src.data, pitch(src), width, size_t(src.rows),
                                       cudaMemcpyDeviceToDevice, 0));
  }

  void fill(const Tensor& dst, double value) override {
    check_view(dst, "fill");
    FillKind kind = FillKind::F32;
    switch (dst.dtype) {
      case DType::F32: kind = FillKind::F32; break;
      case DType::BF16: kind = FillKind::BF16; break;
      case DType::F64: kind = FillKind::F64; break;
      case DType::I32: kind = FillKind::I32; break;
    }
    const FillPattern p = fill_pattern(kind, value);
    cuda::fill(dst.data, dst.stride, dst.rows, dst.cols, p.bytes, p.bits);
  }

  void synchronize() override {
    TXS_CUDA_CHECK(cudaDeviceSynchronize());
    raise_deferred();
  }

  // ---- dense --------------------------------------------------------------------------------------------
  void linear_forward(const Tensor& x, const Tensor& W, const Tensor& y) override {
    const char* op = "linear_forward";
    need(x.contiguous() && y.contiguous() && W.contiguous(), op, "operands must be contiguous");
    need_shape(y, x.rows, W.rows, op, "y");
    need(x.cols == W.cols, op, "x columns differ from W's");
    const Weight w = weight(W, op);
    cuda::linear_forward(ptr(x, op), w.data, w.bf16, ptr(y, op), x.rows, x.cols, W.rows);
  }
  void linear_backward(const Tensor& dy, const Tensor& x, const Tensor& W, const Tensor& dx, const Tensor& dW,
                       bool accumulate_dx) override {
    const char* op = "linear_backward";
    need(dy.contiguous() && x.contiguous() && W.contiguous() && dx.contiguous() && dW.contiguous(), op,
         "operands must be contiguous");
    need_shape(dy, x.rows, W.rows, op, "dy");
    need_shape(dx, x.rows, x.cols, op, "dx");
    need_shape(dW, W.rows, W.cols, op, "dW");
    const Weight w = weight(W, op);
    cuda::linear_backward(ptr(dy, op), ptr(x, op), w.data, w.bf16, ptr(dx, op), accumulate_dx, ptr(dW, op), x.rows,
                          x.cols, W.rows);
  }

  // ---- normalisation, position --------------------------------------------------------------------------
  void rmsnorm_forward(const Tensor& x, const Tensor& gain, const Tensor& y, const Tensor& rstd, double eps) override {
    const char* op = "rmsnorm_forward";
    need(x.contiguous() && y.contiguous(), op, "operands must be contiguous");
    need_shape(y, x.rows, x.cols, op, "y");
    need(gain && y, op, "gain and y are required");
    need_shape(gain, 1, x.cols, op, "gain");
    need(!rstd || rstd.numel() >= x.rows, op, "rstd too small");
    need(x.cols > 0, op, "rows must have at least one element");
    need(eps >= 0, op, "eps must be >= 0");
    cuda::rmsnorm_forward(ptr(x, op), ptr(gain, op), ptr(y, op), ptr(rstd, op), x.rows, x.cols, eps);
  }
  void rmsnorm_backward(const Tensor& dy, const Tensor& x, const Tensor& gain, const Tensor& rstd, const Tensor& dx,
                        const Tensor& dgain) override {
    const char* op = "rmsnorm_backward";
    need(dy.contiguous() && x.contiguous() && dx.contiguous(), op, "operands must be contiguous");
    need_shape(dy, x.rows, x.cols, op, "dy");
    need_shape(dx, x.rows, x.cols, op, "dx");
    need_shape(dgain, 1, x.cols, op, "dgain");
    need(gain && dy && dx, op, "gain, dy and dx are required");
    need_shape(gain, 1, x.cols, op, "gain");
    need(rstd && rstd.numel() >= x.rows, op, "rstd from the forward pass is required (one per row)");
    need(x.cols > 0, op, "rows must have at least one element");
    cuda::rmsnorm_backward(ptr(dy, op), ptr(x, op), ptr(gain, op), ptr(rstd, op), ptr(dx, op), ptr(dgain, op), x.rows,
                           x.cols);
  }
  void rope_apply(const Tensor& x, int64_t heads, const Tensor& pos, const RopeCoeffs& c, bool inverse) override {
    const char* op = "rope_apply";
    need(c.dim > 0 && c.dim % 2 == 0, op, "rotated dimension must be positive and even");
    need(heads >= 0, op, "negative head count");
    need(x.cols >= heads * c.dim, op, "fewer columns than heads·dim");
    need(pos.numel() == x.rows && pos.contiguous(), op, "one position per row needed");
    need(c.positions == 0 || (c.cos && c.sin), op, "table without cos/sin");
    cuda::rope_apply(ptr(x, op), x.rows, heads, x.stride, ptr<int32_t>(pos, op), c, inverse);
  }

  // ---- attention ----------------------------------------------------------------------------------------
  void attention_forward(const AttentionShape& s0, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                         const Tensor& lse) override {
    const char* op = "attention_forward";
    const AttentionShape s = operand_shape(s0, q, k, v, out, op);
    need(lse.contiguous() && lse.numel() >= s.batch * s.heads * s.q_len, op, "lse too small (or not contiguous)");
    cuda::attention_forward(s, ptr(q, op), ptr(k, op), ptr(v, op), ptr(out, op), ptr(lse, op));
  }
  void attention_backward(const AttentionShape& s0, const Tensor& q, const Tensor& k, const Tensor& v,
                          const Tensor& out, const Tensor& lse, const Tensor& dout, const Tensor& dq, const Tensor& dk,
                          const Tensor& dv) override {
    const char* op = "attention_backward";
    const AttentionShape s = operand_shape(s0, q, k, v, out, op);
    need(dout.stride == out.stride && dq.stride == q.stride && dk.stride == k.stride && dv.stride == v.stride, op,
         "gradients must have the strides of their inputs");
    need_shape(dout, out.rows, out.cols, op, "dout");
    need_shape(dq, q.rows, q.cols, op, "dq");
    need_shape(dk, k.rows, k.cols, op, "dk");
    need_shape(dv, v.rows, v.cols, op, "dv");
    need(lse.contiguous() && lse.numel() >= s.batch * s.heads * s.q_len, op, "lse too small (or not contiguous)");
    cuda::attention_backward(s, ptr(q, op), ptr(k, op), ptr(v, op), ptr(out, op), ptr(lse, op), ptr(dout, op),
                             ptr(dq, op), ptr(dk, op), ptr(dv, op));
  }
  void attention_decode(int64_t heads, int64_t kv_heads, int64_t head_dim, const Tensor& q, const Tensor& k,
                        const Tensor& v, const Tensor& out) override {
    const char* op = "attention_decode";
    need(q.cols >= heads * head_dim && out.cols >= heads * head_dim, op, "q/out narrower than heads·dim");
    need(k.rows == v.rows && k.stride == v.stride && k.cols >= kv_heads * head_dim, op, "k and v views differ");
    need(v.cols >= kv_heads * head_dim, op, "v narrower than kv_heads·dim");
    cuda::attention_decode(heads, kv_heads, head_dim, ptr(q, op), ptr(k, op), ptr(v, op), k.rows, k.stride,
                           ptr(out, op));
  }

  // ---- state-space (SSD) --------------------------------------------------------------------------------
  void ssd_decay_forward(const Tensor& A_log, const Tensor& A) override {
    const char* op = "ssd_decay_forward";
    need_shape(A, A_log.rows, A_log.cols, op, "A");
    need(A_log.contiguous() && A.contiguous(), op, "operands must be contiguous");
    cuda::ssd_decay_forward(ptr(A_log, op), ptr(A, op), A_log.numel());
  }
  void ssd_decay_backward(const Tensor& dA, const Tensor& A, const Tensor& dA_log) override {
    const char* op = "ssd_decay_backward";
    need_shape(dA, A.rows, A.cols, op, "dA");
    need_shape(dA_log, A.rows, A.cols, op, "dA_log");
    need(dA.contiguous() && A.contiguous() && dA_log.contiguous(), op, "operands must be contiguous");
    cuda::ssd_decay_backward(ptr(dA, op), ptr(A, op), ptr(dA_log, op), A.numel());
  }
  void ssd_forward(const SsdShape& s0, const Tensor& x, const Tensor& dt, const Tensor& A, const Tensor& B,
                   const Tensor& C, const Tensor& D, const Tensor& init_state, const Tensor& y,
                   const Tensor& final_state) override {
    const char* op = "ssd_forward";
    const SsdShape s = operand_shape(s0, x, dt, A, B, C, D, y, op);
    need_state(s, init_state, op), need_state(s, final_state, op);
    cuda::ssd_forward(s, ptr(x, op), ptr(dt, op), ptr(A, op), ptr(B, op), ptr(C, op), ptr(D, op), ptr(init_state, op),
                      ptr(y, op), ptr(final_state, op));
  }
  void ssd_backward(const SsdShape& s0, const Tensor& x, const Tensor& dt, const Tensor& A, const Tensor& B,
                    const Tensor& C, const Tensor& D, const Tensor& init_state, const Tensor& dy,
                    const Tensor& dfinal_state, const Tensor& dx, const Tensor& ddt, const Tensor& dA, const Tensor& dB,
                    const Tensor& dC, const Tensor& dD, const Tensor& dinit_state) override {
    const char* op = "ssd_backward";
    const SsdShape s = operand_shape(s0, x, dt, A, B, C, D, dy, op);
    need(dx.stride == x.stride && ddt.stride == dt.stride && dB.stride == B.stride && dC.stride == C.stride, op,
         "gradients must have the strides of their inputs");
    need_shape(dx, x.rows, x.cols, op, "dx");
    need_shape(ddt, dt.rows, dt.cols, op, "ddt");
    need_shape(dB, B.rows, B.cols, op, "dB");
    need_shape(dC, C.rows, C.cols, op, "dC");
    need(!dA || dA.numel() == s.heads, op, "dA needs one value per head");
    need(!dD || dD.numel() == s.heads, op, "dD needs one value per head");
    need_state(s, init_state, op), need_state(s, dfinal_state, op), need_state(s, dinit_state, op);
    cuda::ssd_backward(s, ptr(x, op), ptr(dt, op), ptr(A, op), ptr(B, op), ptr(C, op), ptr(D, op), ptr(init_state, op),
                       ptr(dy, op), ptr(dfinal_state, op), ptr(dx, op), ptr(ddt, op), ptr(dA, op), ptr(dB, op),
                       ptr(dC, op), ptr(dD, op), ptr(dinit_state, op));
  }
  void ssd_step(int64_t H, int64_t P, int64_t G, int64_t N, const Tensor& x, const Tensor& dt, const Tensor& A,
                const Tensor& B, const Tensor& C, const Tensor& D, const Tensor& state, const Tensor& y) override {
    const char* op = "ssd_step";
    need(x.cols >= H * P && y.cols >= H * P && dt.cols >= H && B.cols >= G * N && C.cols >= G * N, op,
         "operand narrower than its heads");
    need(x.rows == 1 && y.rows == 1 && dt.rows == 1 && B.rows == 1 && C.rows == 1, op, "one row per operand");
    need(A.numel() == H && (!D || D.numel() == H), op, "A and D need one value per head");
    need(state.numel() == H * P * N && state.contiguous(), op, "state is not H·P·N");
    cuda::ssd_step(1, H, P, G, N, ptr(x, op), ptr(dt, op), ptr(A, op), ptr(B, op), ptr(C, op), ptr(D, op),
                   ptr(state, op), ptr(y, op));
  }

  // ---- convolution, activations, residual, embedding ------------------------------------------------------
  void conv1d_silu_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y, int64_t batch,
                           int64_t seq) override {
    const char* op = "conv1d_silu_forward";
    need(x.rows == batch * seq && y.rows == x.rows && y.cols == x.cols, op, "x and y must be [batch·seq, C]");
    need(w.rows == x.cols && w.contiguous(), op, "w must be [C, K]");
    need(batch >= 0 && seq >= 0 && x.cols > 0 && w.cols > 0, op, "bad shape");
    need(!bias || bias.numel() == x.cols, op, "bias must be [1, C]");
    cuda::conv1d_silu_forward(ptr(x, op), x.stride, ptr(w, op), ptr(bias, op), ptr(y, op), y.stride, batch, seq, x.cols,
                              w.cols);
  }
  void conv1d_silu_backward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& dx,
                            const Tensor& dw, const Tensor& dbias, int64_t batch, int64_t seq) override {
    const char* op = "conv1d_silu_backward";
    need(x.rows == batch * seq && dy.rows == x.rows && dx.rows == x.rows, op, "operands must be [batch·seq, C]");
    need(dy.cols == x.cols && dx.cols == x.cols, op, "dy and dx must have x's columns");
    need(dx.stride == x.stride, op, "dx must have x's stride");  // the kernel writes dx with x's stride
    need(w.rows == x.cols && w.contiguous(), op, "w must be [C, K]");
    need(batch >= 0 && seq >= 0 && x.cols > 0 && w.cols > 0, op, "bad shape");
    need(!bias || bias.numel() == x.cols, op, "bias must be [1, C]");
    need_shape(dw, w.rows, w.cols, op, "dw");
    need(dw.contiguous() && (!dbias || dbias.numel() == x.cols), op, "dw must be contiguous [C, K], dbias [1, C]");
    cuda::conv1d_silu_backward(ptr(dy, op), dy.stride, ptr(x, op), x.stride, ptr(w, op), ptr(bias, op), ptr(dx, op),
                               ptr(dw, op), ptr(dbias, op), batch, seq, x.cols, w.cols);
  }
  void silu_mul_forward(const Tensor& gate, const Tensor& up, const Tensor& out) override {
    const char* op = "silu_mul_forward";
    need_shape(up, gate.rows, gate.cols, op, "up");
    need_shape(out, gate.rows, gate.cols, op, "out");
    cuda::silu_mul_forward(ptr(gate, op), gate.stride, ptr(up, op), up.stride, ptr(out, op), out.stride, gate.rows,
                           gate.cols);
  }
  void silu_mul_backward(const Tensor& dout, const Tensor& gate, const Tensor& up, const Tensor& dgate,
                         const Tensor& dup) override {
    const char* op = "silu_mul_backward";
    need(dgate.stride == gate.stride && dup.stride == up.stride, op, "gradients must have their inputs' strides");
    need_shape(up, gate.rows, gate.cols, op, "up");
    need_shape(dout, gate.rows, gate.cols, op, "dout");
    need_shape(dgate, gate.rows, gate.cols, op, "dgate");
    need_shape(dup, gate.rows, gate.cols, op, "dup");
    cuda::silu_mul_backward(ptr(dout, op), dout.stride, ptr(gate, op), gate.stride, ptr(up, op), up.stride,
                            ptr(dgate, op), ptr(dup, op), gate.rows, gate.cols);
  }
  void residual_forward(const Tensor& skip, const Tensor& w, const Tensor& branch, const Tensor& out) override {
    const char* op = "residual_forward";
    need(skip.contiguous() && branch.contiguous() && out.contiguous(), op, "operands must be contiguous");
    need_shape(branch, skip.rows, skip.cols, op, "branch");
    need_shape(out, skip.rows, skip.cols, op, "out");
    need(!w || w.numel() == skip.cols, op, "w must be [1, dim]");
    cuda::residual_forward(ptr(skip, op), ptr(w, op), ptr(branch, op), ptr(out, op), skip.rows, skip.cols);
  }
  void residual_backward(const Tensor& dout, const Tensor& skip, const Tensor& w, const Tensor& dskip,
                         const Tensor& dw) override {
    const char* op = "residual_backward";
    need(dout.contiguous() && skip.contiguous() && dskip.contiguous(), op, "operands must be contiguous");
    need_shape(dskip, dout.rows, dout.cols, op, "dskip");
    need_shape(skip, dout.rows, dout.cols, op, "skip");
    need(!w || w.numel() == dout.cols, op, "w must be [1, dim]");
    need(!dw || dw.numel() == dout.cols, op, "dw must be [1, dim]");
    cuda::residual_backward(ptr(dout, op), ptr(skip, op), ptr(w, op), ptr(dskip, op), ptr(dw, op), dout.rows,
                            dout.cols);
  }
  void softplus_forward(const Tensor& raw, const Tensor& bias, const Tensor& dt) override {
    const char* op = "softplus_forward";
    need(dt.contiguous() && dt.rows == raw.rows && dt.cols == raw.cols, op, "dt must be contiguous [rows, H]");
    need(!bias || bias.numel() == raw.cols, op, "bias must be [1, H]");
    cuda::softplus_forward(ptr(raw, op), raw.stride, ptr(bias, op), ptr(dt, op), raw.rows, raw.cols);
  }
  void softplus_backward(const Tensor& ddt, const Tensor& raw, const Tensor& bias, const Tensor& draw,
                         const Tensor& dbias) override {
    const char* op = "softplus_backward";
    need(ddt.contiguous() && draw.stride == raw.stride, op, "ddt contiguous, draw with raw's stride");
    need_shape(ddt, raw.rows, raw.cols, op, "ddt");
    need_shape(draw, raw.rows, raw.cols, op, "draw");
    need(!bias || bias.numel() == raw.cols, op, "bias must be [1, H]");
    need(!dbias || dbias.numel() == raw.cols, op, "dbias must be [1, H]");
    cuda::softplus_backward(ptr(ddt, op), ptr(raw, op), raw.stride, ptr(bias, op), ptr(draw, op), ptr(dbias, op),
                            raw.rows, raw.cols);
  }
  void embedding_forward(const Tensor& ids, const Tensor& table, const Tensor& out) override {
    const char* op = "embedding_forward";
    need(out.contiguous() && out.rows == ids.numel() && out.cols == table.cols, op, "out must be [ids, dim]");
    need(ids.contiguous() && table.contiguous(), op, "ids and table must be contiguous");
    const Weight t = weight(table, op);
    cuda::embedding_forward(ptr<int32_t>(ids, op), t.data, t.bf16, ptr(out, op), out.rows, out.cols, table.rows);
  }
  void embedding_backward(const Tensor& ids, const Tensor& dout, const Tensor& dtable) override {
    const char* op = "embedding_backward";
    need(dout.contiguous() && dout.rows == ids.numel() && dout.cols == dtable.cols, op, "dout must be [ids, dim]");
    need(ids.contiguous() && dtable.contiguous(), op, "ids and dtable must be contiguous");
    cuda::embedding_backward(ptr<int32_t>(ids, op), ptr(dout, op), ptr(dtable, op), dout.rows, dout.cols,
                             dtable.rows);
  }

  // ---- LM head ------------------------------------------------------------------------------------------
  CrossEntropyResult lm_head_cross_entropy(const Tensor& h, const Tensor& W, const Tensor& targets,
                                           const Tensor& target_logprob, const Tensor& dh, const Tensor& dW,
                                           float grad_scale) override {
    const char* op = "lm_head_cross_entropy";
    need(h.contiguous() && W.contiguous() && h.cols == W.cols, op, "h [rows, dim] and W [vocab, dim] contiguous");
    need(targets.numel() == h.rows && targets.contiguous(), op, "one target per row needed");
    need(!target_logprob || (target_logprob.numel() >= h.rows && target_logprob.contiguous()), op,
         "target_logprob too small");
    need_shape(dh, h.rows, h.cols, op, "dh");
    need_shape(dW, W.rows, W.cols, op, "dW");
    need(dh.contiguous() && dW.contiguous(), op, "dh and dW must be contiguous");
    const Weight w = weight(W, op);
    const CrossEntropyResult r = cuda::lm_head_cross_entropy(ptr(h, op), w.data, w.bf16, ptr<int32_t>(targets, op),
                                                             ptr(target_logprob, op), ptr(dh, op), ptr(dW, op),
                                                             grad_scale, h.rows, h.cols, W.rows);
    raise_deferred();  // the loss reaches the host: an out-of-range id of this pass's embedding fails here
    return r;
  }
  void lm_head_logits(const Tensor& h, const Tensor& W, const Tensor& logits) override {
    const char* op = "lm_head_logits";
    need(h.contiguous() && W.contiguous() && logits.contiguous() && h.cols == W.cols, op, "bad shapes");
    need_shape(logits, h.rows, W.rows, op, "logits");
    const Weight w = weight(W, op);
    cuda::lm_head_logits(ptr(h, op), w.data, w.bf16, ptr(logits, op), logits.stride, h.rows, h.cols, W.rows);
  }

  // ---- optimizer, reductions ------------------------------------------------------------------------------
  void adamw_update(const Tensor& w, const Tensor& g, const Tensor& m, const Tensor& v, const AdamWParams& p,
                    bool decay) override {
    const char* op = "adamw_update";
    need(w.contiguous() && g.contiguous() && m.contiguous() && v.contiguous(), op, "operands must be contiguous");
    need(g.numel() == w.numel() && m.numel() == w.numel() && v.numel() == w.numel(), op, "sizes differ");
    need(p.step >= 1, op, "step must be >= 1 (1-based)");
    cuda::adamw_update(ptr(w, op), ptr(g, op), ptr(m, op), ptr(v, op), w.numel(), p, decay);
  }  void adamw_update_segments(const Tensor& w, const Tensor& g, const Tensor& m, const Tensor& v,
                             const std::vector<AdamWSegment>& segments, const AdamWParams& p) override {
    const char* op = "adamw_update_segments";
    need(w.contiguous() && g.contiguous() && m.contiguous() && v.contiguous(), op, "operands must be contiguous");
    need(g.numel() == w.numel() && m.numel() == w.numel() && v.numel() == w.numel(), op, "sizes differ");
    need(p.step >= 1, op, "step must be >= 1");
    int64_t end = 0;
    for (const AdamWSegment& s : segments) {
      need(s.offset >= end && s.length >= 0, op, "segments must be ascending and must not overlap");
      end = s.offset + s.length;
    }
    need(end <= w.numel(), op, "a segment runs past the views");
    cuda::adamw_update_segments(ptr(w, op), ptr(g, op), ptr(m, op), ptr(v, op), w.numel(), segments.data(),
                                int64_t(segments.size()), p);
  }

  double sum_squares(const Tensor& x) override {
    need(x.contiguous(), "sum_squares", "operand must be contiguous");
    const double r = cuda::sum_squares(ptr(x, "sum_squares"), x.numel());
    raise_deferred();
    return r;
  }
  void scale(const Tensor& x, float s) override {
    need(x.contiguous(), "scale", "operand must be contiguous");
    cuda::scale(ptr(x, "scale"), x.numel(), s);
  }
  bool all_finite(const Tensor& x) override {
    need(x.contiguous(), "all_finite", "operand must be contiguous");
    const bool r = cuda::all_finite(ptr(x, "all_finite"), x.numel());
    raise_deferred();
    return r;
  }

 private:
  // Device, non-negative shape and row stride of an operand of any dtype; data present unless empty.
  static void check_view(const Tensor& t, const char* op) {
    if (t.data && t.device != Device::Cuda)
      fail("{}: operand on device {}, the cuda backend reads device memory", op, device_name(t.device));
    if (t.rows < 0 || t.cols < 0 || (t.rows > 1 && t.stride < t.cols))
      fail("{}: bad view [{}, {}] stride {}", op, t.rows, t.cols, t.stride);
    need(t.data || t.numel() == 0, op, "operand without memory");
  }
  // Bytes between rows for cudaMemcpy2D (a single row has no meaningful stride).
  static size_t pitch(const Tensor& t) {
    const size_t es = dtype_size(t.dtype);
    return t.rows > 1 ? size_t(t.stride) * es : size_t(t.cols) * es;
  }
  static uint16_t* bits(const Tensor& t, const char* op) { return reinterpret_cast<uint16_t*>(ptr<txs::bf16>(t, op)); }
  // Host rows of t.cols elements (contiguous) ↔ the view. cudaMemcpy2D (not Async) returns once the host
  // memory may be reused; a download has then landed.
  static void transfer(void* host, const Tensor& t, const char* op, bool to_device) {
    check_view(t, op);
    if (t.numel() == 0) return;
    const size_t width = size_t(t.cols) * dtype_size(t.dtype);
    if (t.contiguous())  // flat: no pitch limit (2^31 − 1 bytes for cudaMemcpy2D), e.g. a checkpoint's weights
      TXS_CUDA_CHECK(to_device ? cudaMemcpy(t.data, host, width * size_t(t.rows), cudaMemcpyHostToDevice)
                               : cudaMemcpy(host, t.data, width * size_t(t.rows), cudaMemcpyDeviceToHost));
    else if (to_device)
      TXS_CUDA_CHECK(cudaMemcpy2D(t.data, pitch(t), host, width, width, size_t(t.rows), cudaMemcpyHostToDevice));
    else
      TXS_CUDA_CHECK(cudaMemcpy2D(host, width, t.data, pitch(t), width, size_t(t.rows), cudaMemcpyDeviceToHost));
    if (!to_device) raise_deferred();
  }
  // The input errors found by kernels since the last check (pointwise.h: deferred checks), as the op's error.
  static void raise_deferred() {
    const cuda::DeferredError e = cuda::take_deferred_error();
    switch (e.op) {
      case cuda::CheckedOp::None: return;
      case cuda::CheckedOp::Rope: fail("rope_apply: position {} outside the table [0, {})", e.value, e.limit);
      case cuda::CheckedOp::EmbeddingForward: fail("embedding_forward: id {} outside [0, {})", e.value, e.limit);
      case cuda::CheckedOp::EmbeddingBackward: fail("embedding_backward: id {} outside [0, {})", e.value, e.limit);
    }
  }
};

}  // namespace

std::string unavailable_reason() {
  // Asked once per process: the answer does not change, and tests ask before every GPU case.
  static const std::string reason = []() -> std::string {
    int count = 0;
    const cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) {
      (void)cudaGetLastError();
      return fmt::format("no usable CUDA GPU ({}: {})", cudaGetErrorName(err), cudaGetErrorString(err));
    }
    if (count == 0) return "no CUDA GPU visible to this process";
    int device = 0, major = 0, minor = 0;
    if (cudaGetDevice(&device) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess ||
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) != cudaSuccess) {
      const cudaError_t e = cudaGetLastError();
      return fmt::format("the CUDA GPU cannot be queried ({})", cudaGetErrorString(e));
    }
    // The build carries sm_90 code and compute_90 PTX: older GPUs have no kernel image to run.
    if (major < 9)
      return fmt::format("GPU {} has compute capability {}.{}; this build's kernels need 9.0 or newer", device, major,
                         minor);
    return "";
  }();
  return reason;
}

Backend& cuda_backend() {
  if (const std::string why = unavailable_reason(); !why.empty()) fail("cuda backend: {}", why);
  static CudaBackend backend;
  return backend;
}

}  // namespace txs::cuda
