#include "model/mamba2_mixer.h"

#include <cmath>

namespace txs {

Mamba2Mixer::Mamba2Mixer(const ModelConfig& c, ParamStore& store, const std::string& p) : c_(c) {
  d_ = c.hidden_size, E_d_ = c.mamba_inner(), Hm_ = c.mamba_heads(), P_ = c.mamba_head_dim;
  G_ = c.mamba_n_groups, N_ = c.mamba_d_state;
  conv_ch_ = c.mamba_conv_channels();
  in_width_ = 2 * E_d_ + 2 * G_ * N_ + Hm_;  // [z, x, B, C, dt]
  i_in_ = store.add(p + "in_proj.weight", {in_width_, d_}, true, true);
  i_conv_w_ = store.add(p + "conv1d.weight", {conv_ch_, 1, c.conv_kernel}, true, false);
  i_conv_b_ = store.add(p + "conv1d.bias", {conv_ch_}, false, false);
  i_A_log_ = store.add(p + "A_log", {Hm_}, false, false);
  if (c.use_dt_bias) i_dt_bias_ = store.add(p + "dt_bias", {Hm_}, false, false);
  i_D_ = store.add(p + "D", {Hm_}, false, false);
  i_norm_ = store.add(p + "norm.weight", {E_d_}, false, false);
  i_out_ = store.add(p + "out_proj.weight", {d_, E_d_}, true, true);
}

void Mamba2Mixer::bind(ParamStore& s) {
  W_in_ = s.weight(i_in_), dW_in_ = s.grad(i_in_);
  conv_w_ = s.weight(i_conv_w_), dconv_w_ = s.grad(i_conv_w_);
  conv_b_ = s.weight(i_conv_b_), dconv_b_ = s.grad(i_conv_b_);
  A_log_ = s.weight(i_A_log_), dA_log_ = s.grad(i_A_log_);
  if (i_dt_bias_ >= 0) dt_bias_ = s.weight(i_dt_bias_), ddt_bias_ = s.grad(i_dt_bias_);
  D_ = s.weight(i_D_), dD_ = s.grad(i_D_);
  norm_ = s.weight(i_norm_), dnorm_ = s.grad(i_norm_);
  W_out_ = s.weight(i_out_), dW_out_ = s.grad(i_out_);
}

SsdShape Mamba2Mixer::shape(const Pass& pass) const {
  SsdShape s;
  s.batch = pass.batch, s.seq = pass.seq, s.heads = Hm_, s.head_dim = P_, s.groups = G_, s.state_dim = N_;
  s.chunk = c_.ssm_chunk_size;
  s.x_stride = s.bc_stride = conv_ch_;
  s.dt_stride = Hm_;
  s.y_stride = E_d_;
  return s;
}

void Mamba2Mixer::forward(Backend& be, const Pass& pass, const float* u, float* out) {
  const int64_t rows = pass.rows();
  zxbcdt_.resize(size_t(rows * in_width_));
  xbc_.resize(size_t(rows * conv_ch_));
  dt_.resize(size_t(rows * Hm_));
  y_.resize(size_t(rows * E_d_));
  gated_.resize(size_t(rows * E_d_));
  normed_.resize(size_t(rows * E_d_));
  rstd_.resize(size_t(rows));
  A_.resize(size_t(Hm_));
  be.linear_forward(u, W_in_, zxbcdt_.data(), rows, d_, in_width_);
  const float* z = zxbcdt_.data();
  be.conv1d_silu_forward(z + E_d_, in_width_, conv_w_, conv_b_, xbc_.data(), conv_ch_, pass.batch, pass.seq,
                         conv_ch_, c_.conv_kernel);
  for (int64_t h = 0; h < Hm_; ++h) A_[size_t(h)] = -std::exp(A_log_[h]);
  be.softplus_forward(z + E_d_ + conv_ch_, in_width_, dt_bias_, dt_.data(), rows, Hm_);
  const float* xbc = xbc_.data();
  be.ssd_forward(shape(pass), xbc, dt_.data(), A_.data(), xbc + E_d_, xbc + E_d_ + G_ * N_, D_, nullptr, y_.data(),
                 nullptr);
  be.silu_mul_forward(z, in_width_, y_.data(), E_d_, gated_.data(), E_d_, rows, E_d_);  // y ⊙ silu(z)
  be.rmsnorm_forward(gated_.data(), norm_, normed_.data(), rstd_.data(), rows, E_d_, c_.mamba_norm_eps);
  be.linear_forward(normed_.data(), W_out_, out, rows, E_d_, d_);
}

void Mamba2Mixer::backward(Backend& be, const Pass& pass, const float* u, const float* dout, float* du,
                           Workspace& ws) {
  const int64_t rows = pass.rows();
  ws.a.resize(size_t(rows * E_d_ * 2));
  ws.b.resize(size_t(rows * in_width_));
  ws.c.resize(size_t(rows * conv_ch_));
  ws.d.resize(size_t(rows * Hm_));
  float *dnormed = ws.a.data(), *dgated = ws.a.data() + rows * E_d_;
  float *dzxbcdt = ws.b.data(), *dxbc = ws.c.data(), *ddt = ws.d.data();
  be.linear_backward(dout, normed_.data(), W_out_, dnormed, dW_out_, rows, E_d_, d_, false);
  be.rmsnorm_backward(dnormed, gated_.data(), norm_, rstd_.data(), dgated, dnorm_, rows, E_d_);
  float* dy = dnormed;  // dnormed is dead now: reuse it for dy
  const float* z = zxbcdt_.data();
  be.silu_mul_backward(dgated, E_d_, z, in_width_, y_.data(), E_d_, dzxbcdt, dy, rows, E_d_);
  const float* xbc = xbc_.data();
  dA_.resize(size_t(Hm_));
  dA_.zero();
  be.ssd_backward(shape(pass), xbc, dt_.data(), A_.data(), xbc + E_d_, xbc + E_d_ + G_ * N_, D_, nullptr, dy,
                  nullptr, dxbc, ddt, dA_.data(), dxbc + E_d_, dxbc + E_d_ + G_ * N_, dD_, nullptr);
  for (int64_t h = 0; h < Hm_; ++h) dA_log_[h] += dA_[size_t(h)] * A_[size_t(h)];
  be.softplus_backward(ddt, z + E_d_ + conv_ch_, in_width_, dt_bias_, dzxbcdt + E_d_ + conv_ch_, ddt_bias_, rows,
                       Hm_);
  be.conv1d_silu_backward(dxbc, conv_ch_, z + E_d_, in_width_, conv_w_, conv_b_, dzxbcdt + E_d_, dconv_w_, dconv_b_,
                          pass.batch, pass.seq, conv_ch_, c_.conv_kernel);
  be.linear_backward(dzxbcdt, u, W_in_, du, dW_in_, rows, d_, in_width_, false);
}

}  // namespace txs
