// The standard Mamba-2 mixer (spec section 6, baselines only): in_proj → [z, x, B, C, dt], causal
// depthwise conv + SiLU over [x, B, C], SSD scan with D skip (groups G), gated RMSNorm, out_proj.
#pragma once
#include <string>

#include "model/layer.h"

namespace txs {

class Mamba2Mixer final : public Layer {
 public:
  Mamba2Mixer(const ModelConfig& config, ParamStore& store, const std::string& prefix);
  void forward(Backend& be, const Pass& pass, const Tensor& u, const Tensor& out) override;
  void backward(Backend& be, const Pass& pass, const Tensor& u, const Tensor& dout, const Tensor& du,
                Arena& scratch) override;
  LayerState new_state(Backend& be) const override;
  void forward_cached(Backend& be, const CachedPass& pass, const Tensor& u, const Tensor& out) override;
  // Floats of state one sequence holds (SSD state, conv tail).
  static int64_t state_floats(const ModelConfig& c);

 private:
  SsdShape shape(const Pass& pass) const;
  void run(Backend& be, const Pass& pass, const CachedPass* cached, const Tensor& u, const Tensor& out);
  // Everything after the conv: dt, the scan (plain or stateful), gated norm, out projection.
  void finish(Backend& be, const Pass& pass, const CachedPass* cached, const Tensor& out);
  const ModelConfig& c_;
  ParamStore& store_;
  int64_t d_, E_d_, Hm_, P_, G_, N_, conv_ch_, in_width_;
  ParamRef in_, conv_w_, conv_b_, A_log_, dt_bias_, D_, norm_, out_;
  DeviceBuffer zxbcdt_, xbc_, dt_, y_, gated_, normed_, rstd_, A_;  // activations saved for backward
  DeviceBuffer window_, conv_out_, final_state_;                     // stateful-pass scratch
};

}  // namespace txs
