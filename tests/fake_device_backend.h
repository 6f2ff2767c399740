// A test backend that behaves like a GPU towards the code above src/ops, without a GPU: its device() is
// Device::Cuda and its memory is host memory that the process cannot touch outside the backend's own calls.
// Every allocation is its own mmap, kept PROT_NONE; each op (and upload/download/copy/fill) makes every
// live allocation readable and writable, re-tags its operands as Device::Cpu, runs the CPU backend, and
// protects the allocations again. So host code that dereferences a pointer of this backend's memory — what
// would read garbage or crash on a real GPU — dies with SIGSEGV at the culprit, and results are bit-for-bit
// the CPU backend's (the same kernels on the same values). Operands are checked to lie inside this
// backend's allocations and to carry Device::Cuda: a host array handed to an op is a one-line error.
#pragma once
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>

#include "ops/backend.h"

namespace txs::test {

class FakeDeviceBackend : public Backend {
 public:
  FakeDeviceBackend() = default;
  ~FakeDeviceBackend() override;
  const char* name() const override { return "fake-device"; }
  Device device() const override { return Device::Cuda; }

  void* alloc(size_t bytes) override;
  void free(void* p) override;
  void upload(const void* host, const Tensor& dst) override;
  void download(const Tensor& src, void* host) override;
  void copy(const Tensor& src, const Tensor& dst) override;
  void fill(const Tensor& dst, double value) override;
  void synchronize() override {}

  void linear_forward(const Tensor& x, const Tensor& W, const Tensor& y) override;
  void linear_backward(const Tensor& dy, const Tensor& x, const Tensor& W, const Tensor& dx, const Tensor& dW,
                       bool accumulate_dx) override;
  void rmsnorm_forward(const Tensor& x, const Tensor& gain, const Tensor& y, const Tensor& rstd, double eps) override;
  void rmsnorm_backward(const Tensor& dy, const Tensor& x, const Tensor& gain, const Tensor& rstd, const Tensor& dx,
                        const Tensor& dgain) override;
  void rope_apply(const Tensor& x, int64_t heads, const Tensor& pos, const RopeCoeffs& coeffs, bool inverse) override;
  void attention_forward(const AttentionShape& s, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                         const Tensor& lse) override;
  void attention_backward(const AttentionShape& s, const Tensor& q, const Tensor& k, const Tensor& v,
                          const Tensor& out, const Tensor& lse, const Tensor& dout, const Tensor& dq, const Tensor& dk,
                          const Tensor& dv) override;
  void attention_decode(int64_t heads, int64_t kv_heads, int64_t head_dim, const Tensor& q, const Tensor& k,
                        const Tensor& v, const Tensor& out) override;
  void ssd_decay_forward(const Tensor& A_log, const Tensor& A) override;
  void ssd_decay_backward(const Tensor& dA, const Tensor& A, const Tensor& dA_log) override;
  void ssd_forward(const SsdShape& s, const Tensor& x, const Tensor& dt, const Tensor& A, const Tensor& B,
                   const Tensor& C, const Tensor& D, const Tensor& init_state, const Tensor& y,
                   const Tensor& final_state) override;
  void ssd_backward(const SsdShape& s, const Tensor& x, const Tensor& dt, const Tensor& A, const Tensor& B,
                    const Tensor& C, const Tensor& D, const Tensor& init_state, const Tensor& dy,
                    const Tensor& dfinal_state, const Tensor& dx, const Tensor& ddt, const Tensor& dA, const Tensor& dB,
                    const Tensor& dC, const Tensor& dD, const Tensor& dinit_state) override;
  void ssd_step(int64_t heads, int64_t head_dim, int64_t groups, int64_t state_dim, const Tensor& x, const Tensor& dt,
                const Tensor& A, const Tensor& B, const Tensor& C, const Tensor& D, const Tensor& state,
                const Tensor& y) override;
  void conv1d_silu_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y, int64_t batch,
                           int64_t seq) override;
  void conv1d_silu_backward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& dx,
                            const Tensor& dw, const Tensor& dbias, int64_t batch, int64_t seq) override;
  void silu_mul_forward(const Tensor& gate, const Tensor& up, const Tensor& out) override;
  void silu_mul_backward(const Tensor& dout, const Tensor& gate, const Tensor& up, const Tensor& dgate,
                         const Tensor& dup) override;
  void residual_forward(const Tensor& skip, const Tensor& w, const Tensor& branch, const Tensor& out) override;
  void residual_backward(const Tensor& dout, const Tensor& skip, const Tensor& w, const Tensor& dskip,
                         const Tensor& dw) override;
  void softplus_forward(const Tensor& raw, const Tensor& bias, const Tensor& dt) override;
  void softplus_backward(const Tensor& ddt, const Tensor& raw, const Tensor& bias, const Tensor& draw,
                         const Tensor& dbias) override;
  void embedding_forward(const Tensor& ids, const Tensor& table, const Tensor& out) override;
  void embedding_backward(const Tensor& ids, const Tensor& dout, const Tensor& dtable) override;
  CrossEntropyResult lm_head_cross_entropy(const Tensor& h, const Tensor& W, const Tensor& targets,
                                           const Tensor& target_logprob, const Tensor& dh, const Tensor& dW,
                                           float grad_scale) override;
  void lm_head_logits(const Tensor& h, const Tensor& W, const Tensor& logits) override;
  void adamw_update(const Tensor& w, const Tensor& g, const Tensor& m, const Tensor& v, const AdamWParams& p,
                    bool decay) override;
  double sum_squares(const Tensor& x) override;
  void scale(const Tensor& x, float scale) override;
  bool all_finite(const Tensor& x) override;

  // Live allocations and the ops run so far (tests check that the fake device was used at all).
  size_t live_allocations() const;
  int64_t ops_run() const;

 private:
  class Unlocked;  // RAII: allocations accessible for the duration of one call
  struct Block {
    size_t size = 0, mapped = 0;  // bytes asked for, bytes mapped (whole pages)
  };
  // The operand as the CPU backend takes it, after checking that it is this backend's memory.
  Tensor host(const Tensor& t, const char* op) const;
  RopeCoeffs rope(const RopeCoeffs& c, const char* op) const;
  // True when [p, p + bytes) lies inside one live allocation.
  bool owns(const void* p, size_t bytes) const;
  void protect_all(int prot) const;

  mutable std::recursive_mutex mutex_;
  std::map<const char*, Block> blocks_;  // by start address
  int64_t ops_ = 0;
};

// A process-wide instance, like cpu_backend().
FakeDeviceBackend& fake_device_backend();

}  // namespace txs::test
