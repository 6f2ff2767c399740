// TransXSSM's SSD mixer (spec section 4): fused projection to [x, B, C, dt], Unified RoPE on B and C
// (or the conv / no-position ablations), the chunked SSD scan, out projection.
#pragma once
#include <string>

#include "model/layer.h"

namespace txs {

class SsdMixer final : public Layer {
 public:
  SsdMixer(const ModelConfig& config, ParamStore& store, const std::string& prefix);
  void forward(Backend& be, const Pass& pass, const Tensor& u, const Tensor& out) override;
  void backward(Backend& be, const Pass& pass, const Tensor& u, const Tensor& dout, const Tensor& du,
                Arena& scratch) override;
  LayerState new_state(Backend& be) const override;
  void forward_cached(Backend& be, const CachedPass& pass, const Tensor& u, const Tensor& out) override;
  // Floats of state one sequence holds (SSD state, conv tail).
  static int64_t state_floats(const ModelConfig& c);

 private:
  SsdShape shape(const Pass& pass) const;
  // Projection, dt and A: everything before the position handling and the scan.
  void project(Backend& be, const Pass& pass, const Tensor& u);
  void run(Backend& be, const Pass& pass, const CachedPass* cached, const Tensor& u, const Tensor& out);
  const ModelConfig& c_;
  ParamStore& store_;
  bool conv_, rope_;
  int64_t d_, H_, P_, N_, xbc_width_, in_width_;
  ParamRef in_, A_log_, dt_bias_, out_, conv_w_, conv_b_, D_;  // in_: x, B, C, dt fused
  DeviceBuffer proj_, xbc_, dt_, y_, A_;                      // activations saved for backward
  DeviceBuffer window_, conv_out_, final_state_;              // stateful-pass scratch
};

}  // namespace txs
