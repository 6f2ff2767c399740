#include "model/mamba2_mixer.h"

#include "model/ssm_state.h"

namespace txs {

Mamba2Mixer::Mamba2Mixer(const ModelConfig& c, ParamStore& store, const std::string& p)
    : c_(c),
      store_(store),
      zxbcdt_(store.backend()),
      xbc_(store.backend()),
      dt_(store.backend()),
      y_(store.backend()),
      gated_(store.backend()),
      normed_(store.backend()),
      rstd_(store.backend()),
      A_(store.backend()),
      window_(store.backend()),
      conv_out_(store.backend()),
      final_state_(store.backend()) {
  d_ = c.hidden_size, E_d_ = c.mamba_inner(), Hm_ = c.mamba_heads(), P_ = c.mamba_head_dim;
  G_ = c.mamba_n_groups, N_ = c.mamba_d_state;
  conv_ch_ = c.mamba_conv_channels();
  in_width_ = 2 * E_d_ + 2 * G_ * N_ + Hm_;  // [z, x, B, C, dt]
  in_ = store.add({p + "in_proj.weight", {in_width_, d_}, Init::Normal, true, true});
  conv_w_ = store.add({p + "conv1d.weight", {conv_ch_, 1, c.conv_kernel}, Init::ConvUniform, true});
  conv_b_ = store.add({p + "conv1d.bias", {conv_ch_}, Init::ConvUniform});
  A_log_ = store.add({p + "A_log", {Hm_}, Init::ALog});
  if (c.use_dt_bias) dt_bias_ = store.add({p + "dt_bias", {Hm_}, Init::DtBias});
  D_ = store.add({p + "D", {Hm_}, Init::Ones});
  norm_ = store.add({p + "norm.weight", {E_d_}, Init::Ones});
  out_ = store.add({p + "out_proj.weight", {d_, E_d_}, Init::Normal, true, true});
}

SsdShape Mamba2Mixer::shape(const Pass& pass) const {
  SsdShape s;
  s.batch = pass.batch, s.seq = pass.seq, s.heads = Hm_, s.head_dim = P_, s.groups = G_, s.state_dim = N_;
  s.chunk = c_.ssm_chunk_size;
  return s;
}

void Mamba2Mixer::forward(Backend& be, const Pass& pass, const Tensor& u, const Tensor& out) {
  run(be, pass, nullptr, u, out);
}

// The forward pass; a stateful pass (cached) continues each sequence's conv tail and scan state.
void Mamba2Mixer::run(Backend& be, const Pass& pass, const CachedPass* cached, const Tensor& u, const Tensor& out) {
  const int64_t rows = pass.rows();
  zxbcdt_.resize(rows * in_width_);
  xbc_.resize(rows * conv_ch_);
  const Tensor z = zxbcdt_.mat(rows, in_width_);
  be.linear_forward(u, store_.matmul_weight(in_), z);
  const Tensor w = store_.weight(conv_w_), bias = store_.weight(conv_b_), xbc = xbc_.mat(rows, conv_ch_);
  if (cached)
    conv_cached(be, *cached, z.col_slice(E_d_, conv_ch_), w, bias, xbc, c_.conv_kernel, window_, conv_out_);
  else
    be.conv1d_silu_forward(z.col_slice(E_d_, conv_ch_), w, bias, xbc, pass.batch, pass.seq);
  finish(be, pass, cached, out);
}

void Mamba2Mixer::finish(Backend& be, const Pass& pass, const CachedPass* cached, const Tensor& out) {
  const int64_t rows = pass.rows();
  dt_.resize(rows * Hm_);
  y_.resize(rows * E_d_);
  gated_.resize(rows * E_d_);
  normed_.resize(rows * E_d_);
  rstd_.resize(rows);
  A_.resize(Hm_);
  const Tensor z = zxbcdt_.mat(rows, in_width_), xbc = xbc_.mat(rows, conv_ch_), y = y_.mat(rows, E_d_);
  be.ssd_decay_forward(store_.weight(A_log_), A_.flat());
  be.softplus_forward(z.col_slice(E_d_ + conv_ch_, Hm_), store_.weight(dt_bias_), dt_.mat(rows, Hm_));
  const Tensor x = xbc.col_slice(0, E_d_), B = xbc.col_slice(E_d_, G_ * N_), C = xbc.col_slice(E_d_ + G_ * N_, G_ * N_);
  if (cached)
    scan_cached(be, *cached, shape(pass), x, dt_.mat(rows, Hm_), A_.flat(), B, C, store_.weight(D_), y, final_state_);
  else
    be.ssd_forward(shape(pass), x, dt_.mat(rows, Hm_), A_.flat(), B, C, store_.weight(D_), Tensor{}, y, Tensor{});
  // Gated RMSNorm: norm(y ⊙ silu(z)), then the output projection.
  be.silu_mul_forward(z.col_slice(0, E_d_), y, gated_.mat(rows, E_d_));
  be.rmsnorm_forward(gated_.mat(rows, E_d_), store_.weight(norm_), normed_.mat(rows, E_d_), rstd_.mat(1, rows),
                     c_.mamba_norm_eps);
  be.linear_forward(normed_.mat(rows, E_d_), store_.matmul_weight(out_), out);
}

void Mamba2Mixer::backward(Backend& be, const Pass& pass, const Tensor& u, const Tensor& dout, const Tensor& du,
                           Arena& scratch) {
  const int64_t rows = pass.rows();
  const Tensor dnormed = scratch.take(rows, E_d_), dgated = scratch.take(rows, E_d_);
  const Tensor dzxbcdt = scratch.take(rows, in_width_), dxbc = scratch.take(rows, conv_ch_);
  const Tensor ddt = scratch.take(rows, Hm_), dA = scratch.take(1, Hm_);
  be.linear_backward(dout, normed_.mat(rows, E_d_), store_.matmul_weight(out_), dnormed, store_.grad(out_), false);
  be.rmsnorm_backward(dnormed, gated_.mat(rows, E_d_), store_.weight(norm_), rstd_.mat(1, rows), dgated,
                      store_.grad(norm_));
  const Tensor dy = dnormed;  // dnormed is dead now: reuse it for dy
  const Tensor z = zxbcdt_.mat(rows, in_width_), xbc = xbc_.mat(rows, conv_ch_);
  be.silu_mul_backward(dgated, z.col_slice(0, E_d_), y_.mat(rows, E_d_), dzxbcdt.col_slice(0, E_d_), dy);
  be.fill(dA, 0.0);
  be.ssd_backward(shape(pass), xbc.col_slice(0, E_d_), dt_.mat(rows, Hm_), A_.flat(), xbc.col_slice(E_d_, G_ * N_),
                  xbc.col_slice(E_d_ + G_ * N_, G_ * N_), store_.weight(D_), Tensor{}, dy, Tensor{},
                  dxbc.col_slice(0, E_d_), ddt, dA, dxbc.col_slice(E_d_, G_ * N_),
                  dxbc.col_slice(E_d_ + G_ * N_, G_ * N_), store_.grad(D_), Tensor{});
  be.ssd_decay_backward(dA, A_.flat(), store_.grad(A_log_));
  be.softplus_backward(ddt, z.col_slice(E_d_ + conv_ch_, Hm_), store_.weight(dt_bias_),
                       dzxbcdt.col_slice(E_d_ + conv_ch_, Hm_), store_.grad(dt_bias_));
  be.conv1d_silu_backward(dxbc, z.col_slice(E_d_, conv_ch_), store_.weight(conv_w_), store_.weight(conv_b_),
                          dzxbcdt.col_slice(E_d_, conv_ch_), store_.grad(conv_w_), store_.grad(conv_b_), pass.batch,
                          pass.seq);
  be.linear_backward(dzxbcdt, u, store_.matmul_weight(in_), du, store_.grad(in_), false);
}

LayerState Mamba2Mixer::new_state(Backend& be) const {
  LayerState s;
  s.ssm = DeviceBuffer(be, DType::F32, Hm_ * P_ * N_);
  s.ssm.zero();
  s.conv = DeviceBuffer(be, DType::F32, (c_.conv_kernel - 1) * conv_ch_);
  s.conv.zero();
  s.kv.bind(be);
  return s;
}

void Mamba2Mixer::forward_cached(Backend& be, const CachedPass& pass, const Tensor& u, const Tensor& out) {
  run(be, pass, &pass, u, out);
}

int64_t Mamba2Mixer::state_floats(const ModelConfig& c) {
  return c.mamba_heads() * c.mamba_head_dim * c.mamba_d_state + (c.conv_kernel - 1) * c.mamba_conv_channels();
}

}  // namespace txs
