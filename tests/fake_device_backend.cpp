// The fake device backend (fake_device_backend.h): mmap'ed allocations kept PROT_NONE between calls, every
// call forwarded to the CPU backend with the allocations opened and the operands re-tagged as host memory.
#include "fake_device_backend.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <new>

#include "core/error.h"

namespace txs::test {

namespace {
size_t page_size() {
  static const size_t p = size_t(::sysconf(_SC_PAGESIZE));
  return p;
}
size_t view_bytes(const Tensor& t) {
  if (t.rows <= 0 || t.cols <= 0) return 0;
  return size_t((t.rows - 1) * t.stride + t.cols) * dtype_size(t.dtype);
}
}  // namespace

// Holds the backend's lock and keeps every allocation readable and writable for one call.
class FakeDeviceBackend::Unlocked {
 public:
  explicit Unlocked(const FakeDeviceBackend& be) : be_(be), lock_(be.mutex_) {
    be_.protect_all(PROT_READ | PROT_WRITE);
    ++const_cast<FakeDeviceBackend&>(be_).ops_;
  }
  ~Unlocked() { be_.protect_all(PROT_NONE); }
  Unlocked(const Unlocked&) = delete;
  Unlocked& operator=(const Unlocked&) = delete;

 private:
  const FakeDeviceBackend& be_;
  std::lock_guard<std::recursive_mutex> lock_;
};

FakeDeviceBackend::~FakeDeviceBackend() {
  for (auto& [start, block] : blocks_) ::munmap(const_cast<char*>(start), block.mapped);
}

void FakeDeviceBackend::protect_all(int prot) const {
  for (auto& [start, block] : blocks_)
    if (::mprotect(const_cast<char*>(start), block.mapped, prot) != 0)
      fail("fake-device: mprotect failed ({})", std::strerror(errno));
}

bool FakeDeviceBackend::owns(const void* p, size_t bytes) const {
  const char* c = static_cast<const char*>(p);
  auto it = blocks_.upper_bound(c);
  if (it == blocks_.begin()) return false;
  --it;
  return c >= it->first && c + bytes <= it->first + it->second.size;
}

Tensor FakeDeviceBackend::host(const Tensor& t, const char* op) const {
  if (!t.data) return t;
  if (t.device != Device::Cuda)
    fail("fake-device {}: operand tagged {} memory (a host array handed to a device op)", op, device_name(t.device));
  if (!owns(t.data, view_bytes(t)))
    fail("fake-device {}: operand [{}, {}] stride {} is not inside one of this backend's allocations", op, t.rows,
         t.cols, t.stride);
  Tensor h = t;
  h.device = Device::Cpu;
  return h;
}

RopeCoeffs FakeDeviceBackend::rope(const RopeCoeffs& c, const char* op) const {
  const size_t bytes = size_t(c.positions * (c.dim / 2)) * sizeof(float);
  if (!owns(c.cos, bytes) || !owns(c.sin, bytes))
    fail("fake-device {}: RoPE table is not in this backend's memory", op);
  return c;
}

void* FakeDeviceBackend::alloc(size_t bytes) {
  const std::lock_guard<std::recursive_mutex> lock(mutex_);
  const size_t mapped = std::max<size_t>(page_size(), (bytes + page_size() - 1) / page_size() * page_size());
  void* p = ::mmap(nullptr, mapped, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  blocks_[static_cast<const char*>(p)] = Block{bytes, mapped};
  return p;
}

void FakeDeviceBackend::free(void* p) {
  if (!p) return;
  const std::lock_guard<std::recursive_mutex> lock(mutex_);
  auto it = blocks_.find(static_cast<const char*>(p));
  if (it == blocks_.end()) fail("fake-device: free of a pointer it did not allocate");
  ::munmap(p, it->second.mapped);
  blocks_.erase(it);
}

void FakeDeviceBackend::upload(const void* host_src, const Tensor& dst) {
  const Unlocked open(*this);
  if (owns(host_src, 1)) fail("fake-device upload: the host source is device memory");
  cpu_backend().upload(host_src, host(dst, "upload"));
}

void FakeDeviceBackend::download(const Tensor& src, void* host_dst) {
  const Unlocked open(*this);
  if (owns(host_dst, 1)) fail("fake-device download: the host destination is device memory");
  cpu_backend().download(host(src, "download"), host_dst);
}

void FakeDeviceBackend::copy(const Tensor& src, const Tensor& dst) {
  const Unlocked open(*this);
  cpu_backend().copy(host(src, "copy"), host(dst, "copy"));
}

void FakeDeviceBackend::fill(const Tensor& dst, double value) {
  const Unlocked open(*this);
  cpu_backend().fill(host(dst, "fill"), value);
}

size_t FakeDeviceBackend::live_allocations() const {
  const std::lock_guard<std::recursive_mutex> lock(mutex_);
  return blocks_.size();
}

int64_t FakeDeviceBackend::ops_run() const {
  const std::lock_guard<std::recursive_mutex> lock(mutex_);
  return ops_;
}

void FakeDeviceBackend::linear_forward(const Tensor& x, const Tensor& W, const Tensor& y) {
  const Unlocked open(*this);
  const char* op = "linear_forward";
  cpu_backend().linear_forward(host(x, op), host(W, op), host(y, op));
}

void FakeDeviceBackend::linear_backward(const Tensor& dy, const Tensor& x, const Tensor& W, const Tensor& dx,
                                        const Tensor& dW, bool accumulate_dx) {
  const Unlocked open(*this);
  const char* op = "linear_backward";
  cpu_backend().linear_backward(host(dy, op), host(x, op), host(W, op), host(dx, op), host(dW, op), accumulate_dx);
}

void FakeDeviceBackend::rmsnorm_forward(const Tensor& x, const Tensor& gain, const Tensor& y, const Tensor& rstd,
                                        double eps) {
  const Unlocked open(*this);
  const char* op = "rmsnorm_forward";
  cpu_backend().rmsnorm_forward(host(x, op), host(gain, op), host(y, op), host(rstd, op), eps);
}

void FakeDeviceBackend::rmsnorm_backward(const Tensor& dy, const Tensor& x, const Tensor& gain, const Tensor& rstd,
                                         const Tensor& dx, const Tensor& dgain) {
  const Unlocked open(*this);
  const char* op = "rmsnorm_backward";
  cpu_backend().rmsnorm_backward(host(dy, op), host(x, op), host(gain, op), host(rstd, op), host(dx, op),
                                 host(dgain, op));
}

void FakeDeviceBackend::rope_apply(const Tensor& x, int64_t heads, const Tensor& pos, const RopeCoeffs& coeffs,
                                   bool inverse) {
  const Unlocked open(*this);
  const char* op = "rope_apply";
  cpu_backend().rope_apply(host(x, op), heads, host(pos, op), rope(coeffs, op), inverse);
}

void FakeDeviceBackend::attention_forward(const AttentionShape& s, const Tensor& q, const Tensor& k, const Tensor& v,
                                          const Tensor& out, const Tensor& lse) {
  const Unlocked open(*this);
  const char* op = "attention_forward";
  cpu_backend().attention_forward(s, host(q, op), host(k, op), host(v, op), host(out, op), host(lse, op));
}

void FakeDeviceBackend::attention_backward(const AttentionShape& s, const Tensor& q, const Tensor& k, const Tensor& v,
                                           const Tensor& out, const Tensor& lse, const Tensor& dout, const Tensor& dq,
                                           const Tensor& dk, const Tensor& dv) {
  const Unlocked open(*this);
  const char* op = "attention_backward";
  cpu_backend().attention_backward(s, host(q, op), host(k, op), host(v, op), host(out, op), host(lse, op),
                                   host(dout, op), host(dq, op), host(dk, op), host(dv, op));
}

void FakeDeviceBackend::attention_decode(int64_t heads, int64_t kv_heads, int64_t head_dim, const Tensor& q,
                                         const Tensor& k, const Tensor& v, const Tensor& out) {
  const Unlocked open(*this);
  const char* op = "attention_decode";
  cpu_backend().attention_decode(heads, kv_heads, head_dim, host(q, op), host(k, op), host(v, op), host(out, op));
}

void FakeDeviceBackend::ssd_decay_forward(const Tensor& A_log, const Tensor& A) {
  const Unlocked open(*this);
  const char* op = "ssd_decay_forward";
  cpu_backend().ssd_decay_forward(host(A_log, op), host(A, op));
}

void FakeDeviceBackend::ssd_decay_backward(const Tensor& dA, const Tensor& A, const Tensor& dA_log) {
  const Unlocked open(*this);
  const char* op = "ssd_decay_backward";
  cpu_backend().ssd_decay_backward(host(dA, op), host(A, op), host(dA_log, op));
}

void FakeDeviceBackend::ssd_forward(const SsdShape& s, const Tensor& x, const Tensor& dt, const Tensor& A,
                                    const Tensor& B, const Tensor& C, const Tensor& D, const Tensor& init_state,
                                    const Tensor& y, const Tensor& final_state) {
  const Unlocked open(*this);
  const char* op = "ssd_forward";
  cpu_backend().ssd_forward(s, host(x, op), host(dt, op), host(A, op), host(B, op), host(C, op), host(D, op),
                            host(init_state, op), host(y, op), host(final_state, op));
}

void FakeDeviceBackend::ssd_backward(const SsdShape& s, const Tensor& x, const Tensor& dt, const Tensor& A,
                                     const Tensor& B, const Tensor& C, const Tensor& D, const Tensor& init_state,
                                     const Tensor& dy, const Tensor& dfinal_state, const Tensor& dx, const Tensor& ddt,
                                     const Tensor& dA, const Tensor& dB, const Tensor& dC, const Tensor& dD,
                                     const Tensor& dinit_state) {
  const Unlocked open(*this);
  const char* op = "ssd_backward";
  cpu_backend().ssd_backward(s, host(x, op), host(dt, op), host(A, op), host(B, op), host(C, op), host(D, op),
                             host(init_state, op), host(dy, op), host(dfinal_state, op), host(dx, op), host(ddt, op),
                             host(dA, op), host(dB, op), host(dC, op), host(dD, op), host(dinit_state, op));
}

void FakeDeviceBackend::ssd_step(int64_t heads, int64_t head_dim, int64_t groups, int64_t state_dim, const Tensor& x,
                                 const Tensor& dt, const Tensor& A, const Tensor& B, const Tensor& C, const Tensor& D,
                                 const Tensor& state, const Tensor& y) {
  const Unlocked open(*this);
  const char* op = "ssd_step";
  cpu_backend().ssd_step(heads, head_dim, groups, state_dim, host(x, op), host(dt, op), host(A, op), host(B, op),
                         host(C, op), host(D, op), host(state, op), host(y, op));
}

void FakeDeviceBackend::conv1d_silu_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y,
                                            int64_t batch, int64_t seq) {
  const Unlocked open(*this);
  const char* op = "conv1d_silu_forward";
  cpu_backend().conv1d_silu_forward(host(x, op), host(w, op), host(bias, op), host(y, op), batch, seq);
}

void FakeDeviceBackend::conv1d_silu_backward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& bias,
                                             const Tensor& dx, const Tensor& dw, const Tensor& dbias, int64_t batch,
                                             int64_t seq) {
  const Unlocked open(*this);
  const char* op = "conv1d_silu_backward";
  cpu_backend().conv1d_silu_backward(host(dy, op), host(x, op), host(w, op), host(bias, op), host(dx, op), host(dw, op),
                                     host(dbias, op), batch, seq);
}

void FakeDeviceBackend::silu_mul_forward(const Tensor& gate, const Tensor& up, const Tensor& out) {
  const Unlocked open(*this);
  const char* op = "silu_mul_forward";
  cpu_backend().silu_mul_forward(host(gate, op), host(up, op), host(out, op));
}

void FakeDeviceBackend::silu_mul_backward(const Tensor& dout, const Tensor& gate, const Tensor& up, const Tensor& dgate,
                                          const Tensor& dup) {
  const Unlocked open(*this);
  const char* op = "silu_mul_backward";
  cpu_backend().silu_mul_backward(host(dout, op), host(gate, op), host(up, op), host(dgate, op), host(dup, op));
}

void FakeDeviceBackend::residual_forward(const Tensor& skip, const Tensor& w, const Tensor& branch, const Tensor& out) {
  const Unlocked open(*this);
  const char* op = "residual_forward";
  cpu_backend().residual_forward(host(skip, op), host(w, op), host(branch, op), host(out, op));
}

void FakeDeviceBackend::residual_backward(const Tensor& dout, const Tensor& skip, const Tensor& w, const Tensor& dskip,
                                          const Tensor& dw) {
  const Unlocked open(*this);
  const char* op = "residual_backward";
  cpu_backend().residual_backward(host(dout, op), host(skip, op), host(w, op), host(dskip, op), host(dw, op));
}

void FakeDeviceBackend::softplus_forward(const Tensor& raw, const Tensor& bias, const Tensor& dt) {
  const Unlocked open(*this);
  const char* op = "softplus_forward";
  cpu_backend().softplus_forward(host(raw, op), host(bias, op), host(dt, op));
}

void FakeDeviceBackend::softplus_backward(const Tensor& ddt, const Tensor& raw, const Tensor& bias, const Tensor& draw,
                                          const Tensor& dbias) {
  const Unlocked open(*this);
  const char* op = "softplus_backward";
  cpu_backend().softplus_backward(host(ddt, op), host(raw, op), host(bias, op), host(draw, op), host(dbias, op));
}

void FakeDeviceBackend::embedding_forward(const Tensor& ids, const Tensor& table, const Tensor& out) {
  const Unlocked open(*this);
  const char* op = "embedding_forward";
  cpu_backend().embedding_forward(host(ids, op), host(table, op), host(out, op));
}

void FakeDeviceBackend::embedding_backward(const Tensor& ids, const Tensor& dout, const Tensor& dtable) {
  const Unlocked open(*this);
  const char* op = "embedding_backward";
  cpu_backend().embedding_backward(host(ids, op), host(dout, op), host(dtable, op));
}

CrossEntropyResult FakeDeviceBackend::lm_head_cross_entropy(const Tensor& h, const Tensor& W, const Tensor& targets,
                                                            const Tensor& target_logprob, const Tensor& dh,
                                                            const Tensor& dW, float grad_scale) {
  const Unlocked open(*this);
  const char* op = "lm_head_cross_entropy";
  return cpu_backend().lm_head_cross_entropy(host(h, op), host(W, op), host(targets, op), host(target_logprob, op),
                                             host(dh, op), host(dW, op), grad_scale);
}

void FakeDeviceBackend::lm_head_logits(const Tensor& h, const Tensor& W, const Tensor& logits) {
  const Unlocked open(*this);
  const char* op = "lm_head_logits";
  cpu_backend().lm_head_logits(host(h, op), host(W, op), host(logits, op));
}

void FakeDeviceBackend::adamw_update(const Tensor& w, const Tensor& g, const Tensor& m, const Tensor& v,
                                     const AdamWParams& p, bool decay) {
  const Unlocked open(*this);
  const char* op = "adamw_update";
  cpu_backend().adamw_update(host(w, op), host(g, op), host(m, op), host(v, op), p, decay);
}

double FakeDeviceBackend::sum_squares(const Tensor& x) {
  const Unlocked open(*this);
  const char* op = "sum_squares";
  return cpu_backend().sum_squares(host(x, op));
}

void FakeDeviceBackend::scale(const Tensor& x, float scale) {
  const Unlocked open(*this);
  const char* op = "scale";
  cpu_backend().scale(host(x, op), scale);
}

bool FakeDeviceBackend::all_finite(const Tensor& x) {
  const Unlocked open(*this);
  const char* op = "all_finite";
  return cpu_backend().all_finite(host(x, op));
}

FakeDeviceBackend& fake_device_backend() {
  static FakeDeviceBackend* be = new FakeDeviceBackend;  // never destroyed: buffers may outlive static teardown
  return *be;
}

}  // namespace txs::test
