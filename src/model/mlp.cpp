#include "model/mlp.h"

namespace txs {

SwiGluMlp::SwiGluMlp(const ModelConfig& c, ParamStore& store, const std::string& p)
    : store_(store), gate_up_buf_(store.backend()), act_(store.backend()) {
  d_ = c.hidden_size, I_ = c.intermediate_size;
  gate_up_ = store.add({p + "gate_proj.weight", {I_, d_}, Init::Normal, true, true});
  store.add({p + "up_proj.weight", {I_, d_}, Init::Normal, true, true});
  down_ = store.add({p + "down_proj.weight", {d_, I_}, Init::Normal, true, true});
}

void SwiGluMlp::forward(Backend& be, const Pass& pass, const Tensor& u, const Tensor& out) {
  const int64_t rows = pass.rows();
  gate_up_buf_.resize(rows * 2 * I_);
  act_.resize(rows * I_);
  const Tensor gu = gate_up_buf_.mat(rows, 2 * I_), act = act_.mat(rows, I_);
  be.linear_forward(u, store_.fused_matmul_weight(gate_up_, 2), gu);
  be.silu_mul_forward(gu.col_slice(0, I_), gu.col_slice(I_, I_), act);
  be.linear_forward(act, store_.matmul_weight(down_), out);
}

void SwiGluMlp::backward(Backend& be, const Pass& pass, const Tensor& u, const Tensor& dout, const Tensor& du,
                         Arena& scratch) {
  const int64_t rows = pass.rows();
  const Tensor dact = scratch.take(rows, I_), dgu = scratch.take(rows, 2 * I_);
  const Tensor gu = gate_up_buf_.mat(rows, 2 * I_);
  be.linear_backward(dout, act_.mat(rows, I_), store_.matmul_weight(down_), dact, store_.grad(down_), false);
  be.silu_mul_backward(dact, gu.col_slice(0, I_), gu.col_slice(I_, I_), dgu.col_slice(0, I_), dgu.col_slice(I_, I_));
  be.linear_backward(dgu, u, store_.fused_matmul_weight(gate_up_, 2), du, store_.fused_grad(gate_up_, 2), false);
}

}  // namespace txs
