// SwiGLU feed-forward: down( silu(gate(u)) ⊙ up(u) ), gate and up fused into one GEMM.
#pragma once
#include <string>

#include "model/layer.h"

namespace txs {

class SwiGluMlp final : public Layer {
 public:
  SwiGluMlp(const ModelConfig& config, ParamStore& store, const std::string& prefix);
  void bind(ParamStore& store) override;
  void forward(Backend& be, const Pass& pass, const float* u, float* out) override;
  void backward(Backend& be, const Pass& pass, const float* u, const float* dout, float* du,
                Workspace& ws) override;

 private:
  int64_t d_, I_;
  int i_gate_up_, i_down_;
  float *W_gate_up_, *W_down_, *dW_gate_up_, *dW_down_;
  Buffer<float> gate_up_, act_;
};

}  // namespace txs
