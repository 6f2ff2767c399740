// The standard Mamba-2 mixer (spec section 6, baselines only): in_proj → [z, x, B, C, dt], causal
// depthwise conv + SiLU over [x, B, C], SSD scan with D skip (groups G), gated RMSNorm, out_proj.
#pragma once
#include <string>

#include "model/layer.h"

namespace txs {

class Mamba2Mixer final : public Layer {
 public:
  Mamba2Mixer(const ModelConfig& config, ParamStore& store, const std::string& prefix);
  void bind(ParamStore& store) override;
  void forward(Backend& be, const Pass& pass, const float* u, float* out) override;
  void backward(Backend& be, const Pass& pass, const float* u, const float* dout, float* du,
                Workspace& ws) override;

 private:
  SsdShape shape(const Pass& pass) const;
  const ModelConfig& c_;
  int64_t d_, E_d_, Hm_, P_, G_, N_, conv_ch_, in_width_;
  int i_in_, i_conv_w_, i_conv_b_, i_A_log_, i_dt_bias_ = -1, i_D_, i_norm_, i_out_;
  float *W_in_, *conv_w_, *conv_b_, *A_log_, *dt_bias_ = nullptr, *D_, *norm_, *W_out_;
  float *dW_in_, *dconv_w_, *dconv_b_, *dA_log_, *ddt_bias_ = nullptr, *dD_, *dnorm_, *dW_out_;
  Buffer<float> zxbcdt_, xbc_, dt_, y_, gated_, normed_, rstd_, A_, dA_;
};

}  // namespace txs
