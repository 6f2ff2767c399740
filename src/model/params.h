// All parameters of a model live in one contiguous weight buffer with a parallel gradient buffer, both in
// the backend's memory: the optimizer is one pass, and a data-parallel all-reduce is one call on the
// gradient buffer. A parameter is declared once — name, shape, initialisation rule, decay flag — and a
// layer keeps only its handle. Projections that read the same input (x/B/C/dt, q/k/v, gate/up) are
// declared consecutively so that fused_matmul_weight() sees them as one [out_total, in] matrix: one GEMM.
//
// Precision. In fp32 the layers read those weights directly. In bf16 (mixed precision) the matrices that
// feed products — every projection, the LM head and the embedding table, the `low_precision` parameters —
// also have a bf16 copy in a second buffer, which is what the products read (ops/backend.h: bf16 inputs,
// fp32 accumulation). Training keeps the fp32 masters, fp32 gradients and fp32 AdamW moments; the copies are
// refreshed from the masters after every change (refresh_compute). Inference in bf16 keeps no fp32 copy
// of the low-precision matrices at all (half the bytes to hold and to stream per token) and no gradients.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "ops/backend.h"

namespace txs {

// Spec section 8.
enum class Init {
  Normal,       // N(0, initializer_range²): projections, embeddings
  Ones,         // norms, residual scales, D
  ALog,         // log U[1, 16]
  DtBias,       // softplus⁻¹(exp U[log 1e-3, log 1e-1]) floored at 1e-4 (Mamba-2)
  ConvUniform,  // U(−1/√K, 1/√K): PyTorch Conv1d's default for fan-in K
};

enum class Precision : uint8_t { F32, BF16 };
const char* precision_name(Precision p);
Precision parse_precision(const std::string& s);  // "fp32" | "bf16"; throws with the accepted values

struct ParamSpec {
  std::string name;  // checkpoint tensor name (spec section 9)
  std::vector<int64_t> shape;
  Init init = Init::Normal;
  bool decay = false;   // AdamW weight decay applies
  bool matmul = false;  // counts towards the 6·N matmul FLOPs per token
  bool low_precision = false;  // read by products only: stored in bf16 for the bf16 mode (see above)
};

struct Param : ParamSpec {
  int64_t offset = 0;  // into the flat parameter order: gradients, optimizer state, all_weights()
  int64_t numel = 0;
  int64_t master_offset = -1;   // into the fp32 weights (−1: none kept, bf16 inference)
  int64_t compute_offset = -1;  // into the bf16 copies (−1: none, fp32 or not low_precision)
};

struct ParamRef {
  int index = -1;
  explicit operator bool() const { return index >= 0; }
};

// A contiguous F32 view of `be`'s memory copied to the host.
std::vector<float> download_floats(Backend& be, const Tensor& t);
// The host address of a contiguous F32 view when `be` keeps its memory on the host (the CPU backend): read
// in place; otherwise the view is downloaded into `staging`, whose data is returned. For checkpoint I/O,
// where a second host copy of a large model is worth avoiding on the CPU.
const float* host_readable(Backend& be, const Tensor& t, std::vector<float>& staging);

class ParamStore {
 public:
  explicit ParamStore(Backend& be) : be_(be), weights_(be), grads_(be), compute_(be, DType::BF16) {}
  // Only before allocate().
  ParamRef add(ParamSpec spec);
  // Zero weights (and gradients when training). training = false: no gradients; with BF16, no fp32 copy of
  // the low-precision parameters either.
  void allocate(Precision precision = Precision::F32, bool training = true);
  Precision precision() const { return precision_; }
  bool training() const { return training_; }

  // A parameter as a matrix [shape[0], rest] (a 1-D one as one row); absent (empty) for a null ref.
  // weight(): the fp32 value (fails for a low-precision parameter in bf16 inference).
  Tensor weight(ParamRef r) const { return view(Which::Master, r, 1); }
  Tensor grad(ParamRef r) const { return view(Which::Grad, r, 1); }
  // What products read: the bf16 copy in the bf16 mode, else the fp32 weight.
  Tensor matmul_weight(ParamRef r) const { return view(Which::Compute, r, 1); }
  // `count` consecutive parameters with equal columns, starting at r, as one matrix (a fused projection).
  Tensor fused_matmul_weight(ParamRef r, int count) const { return view(Which::Compute, r, count); }
  Tensor fused_grad(ParamRef r, int count) const { return view(Which::Grad, r, count); }

  // bf16 copies = round(fp32 masters); a no-op without copies. Call after anything writes the masters
  // (init, load, optimizer step, broadcast).
  void refresh_compute();
  // Sets one parameter from host fp32 values (converted where the mode stores it in bf16).
  void load(const Param& p, const float* host);
  // The stored values as flat views: the fp32 weights and the bf16 copies (either may be empty).
  Tensor stored_fp32() const { return weights_.flat(); }
  Tensor stored_bf16() const { return compute_.flat(); }
  // Bytes held: fp32 weights, bf16 copies, gradients.
  size_t weight_bytes() const { return weights_.bytes() + compute_.bytes(); }
  size_t grad_bytes() const { return grads_.bytes(); }

  const std::vector<Param>& params() const { return params_; }
  const Param& param(ParamRef r) const { return params_.at(size_t(r.index)); }
  const Param* find(const std::string& name) const;
  int64_t size() const { return total_; }
  // Every fp32 weight in the flat order (fails in bf16 inference, which keeps none of the matrices).
  Tensor all_weights() const;
  Tensor all_grads() const { return grads_.flat(); }
  // The fp32 weights / gradients in the flat order, copied to the host (checkpoint I/O, tests).
  std::vector<float> download_weights() const { return download_floats(be_, all_weights()); }
  std::vector<float> download_grads() const { return download_floats(be_, all_grads()); }
  // Direct pointers into backend memory: the CPU backend only (tests that poke weights in place); any other
  // backend's memory may not be host memory, so they fail there.
  float* weights() { return host_pointer(all_weights()); }
  float* grads() { return host_pointer(all_grads()); }
  const float* weights() const { return host_pointer(all_weights()); }
  const float* grads() const { return host_pointer(all_grads()); }
  void zero_grads() { grads_.zero(); }
  Backend& backend() const { return be_; }

 private:
  enum class Which { Master, Compute, Grad };
  float* host_pointer(const Tensor& t) const;
  Tensor view(Which which, ParamRef r, int count) const;
  Backend& be_;
  std::vector<Param> params_;
  int64_t total_ = 0;
  Precision precision_ = Precision::F32;
  bool training_ = true, allocated_ = false;
  DeviceBuffer weights_, grads_, compute_;
};

}  // namespace txs
