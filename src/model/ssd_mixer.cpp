#include "model/ssd_mixer.h"

#include <cmath>

namespace txs {

SsdMixer::SsdMixer(const ModelConfig& c, ParamStore& store, const std::string& p)
    : c_(c), conv_(c.ssm_position == "conv"), rope_(c.ssm_position == "rope") {
  d_ = c.hidden_size, H_ = c.num_attention_heads, P_ = c.head_dim, N_ = c.ssm_state_size;
  xbc_width_ = H_ * P_ + 2 * H_ * N_;
  in_width_ = xbc_width_ + H_;
  // x, b, c, dt projections are consecutive: together one [in_width, d] matrix.
  i_in_ = store.add(p + "x_proj.weight", {H_ * P_, d_}, true, true);
  store.add(p + "b_proj.weight", {H_ * N_, d_}, true, true);
  store.add(p + "c_proj.weight", {H_ * N_, d_}, true, true);
  store.add(p + "dt_proj.weight", {H_, d_}, true, true);
  i_A_log_ = store.add(p + "A_log", {H_}, false, false);
  if (c.use_dt_bias) i_dt_bias_ = store.add(p + "dt_bias", {H_}, false, false);
  i_out_ = store.add(p + "out_proj.weight", {d_, H_ * P_}, true, true);
  if (conv_) {
    i_conv_w_ = store.add(p + "conv1d.weight", {xbc_width_, 1, c.conv_kernel}, true, false);
    i_conv_b_ = store.add(p + "conv1d.bias", {xbc_width_}, false, false);
    i_D_ = store.add(p + "D", {H_}, false, false);
  }
}

void SsdMixer::bind(ParamStore& s) {
  W_in_ = s.weight(i_in_), dW_in_ = s.grad(i_in_);
  A_log_ = s.weight(i_A_log_), dA_log_ = s.grad(i_A_log_);
  if (i_dt_bias_ >= 0) dt_bias_ = s.weight(i_dt_bias_), ddt_bias_ = s.grad(i_dt_bias_);
  W_out_ = s.weight(i_out_), dW_out_ = s.grad(i_out_);
  if (conv_) {
    conv_w_ = s.weight(i_conv_w_), dconv_w_ = s.grad(i_conv_w_);
    conv_b_ = s.weight(i_conv_b_), dconv_b_ = s.grad(i_conv_b_);
    D_ = s.weight(i_D_), dD_ = s.grad(i_D_);
  }
}

SsdShape SsdMixer::shape(const Pass& pass) const {
  SsdShape s;
  s.batch = pass.batch, s.seq = pass.seq, s.heads = H_, s.head_dim = P_, s.groups = H_, s.state_dim = N_;
  s.chunk = c_.ssm_chunk_size;
  s.x_stride = s.bc_stride = conv_ ? xbc_width_ : in_width_;
  s.dt_stride = H_;
  s.y_stride = H_ * P_;
  return s;
}

void SsdMixer::forward(Backend& be, const Pass& pass, const float* u, float* out) {
  const int64_t rows = pass.rows();
  proj_.resize(size_t(rows * in_width_));
  dt_.resize(size_t(rows * H_));
  y_.resize(size_t(rows * H_ * P_));
  A_.resize(size_t(H_));
  be.linear_forward(u, W_in_, proj_.data(), rows, d_, in_width_);
  const float* xbc = proj_.data();
  if (conv_) {
    xbc_.resize(size_t(rows * xbc_width_));
    be.conv1d_silu_forward(proj_.data(), in_width_, conv_w_, conv_b_, xbc_.data(), xbc_width_, pass.batch,
                           pass.seq, xbc_width_, c_.conv_kernel);
    xbc = xbc_.data();
  } else if (rope_) {
    // B and C are adjacent (2H vectors of size N per row): one rotation call covers both.
    be.rope_apply(proj_.data() + H_ * P_, rows, 2 * H_, in_width_, pass.pos, *pass.rope_state, false);
  }
  for (int64_t h = 0; h < H_; ++h) A_[size_t(h)] = -std::exp(A_log_[h]);
  be.softplus_forward(proj_.data() + xbc_width_, in_width_, dt_bias_, dt_.data(), rows, H_);
  const SsdShape s = shape(pass);
  be.ssd_forward(s, xbc, dt_.data(), A_.data(), xbc + H_ * P_, xbc + H_ * P_ + H_ * N_, D_, nullptr, y_.data(),
                 nullptr);
  be.linear_forward(y_.data(), W_out_, out, rows, H_ * P_, d_);
}

void SsdMixer::backward(Backend& be, const Pass& pass, const float* u, const float* dout, float* du,
                        Workspace& ws) {
  const int64_t rows = pass.rows();
  ws.a.resize(size_t(rows * H_ * P_));
  ws.b.resize(size_t(rows * in_width_));
  ws.c.resize(size_t(rows * H_));
  float *dy = ws.a.data(), *dproj = ws.b.data(), *ddt = ws.c.data();
  be.linear_backward(dout, y_.data(), W_out_, dy, dW_out_, rows, H_ * P_, d_, false);

  const float* xbc = conv_ ? xbc_.data() : proj_.data();
  float* dxbc = dproj;  // without conv, the scan's input gradients land directly in the projection gradient
  if (conv_) {
    ws.d.resize(size_t(rows * xbc_width_));
    dxbc = ws.d.data();
  }
  dA_.resize(size_t(H_));
  dA_.zero();
  const SsdShape s = shape(pass);
  be.ssd_backward(s, xbc, dt_.data(), A_.data(), xbc + H_ * P_, xbc + H_ * P_ + H_ * N_, D_, nullptr, dy, nullptr,
                  dxbc, ddt, dA_.data(), dxbc + H_ * P_, dxbc + H_ * P_ + H_ * N_, dD_, nullptr);
  for (int64_t h = 0; h < H_; ++h) dA_log_[h] += dA_[size_t(h)] * A_[size_t(h)];  // dA/dA_log = A
  be.softplus_backward(ddt, proj_.data() + xbc_width_, in_width_, dt_bias_, dproj + xbc_width_, ddt_bias_, rows, H_);
  if (conv_) {
    be.conv1d_silu_backward(dxbc, xbc_width_, proj_.data(), in_width_, conv_w_, conv_b_, dproj, dconv_w_, dconv_b_,
                            pass.batch, pass.seq, xbc_width_, c_.conv_kernel);
  } else if (rope_) {
    be.rope_apply(dproj + H_ * P_, rows, 2 * H_, in_width_, pass.pos, *pass.rope_state, true);
  }
  be.linear_backward(dproj, u, W_in_, du, dW_in_, rows, d_, in_width_, false);
}

}  // namespace txs
