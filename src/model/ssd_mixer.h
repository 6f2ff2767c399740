// TransXSSM's SSD mixer (spec section 4): fused projection to [x, B, C, dt], Unified RoPE on B and C
// (or the conv / no-position ablations), the chunked SSD scan, out projection.
#pragma once
#include <string>

#include "model/layer.h"

namespace txs {

class SsdMixer final : public Layer {
 public:
  SsdMixer(const ModelConfig& config, ParamStore& store, const std::string& prefix);
  void bind(ParamStore& store) override;
  void forward(Backend& be, const Pass& pass, const float* u, float* out) override;
  void backward(Backend& be, const Pass& pass, const float* u, const float* dout, float* du,
                Workspace& ws) override;

 private:
  SsdShape shape(const Pass& pass) const;
  const ModelConfig& c_;
  bool conv_, rope_;
  int64_t d_, H_, P_, N_, xbc_width_, in_width_;
  int i_in_, i_A_log_, i_dt_bias_ = -1, i_out_, i_conv_w_ = -1, i_conv_b_ = -1, i_D_ = -1;
  float *W_in_, *A_log_, *dt_bias_ = nullptr, *W_out_, *conv_w_ = nullptr, *conv_b_ = nullptr, *D_ = nullptr;
  float *dW_in_, *dA_log_, *ddt_bias_ = nullptr, *dW_out_, *dconv_w_ = nullptr, *dconv_b_ = nullptr, *dD_ = nullptr;
  Buffer<float> proj_, xbc_, dt_, y_, A_, dA_;
};

}  // namespace txs
