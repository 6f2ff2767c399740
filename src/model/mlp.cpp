#include "model/mlp.h"

namespace txs {

SwiGluMlp::SwiGluMlp(const ModelConfig& c, ParamStore& store, const std::string& p) {
  d_ = c.hidden_size, I_ = c.intermediate_size;
  i_gate_up_ = store.add(p + "gate_proj.weight", {I_, d_}, true, true);
  store.add(p + "up_proj.weight", {I_, d_}, true, true);
  i_down_ = store.add(p + "down_proj.weight", {d_, I_}, true, true);
}

void SwiGluMlp::bind(ParamStore& s) {
  W_gate_up_ = s.weight(i_gate_up_), dW_gate_up_ = s.grad(i_gate_up_);
  W_down_ = s.weight(i_down_), dW_down_ = s.grad(i_down_);
}

void SwiGluMlp::forward(Backend& be, const Pass& pass, const float* u, float* out) {
  const int64_t rows = pass.rows();
  gate_up_.resize(size_t(rows * 2 * I_));
  act_.resize(size_t(rows * I_));
  be.linear_forward(u, W_gate_up_, gate_up_.data(), rows, d_, 2 * I_);
  be.silu_mul_forward(gate_up_.data(), 2 * I_, gate_up_.data() + I_, 2 * I_, act_.data(), I_, rows, I_);
  be.linear_forward(act_.data(), W_down_, out, rows, I_, d_);
}

void SwiGluMlp::backward(Backend& be, const Pass& pass, const float* u, const float* dout, float* du,
                         Workspace& ws) {
  const int64_t rows = pass.rows();
  ws.a.resize(size_t(rows * I_));
  ws.b.resize(size_t(rows * 2 * I_));
  float *dact = ws.a.data(), *dgate_up = ws.b.data();
  be.linear_backward(dout, act_.data(), W_down_, dact, dW_down_, rows, I_, d_, false);
  be.silu_mul_backward(dact, I_, gate_up_.data(), 2 * I_, gate_up_.data() + I_, 2 * I_, dgate_up, dgate_up + I_,
                       rows, I_);
  be.linear_backward(dgate_up, u, W_gate_up_, du, dW_gate_up_, rows, d_, 2 * I_, false);
}

}  // namespace txs
