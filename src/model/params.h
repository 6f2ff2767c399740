// All parameters of a model live in one contiguous weight buffer with a parallel gradient buffer, both in
// the backend's memory: the optimizer is one pass, and a data-parallel all-reduce is one call on the
// gradient buffer. A parameter is declared once — name, shape, initialisation rule, decay flag — and a
// layer keeps only its handle. Projections that read the same input (x/B/C/dt, q/k/v, gate/up) are
// declared consecutively so that fused() sees them as one [out_total, in] matrix: one GEMM.
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

struct ParamSpec {
  std::string name;  // checkpoint tensor name (spec section 9)
  std::vector<int64_t> shape;
  Init init = Init::Normal;
  bool decay = false;   // AdamW weight decay applies
  bool matmul = false;  // counts towards the 6·N matmul FLOPs per token
};

struct Param : ParamSpec {
  int64_t offset = 0;  // into the weight and gradient buffers
  int64_t numel = 0;
};

struct ParamRef {
  int index = -1;
  explicit operator bool() const { return index >= 0; }
};

class ParamStore {
 public:
  explicit ParamStore(Backend& be) : be_(be), weights_(be), grads_(be) {}
  // Only before allocate().
  ParamRef add(ParamSpec spec);
  void allocate();  // zero weights and gradients

  // A parameter as a matrix [shape[0], rest] (a 1-D one as one row); absent (empty) for a null ref.
  Tensor weight(ParamRef r) const { return view(weights_, r, 1); }
  Tensor grad(ParamRef r) const { return view(grads_, r, 1); }
  // `count` consecutive parameters with equal columns, starting at r, as one matrix (a fused projection).
  Tensor fused_weight(ParamRef r, int count) const { return view(weights_, r, count); }
  Tensor fused_grad(ParamRef r, int count) const { return view(grads_, r, count); }

  const std::vector<Param>& params() const { return params_; }
  const Param& param(ParamRef r) const { return params_.at(size_t(r.index)); }
  const Param* find(const std::string& name) const;
  int64_t size() const { return total_; }
  Tensor all_weights() const { return weights_.flat(); }
  Tensor all_grads() const { return grads_.flat(); }
  // Raw backend memory (host memory on the CPU backend: tests and checkpoint I/O of the CPU build).
  float* weights() { return weights_.data<float>(); }
  float* grads() { return grads_.data<float>(); }
  const float* weights() const { return weights_.data<float>(); }
  const float* grads() const { return grads_.data<float>(); }
  void zero_grads() { grads_.zero(); }
  Backend& backend() const { return be_; }

 private:
  Tensor view(const DeviceBuffer& buf, ParamRef r, int count) const;
  Backend& be_;
  std::vector<Param> params_;
  int64_t total_ = 0;
  DeviceBuffer weights_, grads_;
};

}  // namespace txs
