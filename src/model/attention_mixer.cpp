#include "model/attention_mixer.h"

namespace txs {

AttentionMixer::AttentionMixer(const ModelConfig& c, ParamStore& store, const std::string& p)
    : rope_(c.attention_position == "rope") {
  d_ = c.hidden_size, H_ = c.num_attention_heads, Hkv_ = c.num_key_value_heads, P_ = c.head_dim;
  qkv_width_ = (H_ + 2 * Hkv_) * P_;
  i_qkv_ = store.add(p + "q_proj.weight", {H_ * P_, d_}, true, true);  // q, k, v consecutive: one GEMM
  store.add(p + "k_proj.weight", {Hkv_ * P_, d_}, true, true);
  store.add(p + "v_proj.weight", {Hkv_ * P_, d_}, true, true);
  i_o_ = store.add(p + "o_proj.weight", {d_, H_ * P_}, true, true);
}

void AttentionMixer::bind(ParamStore& s) {
  W_qkv_ = s.weight(i_qkv_), dW_qkv_ = s.grad(i_qkv_);
  W_o_ = s.weight(i_o_), dW_o_ = s.grad(i_o_);
}

AttentionShape AttentionMixer::shape(const Pass& pass) const {
  AttentionShape s;
  s.batch = pass.batch, s.q_len = pass.seq, s.kv_len = pass.seq;
  s.heads = H_, s.kv_heads = Hkv_, s.head_dim = P_;
  s.q_stride = s.kv_stride = qkv_width_;
  s.out_stride = H_ * P_;
  return s;
}

void AttentionMixer::forward(Backend& be, const Pass& pass, const float* u, float* out) {
  const int64_t rows = pass.rows();
  qkv_.resize(size_t(rows * qkv_width_));
  o_.resize(size_t(rows * H_ * P_));
  lse_.resize(size_t(pass.batch * H_ * pass.seq));
  be.linear_forward(u, W_qkv_, qkv_.data(), rows, d_, qkv_width_);
  // q and k are adjacent (H + Hkv vectors of size P per row): one rotation call covers both.
  if (rope_) be.rope_apply(qkv_.data(), rows, H_ + Hkv_, qkv_width_, pass.pos, *pass.rope_head, false);
  const float* q = qkv_.data();
  be.attention_forward(shape(pass), q, q + H_ * P_, q + (H_ + Hkv_) * P_, o_.data(), lse_.data());
  be.linear_forward(o_.data(), W_o_, out, rows, H_ * P_, d_);
}

void AttentionMixer::backward(Backend& be, const Pass& pass, const float* u, const float* dout, float* du,
                              Workspace& ws) {
  const int64_t rows = pass.rows();
  ws.a.resize(size_t(rows * H_ * P_));
  ws.b.resize(size_t(rows * qkv_width_));
  float *d_o = ws.a.data(), *dqkv = ws.b.data();
  be.linear_backward(dout, o_.data(), W_o_, d_o, dW_o_, rows, H_ * P_, d_, false);
  const float* q = qkv_.data();
  be.attention_backward(shape(pass), q, q + H_ * P_, q + (H_ + Hkv_) * P_, o_.data(), lse_.data(), d_o, dqkv,
                        dqkv + H_ * P_, dqkv + (H_ + Hkv_) * P_);
  if (rope_) be.rope_apply(dqkv, rows, H_ + Hkv_, qkv_width_, pass.pos, *pass.rope_head, true);
  be.linear_backward(dqkv, u, W_qkv_, du, dW_qkv_, rows, d_, qkv_width_, false);
}

}  // namespace txs
