#include "model/ssd_mixer.h"

#include "model/ssm_state.h"

namespace txs {

SsdMixer::SsdMixer(const ModelConfig& c, ParamStore& store, const std::string& p)
    : c_(c),
      store_(store),
      conv_(c.ssm_position == SsmPosition::Conv),
      rope_(c.ssm_position == SsmPosition::Rope),
      proj_(store.backend()),
      xbc_(store.backend()),
      dt_(store.backend()),
      y_(store.backend()),
      A_(store.backend()),
      window_(store.backend()),
      conv_out_(store.backend()),
      final_state_(store.backend()) {
  d_ = c.hidden_size, H_ = c.num_attention_heads, P_ = c.head_dim, N_ = c.ssm_state_size;
  xbc_width_ = H_ * P_ + 2 * H_ * N_;
  in_width_ = xbc_width_ + H_;
  // x, b, c, dt projections are consecutive: together one [in_width, d] matrix.
  in_ = store.add({p + "x_proj.weight", {H_ * P_, d_}, Init::Normal, true, true});
  store.add({p + "b_proj.weight", {H_ * N_, d_}, Init::Normal, true, true});
  store.add({p + "c_proj.weight", {H_ * N_, d_}, Init::Normal, true, true});
  store.add({p + "dt_proj.weight", {H_, d_}, Init::Normal, true, true});
  A_log_ = store.add({p + "A_log", {H_}, Init::ALog});
  if (c.use_dt_bias) dt_bias_ = store.add({p + "dt_bias", {H_}, Init::DtBias});
  out_ = store.add({p + "out_proj.weight", {d_, H_ * P_}, Init::Normal, true, true});
  if (conv_) {
    conv_w_ = store.add({p + "conv1d.weight", {xbc_width_, 1, c.conv_kernel}, Init::ConvUniform, true});
    conv_b_ = store.add({p + "conv1d.bias", {xbc_width_}, Init::ConvUniform});
    D_ = store.add({p + "D", {H_}, Init::Ones});
  }
}

SsdShape SsdMixer::shape(const Pass& pass) const {
  SsdShape s;
  s.batch = pass.batch, s.seq = pass.seq, s.heads = H_, s.head_dim = P_, s.groups = H_, s.state_dim = N_;
  s.chunk = c_.ssm_chunk_size;
  return s;
}

void SsdMixer::project(Backend& be, const Pass& pass, const Tensor& u) {
  const int64_t rows = pass.rows();
  proj_.resize(rows * in_width_);
  dt_.resize(rows * H_);
  y_.resize(rows * H_ * P_);
  A_.resize(H_);
  const Tensor proj = proj_.mat(rows, in_width_);
  be.linear_forward(u, store_.fused_matmul_weight(in_, 4), proj);
  be.ssd_decay_forward(store_.weight(A_log_), A_.flat());
  be.softplus_forward(proj.col_slice(xbc_width_, H_), store_.weight(dt_bias_), dt_.mat(rows, H_));
}

void SsdMixer::forward(Backend& be, const Pass& pass, const Tensor& u, const Tensor& out) {
  run(be, pass, nullptr, u, out);
}

// The forward pass; a stateful pass (cached) continues each sequence's conv tail and scan state instead
// of starting from zeros. Everything else is the same code.
void SsdMixer::run(Backend& be, const Pass& pass, const CachedPass* cached, const Tensor& u, const Tensor& out) {
  const int64_t rows = pass.rows();
  project(be, pass, u);
  const Tensor proj = proj_.mat(rows, in_width_);
  Tensor xbc = proj.col_slice(0, xbc_width_);
  if (conv_) {
    xbc_.resize(rows * xbc_width_);
    const Tensor w = store_.weight(conv_w_), bias = store_.weight(conv_b_), conv_out = xbc_.mat(rows, xbc_width_);
    if (cached)
      conv_cached(be, *cached, xbc, w, bias, conv_out, c_.conv_kernel, window_, conv_out_);
    else
      be.conv1d_silu_forward(xbc, w, bias, conv_out, pass.batch, pass.seq);
    xbc = conv_out;
  } else if (rope_) {
    // B and C are adjacent (2H vectors of size N per row): one rotation call covers both.
    be.rope_apply(proj.col_slice(H_ * P_, 2 * H_ * N_), 2 * H_, pass.pos, pass.rope_state, false);
  }
  const Tensor y = y_.mat(rows, H_ * P_), x = xbc.col_slice(0, H_ * P_), dt = dt_.mat(rows, H_);
  const Tensor B = xbc.col_slice(H_ * P_, H_ * N_), C = xbc.col_slice(H_ * P_ + H_ * N_, H_ * N_);
  if (cached)
    scan_cached(be, *cached, shape(pass), x, dt, A_.flat(), B, C, store_.weight(D_), y, final_state_);
  else
    be.ssd_forward(shape(pass), x, dt, A_.flat(), B, C, store_.weight(D_), Tensor{}, y, Tensor{});
  be.linear_forward(y, store_.matmul_weight(out_), out);
}

void SsdMixer::backward(Backend& be, const Pass& pass, const Tensor& u, const Tensor& dout, const Tensor& du,
                        Arena& scratch) {
  const int64_t rows = pass.rows();
  const Tensor dy = scratch.take(rows, H_ * P_), dproj = scratch.take(rows, in_width_), ddt = scratch.take(rows, H_);
  const Tensor dA = scratch.take(1, H_);
  be.linear_backward(dout, y_.mat(rows, H_ * P_), store_.matmul_weight(out_), dy, store_.grad(out_), false);

  const Tensor proj = proj_.mat(rows, in_width_);
  const Tensor xbc = conv_ ? xbc_.mat(rows, xbc_width_) : proj.col_slice(0, xbc_width_);
  // Without conv, the scan's input gradients land directly in the projection gradient.
  const Tensor dxbc = conv_ ? scratch.take(rows, xbc_width_) : dproj.col_slice(0, xbc_width_);
  be.fill(dA, 0.0);
  const Tensor B = xbc.col_slice(H_ * P_, H_ * N_), C = xbc.col_slice(H_ * P_ + H_ * N_, H_ * N_);
  be.ssd_backward(shape(pass), xbc.col_slice(0, H_ * P_), dt_.mat(rows, H_), A_.flat(), B, C, store_.weight(D_),
                  Tensor{}, dy, Tensor{}, dxbc.col_slice(0, H_ * P_), ddt, dA, dxbc.col_slice(H_ * P_, H_ * N_),
                  dxbc.col_slice(H_ * P_ + H_ * N_, H_ * N_), store_.grad(D_), Tensor{});
  be.ssd_decay_backward(dA, A_.flat(), store_.grad(A_log_));
  be.softplus_backward(ddt, proj.col_slice(xbc_width_, H_), store_.weight(dt_bias_), dproj.col_slice(xbc_width_, H_),
                       store_.grad(dt_bias_));
  if (conv_) {
    be.conv1d_silu_backward(dxbc, proj.col_slice(0, xbc_width_), store_.weight(conv_w_), store_.weight(conv_b_),
                            dproj.col_slice(0, xbc_width_), store_.grad(conv_w_), store_.grad(conv_b_), pass.batch,
                            pass.seq);
  } else if (rope_) {
    be.rope_apply(dproj.col_slice(H_ * P_, 2 * H_ * N_), 2 * H_, pass.pos, pass.rope_state, true);
  }
  be.linear_backward(dproj, u, store_.fused_matmul_weight(in_, 4), du, store_.fused_grad(in_, 4), false);
}

LayerState SsdMixer::new_state(Backend& be) const {
  LayerState s;
  s.ssm = DeviceBuffer(be, DType::F32, H_ * P_ * N_);
  s.ssm.zero();
  if (conv_) {
    s.conv = DeviceBuffer(be, DType::F32, (c_.conv_kernel - 1) * xbc_width_);
    s.conv.zero();
  }
  s.kv.bind(be);
  return s;
}

void SsdMixer::forward_cached(Backend& be, const CachedPass& pass, const Tensor& u, const Tensor& out) {
  run(be, pass, &pass, u, out);
}

int64_t SsdMixer::state_floats(const ModelConfig& c) {
  const int64_t conv = c.ssm_position == SsmPosition::Conv ? (c.conv_kernel - 1) * c.ssd_conv_channels() : 0;
  return c.num_attention_heads * c.head_dim * c.ssm_state_size + conv;
}

}  // namespace txs
