#include "model/attention_mixer.h"

#include "core/error.h"

namespace txs {

AttentionMixer::AttentionMixer(const ModelConfig& c, ParamStore& store, const std::string& p)
    : store_(store),
      rope_(c.attention_position == AttentionPosition::Rope),
      qkv_buf_(store.backend()),
      o_buf_(store.backend()),
      lse_(store.backend()) {
  d_ = c.hidden_size, H_ = c.num_attention_heads, Hkv_ = c.num_key_value_heads, P_ = c.head_dim;
  qkv_width_ = (H_ + 2 * Hkv_) * P_;
  qkv_ = store.add({p + "q_proj.weight", {H_ * P_, d_}, Init::Normal, true, true});  // q, k, v consecutive: one GEMM
  store.add({p + "k_proj.weight", {Hkv_ * P_, d_}, Init::Normal, true, true});
  store.add({p + "v_proj.weight", {Hkv_ * P_, d_}, Init::Normal, true, true});
  o_ = store.add({p + "o_proj.weight", {d_, H_ * P_}, Init::Normal, true, true});
}

void AttentionMixer::project(Backend& be, const Pass& pass, const Tensor& u) {
  const int64_t rows = pass.rows();
  qkv_buf_.resize(rows * qkv_width_);
  o_buf_.resize(rows * H_ * P_);
  const Tensor qkv = qkv_buf_.mat(rows, qkv_width_);
  be.linear_forward(u, store_.fused_matmul_weight(qkv_, 3), qkv);
  // q and k are adjacent (H + Hkv vectors of size P per row): one rotation call covers both.
  if (rope_) be.rope_apply(qkv.col_slice(0, (H_ + Hkv_) * P_), H_ + Hkv_, pass.pos, pass.rope_head, false);
}

void AttentionMixer::forward(Backend& be, const Pass& pass, const Tensor& u, const Tensor& out) {
  const int64_t rows = pass.rows();
  project(be, pass, u);
  lse_.resize(pass.batch * H_ * pass.seq);
  AttentionShape s;
  s.batch = pass.batch, s.q_len = s.kv_len = pass.seq, s.heads = H_, s.kv_heads = Hkv_, s.head_dim = P_;
  const Tensor qkv = qkv_buf_.mat(rows, qkv_width_), o = o_buf_.mat(rows, H_ * P_);
  be.attention_forward(s, qkv.col_slice(0, H_ * P_), qkv.col_slice(H_ * P_, Hkv_ * P_),
                       qkv.col_slice((H_ + Hkv_) * P_, Hkv_ * P_), o, lse_.mat(pass.batch * H_, pass.seq));
  be.linear_forward(o, store_.matmul_weight(o_), out);
}

void AttentionMixer::backward(Backend& be, const Pass& pass, const Tensor& u, const Tensor& dout, const Tensor& du,
                              Arena& scratch) {
  const int64_t rows = pass.rows();
  const Tensor d_o = scratch.take(rows, H_ * P_), dqkv = scratch.take(rows, qkv_width_);
  const Tensor qkv = qkv_buf_.mat(rows, qkv_width_), o = o_buf_.mat(rows, H_ * P_);
  be.linear_backward(dout, o, store_.matmul_weight(o_), d_o, store_.grad(o_), false);
  AttentionShape s;
  s.batch = pass.batch, s.q_len = s.kv_len = pass.seq, s.heads = H_, s.kv_heads = Hkv_, s.head_dim = P_;
  be.attention_backward(s, qkv.col_slice(0, H_ * P_), qkv.col_slice(H_ * P_, Hkv_ * P_),
                        qkv.col_slice((H_ + Hkv_) * P_, Hkv_ * P_), o, lse_.mat(pass.batch * H_, pass.seq), d_o,
                        dqkv.col_slice(0, H_ * P_), dqkv.col_slice(H_ * P_, Hkv_ * P_),
                        dqkv.col_slice((H_ + Hkv_) * P_, Hkv_ * P_));
  if (rope_) be.rope_apply(dqkv.col_slice(0, (H_ + Hkv_) * P_), H_ + Hkv_, pass.pos, pass.rope_head, true);
  be.linear_backward(dqkv, u, store_.fused_matmul_weight(qkv_, 3), du, store_.fused_grad(qkv_, 3), false);
}

LayerState AttentionMixer::new_state(Backend& be) const {
  LayerState s;
  s.ssm.bind(be), s.conv.bind(be), s.kv.bind(be);
  return s;
}

void AttentionMixer::forward_cached(Backend& be, const CachedPass& pass, const Tensor& u, const Tensor& out) {
  const int64_t rows = pass.rows(), n = pass.seq, kv_row = 2 * Hkv_ * P_;
  project(be, pass, u);
  const Tensor qkv = qkv_buf_.mat(rows, qkv_width_), o = o_buf_.mat(rows, H_ * P_);
  for (int64_t b = 0; b < pass.batch; ++b) {
    // Append the new rotated keys and values: cache rows are [k (Hkv·P), v (Hkv·P)], adjacent as in qkv.
    DeviceBuffer& kv = pass.states[b]->kv;
    const int64_t past = pass.past[b];
    if (kv.size() != past * kv_row) fail("attention: KV cache holds {} values, expected {}", kv.size(), past * kv_row);
    kv.grow_preserving((past + n) * kv_row);
    const Tensor cache = kv.mat(past + n, kv_row);
    be.copy(qkv.row_slice(b * n, n).col_slice(H_ * P_, kv_row), cache.row_slice(past, n));
    const Tensor q = qkv.row_slice(b * n, n).col_slice(0, H_ * P_), k = cache.col_slice(0, Hkv_ * P_),
                 v = cache.col_slice(Hkv_ * P_, Hkv_ * P_), ob = o.row_slice(b * n, n);
    if (pass.decode) {
      be.attention_decode(H_, Hkv_, P_, q, k, v, ob);
      continue;
    }
    AttentionShape s;
    s.batch = 1, s.q_len = n, s.kv_len = past + n, s.heads = H_, s.kv_heads = Hkv_, s.head_dim = P_;
    lse_.resize(H_ * n);
    be.attention_forward(s, q, k, v, ob, lse_.mat(H_, n));
  }
  be.linear_forward(o, store_.matmul_weight(o_), out);
}

int64_t AttentionMixer::state_floats(const ModelConfig& c, int64_t context) {
  return context * 2 * c.num_key_value_heads * c.head_dim;
}

}  // namespace txs
