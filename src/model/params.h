// All parameters of a model live in one contiguous weight buffer with a parallel gradient buffer: the
// optimizer is one loop, and a data-parallel all-reduce is one call on the gradient buffer. Projections
// that read the same input (x/B/C/dt, q/k/v, gate/up) are registered consecutively so that they form one
// larger [out_total, in] matrix and run as one GEMM.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/buffer.h"

namespace txs {

struct Param {
  std::string name;             // checkpoint tensor name (spec section 9)
  std::vector<int64_t> shape;
  int64_t offset = 0;           // into the weight and gradient buffers
  int64_t numel = 0;
  bool decay = false;           // AdamW weight decay applies
  bool matmul = false;          // counts towards the 6·N matmul FLOPs per token
};

class ParamStore {
 public:
  // Registers a parameter; returns its index. Only before allocate().
  int add(std::string name, std::vector<int64_t> shape, bool decay, bool matmul);
  void allocate();  // zero-initialised weights and gradients
  float* weight(int index) { return weights_.data() + params_[size_t(index)].offset; }
  float* grad(int index) { return grads_.data() + params_[size_t(index)].offset; }
  const std::vector<Param>& params() const { return params_; }
  const Param* find(const std::string& name) const;
  int64_t size() const { return total_; }
  float* weights() { return weights_.data(); }
  float* grads() { return grads_.data(); }
  const float* weights() const { return weights_.data(); }
  const float* grads() const { return grads_.data(); }
  void zero_grads() { grads_.zero(); }

 private:
  std::vector<Param> params_;
  int64_t total_ = 0;
  Buffer<float> weights_, grads_;
};

}  // namespace txs
