// The CUDA backend (ops/cuda/cuda_backend.h): the op table of ops/backend.h on the process's current GPU.
// This file checks every operand with the CPU backend's checks (the shapes each op needs: ops/op_checks.h;
// device, dtype and view: ops/operand_checks.h) and then calls the launchers: pointwise.h (norms, RoPE,
// conv, activations, embedding, optimizer, reductions, fill, conversions), dense.h (linear layers, LM head),
// attention.h and ssd.h. Memory is cudaMalloc'd; transfers are cudaMemcpy2D over the view's row stride, and
// everything runs on the legacy default stream, so no op needs an event.
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
#include "ops/op_checks.h"
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
    op_checks::linear_forward(x, W, y);
    const Weight w = weight(W, op);
    cuda::linear_forward(ptr(x, op), w.data, w.bf16, ptr(y, op), x.rows, x.cols, W.rows);
  }
  void linear_backward(const Tensor& dy, const Tensor& x, const Tensor& W, const Tensor& dx, const Tensor& dW,
                       bool accumulate_dx) override {
    const char* op = "linear_backward";
    op_checks::linear_backward(dy, x, W, dx, dW);
    const Weight w = weight(W, op);
    cuda::linear_backward(ptr(dy, op), ptr(x, op), w.data, w.bf16, ptr(dx, op), accumulate_dx, ptr(dW, op), x.rows,
                          x.cols, W.rows);
  }

  // ---- normalisation, position --------------------------------------------------------------------------
  void rmsnorm_forward(const Tensor& x, const Tensor& gain, const Tensor& y, const Tensor& rstd, double eps) override {
    const char* op = "rmsnorm_forward";
    op_checks::rmsnorm_forward(x, gain, y, rstd, eps);
    cuda::rmsnorm_forward(ptr(x, op), ptr(gain, op), ptr(y, op), ptr(rstd, op), x.rows, x.cols, eps);
  }
  void rmsnorm_backward(const Tensor& dy, const Tensor& x, const Tensor& gain, const Tensor& rstd, const Tensor& dx,
                        const Tensor& dgain) override {
    const char* op = "rmsnorm_backward";
    op_checks::rmsnorm_backward(dy, x, gain, rstd, dx, dgain);
    cuda::rmsnorm_backward(ptr(dy, op), ptr(x, op), ptr(gain, op), ptr(rstd, op), ptr(dx, op), ptr(dgain, op), x.rows,
                           x.cols);
  }
  void rope_apply(const Tensor& x, int64_t heads, const Tensor& pos, const RopeCoeffs& c, bool inverse) override {
    const char* op = "rope_apply";
    op_checks::rope_apply(x, heads, pos, c);
    cuda::rope_apply(ptr(x, op), x.rows, heads, x.stride, ptr<int32_t>(pos, op), c, inverse);
  }

  // ---- attention ----------------------------------------------------------------------------------------
  void attention_forward(const AttentionShape& s0, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                         const Tensor& lse) override {
    const char* op = "attention_forward";
    const AttentionShape s = op_checks::attention_forward(s0, q, k, v, out, lse);
    cuda::attention_forward(s, ptr(q, op), ptr(k, op), ptr(v, op), ptr(out, op), ptr(lse, op));
  }
  void attention_backward(const AttentionShape& s0, const Tensor& q, const Tensor& k, const Tensor& v,
                          const Tensor& out, const Tensor& lse, const Tensor& dout, const Tensor& dq, const Tensor& dk,
                          const Tensor& dv) override {
    const char* op = "attention_backward";
    const AttentionShape s = op_checks::attention_backward(s0, q, k, v, out, lse, dout, dq, dk, dv);
    cuda::attention_backward(s, ptr(q, op), ptr(k, op), ptr(v, op), ptr(out, op), ptr(lse, op), ptr(dout, op),
                             ptr(dq, op), ptr(dk, op), ptr(dv, op));
  }
  void attention_decode(int64_t heads, int64_t kv_heads, int64_t head_dim, const Tensor& q, const Tensor& k,
                        const Tensor& v, const Tensor& out) override {
    const char* op = "attention_decode";
    op_checks::attention_decode(heads, kv_heads, head_dim, q, k, v, out);
    cuda::attention_decode(heads, kv_heads, head_dim, ptr(q, op), ptr(k, op), ptr(v, op), k.rows, k.stride,
                           ptr(out, op));
  }

  // ---- state-space (SSD) --------------------------------------------------------------------------------
  void ssd_decay_forward(const Tensor& A_log, const Tensor& A) override {
    const char* op = "ssd_decay_forward";
    op_checks::ssd_decay_forward(A_log, A);
    cuda::ssd_decay_forward(ptr(A_log, op), ptr(A, op), A_log.numel());
  }
  void ssd_decay_backward(const Tensor& dA, const Tensor& A, const Tensor& dA_log) override {
    const char* op = "ssd_decay_backward";
    op_checks::ssd_decay_backward(dA, A, dA_log);
    cuda::ssd_decay_backward(ptr(dA, op), ptr(A, op), ptr(dA_log, op), A.numel());
  }
  void ssd_forward(const SsdShape& s0, const Tensor& x, const Tensor& dt, const Tensor& A, const Tensor& B,
                   const Tensor& C, const Tensor& D, const Tensor& init_state, const Tensor& y,
                   const Tensor& final_state) override {
    const char* op = "ssd_forward";
    const SsdShape s = op_checks::ssd_forward(s0, x, dt, A, B, C, D, init_state, y, final_state);
    cuda::ssd_forward(s, ptr(x, op), ptr(dt, op), ptr(A, op), ptr(B, op), ptr(C, op), ptr(D, op), ptr(init_state, op),
                      ptr(y, op), ptr(final_state, op));
  }
  void ssd_backward(const SsdShape& s0, const Tensor& x, const Tensor& dt, const Tensor& A, const Tensor& B,
                    const Tensor& C, const Tensor& D, const Tensor& init_state, const Tensor& dy,
                    const Tensor& dfinal_state, const Tensor& dx, const Tensor& ddt, const Tensor& dA, const Tensor& dB,
                    const Tensor& dC, const Tensor& dD, const Tensor& dinit_state) override {
    const char* op = "ssd_backward";
    const SsdShape s = op_checks::ssd_backward(s0, x, dt, A, B, C, D, init_state, dy, dfinal_state, dx, ddt,
                                                     dA, dB, dC, dD, dinit_state);
    cuda::ssd_backward(s, ptr(x, op), ptr(dt, op), ptr(A, op), ptr(B, op), ptr(C, op), ptr(D, op), ptr(init_state, op),
                       ptr(dy, op), ptr(dfinal_state, op), ptr(dx, op), ptr(ddt, op), ptr(dA, op), ptr(dB, op),
                       ptr(dC, op), ptr(dD, op), ptr(dinit_state, op));
  }
  void ssd_step(int64_t H, int64_t P, int64_t G, int64_t N, const Tensor& x, const Tensor& dt, const Tensor& A,
                const Tensor& B, const Tensor& C, const Tensor& D, const Tensor& state, const Tensor& y) override {
    const char* op = "ssd_step";
    op_checks::ssd_step(H, P, G, N, x, dt, A, B, C, D, state, y);
    cuda::ssd_step(1, H, P, G, N, ptr(x, op), ptr(dt, op), ptr(A, op), ptr(B, op), ptr(C, op), ptr(D, op),
                   ptr(state, op), ptr(y, op));
  }

  // ---- convolution, activations, residual, embedding ------------------------------------------------------
  void conv1d_silu_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y, int64_t batch,
                           int64_t seq) override {
    const char* op = "conv1d_silu_forward";
    op_checks::conv1d_silu_forward(x, w, bias, y, batch, seq);
    cuda::conv1d_silu_forward(ptr(x, op), x.stride, ptr(w, op), ptr(bias, op), ptr(y, op), y.stride, batch, seq, x.cols,
                              w.cols);
  }
  void conv1d_silu_backward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& dx,
                            const Tensor& dw, const Tensor& dbias, int64_t batch, int64_t seq) override {
    const char* op = "conv1d_silu_backward";
    op_checks::conv1d_silu_backward(dy, x, w, bias, dx, dw, dbias, batch, seq);
    cuda::conv1d_silu_backward(ptr(dy, op), dy.stride, ptr(x, op), x.stride, ptr(w, op), ptr(bias, op), ptr(dx, op),
                               ptr(dw, op), ptr(dbias, op), batch, seq, x.cols, w.cols);
  }
  void silu_mul_forward(const Tensor& gate, const Tensor& up, const Tensor& out) override {
    const char* op = "silu_mul_forward";
    op_checks::silu_mul_forward(gate, up, out);
    cuda::silu_mul_forward(ptr(gate, op), gate.stride, ptr(up, op), up.stride, ptr(out, op), out.stride, gate.rows,
                           gate.cols);
  }
  void silu_mul_backward(const Tensor& dout, const Tensor& gate, const Tensor& up, const Tensor& dgate,
                         const Tensor& dup) override {
    const char* op = "silu_mul_backward";
    op_checks::silu_mul_backward(dout, gate, up, dgate, dup);
    cuda::silu_mul_backward(ptr(dout, op), dout.stride, ptr(gate, op), gate.stride, ptr(up, op), up.stride,
                            ptr(dgate, op), ptr(dup, op), gate.rows, gate.cols);
  }
  void residual_forward(const Tensor& skip, const Tensor& w, const Tensor& branch, const Tensor& out) override {
    const char* op = "residual_forward";
    op_checks::residual_forward(skip, w, branch, out);
    cuda::residual_forward(ptr(skip, op), ptr(w, op), ptr(branch, op), ptr(out, op), skip.rows, skip.cols);
  }
  void residual_backward(const Tensor& dout, const Tensor& skip, const Tensor& w, const Tensor& dskip,
                         const Tensor& dw) override {
    const char* op = "residual_backward";
    op_checks::residual_backward(dout, skip, w, dskip, dw);
    cuda::residual_backward(ptr(dout, op), ptr(skip, op), ptr(w, op), ptr(dskip, op), ptr(dw, op), dout.rows,
                            dout.cols);
  }
  void softplus_forward(const Tensor& raw, const Tensor& bias, const Tensor& dt) override {
    const char* op = "softplus_forward";
    op_checks::softplus_forward(raw, bias, dt);
    cuda::softplus_forward(ptr(raw, op), raw.stride, ptr(bias, op), ptr(dt, op), raw.rows, raw.cols);
  }
  void softplus_backward(const Tensor& ddt, const Tensor& raw, const Tensor& bias, const Tensor& draw,
                         const Tensor& dbias) override {
    const char* op = "softplus_backward";
    op_checks::softplus_backward(ddt, raw, bias, draw, dbias);
    cuda::softplus_backward(ptr(ddt, op), ptr(raw, op), raw.stride, ptr(bias, op), ptr(draw, op), ptr(dbias, op),
                            raw.rows, raw.cols);
  }
  void embedding_forward(const Tensor& ids, const Tensor& table, const Tensor& out) override {
    const char* op = "embedding_forward";
    op_checks::embedding_forward(ids, table, out);
    const Weight t = weight(table, op);
    cuda::embedding_forward(ptr<int32_t>(ids, op), t.data, t.bf16, ptr(out, op), out.rows, out.cols, table.rows);
  }
  void embedding_backward(const Tensor& ids, const Tensor& dout, const Tensor& dtable) override {
    const char* op = "embedding_backward";
    op_checks::embedding_backward(ids, dout, dtable);
    cuda::embedding_backward(ptr<int32_t>(ids, op), ptr(dout, op), ptr(dtable, op), dout.rows, dout.cols,
                             dtable.rows);
  }

  // ---- LM head ------------------------------------------------------------------------------------------
  CrossEntropyResult lm_head_cross_entropy(const Tensor& h, const Tensor& W, const Tensor& targets,
                                           const Tensor& target_logprob, const Tensor& dh, const Tensor& dW,
                                           float grad_scale) override {
    const char* op = "lm_head_cross_entropy";
    op_checks::lm_head_cross_entropy(h, W, targets, target_logprob, dh, dW);
    const Weight w = weight(W, op);
    const CrossEntropyResult r = cuda::lm_head_cross_entropy(ptr(h, op), w.data, w.bf16, ptr<int32_t>(targets, op),
                                                             ptr(target_logprob, op), ptr(dh, op), ptr(dW, op),
                                                             grad_scale, h.rows, h.cols, W.rows);
    raise_deferred();  // the loss reaches the host: an out-of-range id of this pass's embedding fails here
    return r;
  }
  void lm_head_logits(const Tensor& h, const Tensor& W, const Tensor& logits) override {
    const char* op = "lm_head_logits";
    op_checks::lm_head_logits(h, W, logits);
    const Weight w = weight(W, op);
    cuda::lm_head_logits(ptr(h, op), w.data, w.bf16, ptr(logits, op), logits.stride, h.rows, h.cols, W.rows);
  }

  // ---- optimizer, reductions ------------------------------------------------------------------------------
  void adamw_update(const Tensor& w, const Tensor& g, const Tensor& m, const Tensor& v, const AdamWParams& p,
                    bool decay) override {
    const char* op = "adamw_update";
    op_checks::adamw_update(w, g, m, v, p);
    cuda::adamw_update(ptr(w, op), ptr(g, op), ptr(m, op), ptr(v, op), w.numel(), p, decay);
  }
  void adamw_update_segments(const Tensor& w, const Tensor& g, const Tensor& m, const Tensor& v,
                             const std::vector<AdamWSegment>& segments, const AdamWParams& p) override {
    const char* op = "adamw_update_segments";
    op_checks::adamw_update_segments(w, g, m, v, segments, p);
    cuda::adamw_update_segments(ptr(w, op), ptr(g, op), ptr(m, op), ptr(v, op), w.numel(), segments.data(),
                                int64_t(segments.size()), p);
  }

  double sum_squares(const Tensor& x) override {
    op_checks::flat(x, "sum_squares");
    const double r = cuda::sum_squares(ptr(x, "sum_squares"), x.numel());
    raise_deferred();
    return r;
  }
  void scale(const Tensor& x, float s) override {
    op_checks::flat(x, "scale");
    cuda::scale(ptr(x, "scale"), x.numel(), s);
  }
  bool all_finite(const Tensor& x) override {
    op_checks::flat(x, "all_finite");
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
