// Causal self-attention mixer (spec section 5): fused q/k/v projection, Unified RoPE on q and k
// (or none, for the Jamba-like baseline), grouped-query flash attention, output projection.
#pragma once
#include <string>

#include "model/layer.h"

namespace txs {

class AttentionMixer final : public Layer {
 public:
  AttentionMixer(const ModelConfig& config, ParamStore& store, const std::string& prefix);
  void bind(ParamStore& store) override;
  void forward(Backend& be, const Pass& pass, const float* u, float* out) override;
  void backward(Backend& be, const Pass& pass, const float* u, const float* dout, float* du,
                Workspace& ws) override;

 private:
  AttentionShape shape(const Pass& pass) const;
  bool rope_;
  int64_t d_, H_, Hkv_, P_, qkv_width_;
  int i_qkv_, i_o_;
  float *W_qkv_, *W_o_, *dW_qkv_, *dW_o_;
  Buffer<float> qkv_, o_, lse_;
};

}  // namespace txs
