// Causal self-attention mixer (spec section 5): fused q/k/v projection, Unified RoPE on q and k
// (or none, for the Jamba-like baseline), grouped-query flash attention, output projection. Its stateful
// path keeps a KV cache (rotated keys and values) per sequence: the only state that grows with length.
#pragma once
#include <string>

#include "model/layer.h"

namespace txs {

class AttentionMixer final : public Layer {
 public:
  AttentionMixer(const ModelConfig& config, ParamStore& store, const std::string& prefix);
  void forward(Backend& be, const Pass& pass, const Tensor& u, const Tensor& out) override;
  void backward(Backend& be, const Pass& pass, const Tensor& u, const Tensor& dout, const Tensor& du,
                Arena& scratch) override;
  LayerState new_state(Backend& be) const override;
  void forward_cached(Backend& be, const CachedPass& pass, const Tensor& u, const Tensor& out) override;
  // Floats of KV cache one sequence of `context` tokens holds.
  static int64_t state_floats(const ModelConfig& c, int64_t context);

 private:
  void project(Backend& be, const Pass& pass, const Tensor& u);  // qkv = u·W_qkvᵀ, RoPE on q and k
  ParamStore& store_;
  bool rope_;
  int64_t d_, H_, Hkv_, P_, qkv_width_;
  ParamRef qkv_, o_;  // qkv_: q, k, v fused
  DeviceBuffer qkv_buf_, o_buf_, lse_;
};

}  // namespace txs
