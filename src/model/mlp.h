// SwiGLU feed-forward: down( silu(gate(u)) ⊙ up(u) ), gate and up fused into one GEMM. Stateless: its
// stateful path is its forward.
#pragma once
#include <string>

#include "model/layer.h"

namespace txs {

class SwiGluMlp final : public Layer {
 public:
  SwiGluMlp(const ModelConfig& config, ParamStore& store, const std::string& prefix);
  void forward(Backend& be, const Pass& pass, const Tensor& u, const Tensor& out) override;
  void backward(Backend& be, const Pass& pass, const Tensor& u, const Tensor& dout, const Tensor& du,
                Arena& scratch) override;

 private:
  ParamStore& store_;
  int64_t d_, I_;
  ParamRef gate_up_, down_;  // gate_up_: gate and up fused
  DeviceBuffer gate_up_buf_, act_;
};

}  // namespace txs
