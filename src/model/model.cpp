#include "model/model.h"

#include <cmath>

#include "core/error.h"
#include "core/rng.h"
#include "model/attention_mixer.h"
#include "model/mamba2_mixer.h"
#include "model/mlp.h"
#include "model/ssd_mixer.h"

namespace txs {

// One residual block: h = w1⊙h + Mixer(RMSNorm1(h)); h = w2⊙h + MLP(RMSNorm2(h)).
struct Model::Block {
  std::unique_ptr<Layer> mixer, mlp;
  int i_norm1 = -1, i_res1 = -1, i_norm2 = -1, i_res2 = -1;
  float *norm1 = nullptr, *res1 = nullptr, *norm2 = nullptr, *res2 = nullptr;
  float *dnorm1 = nullptr, *dres1 = nullptr, *dnorm2 = nullptr, *dres2 = nullptr;
  Buffer<float> mid, n1, n2, rstd1, rstd2;  // saved activations
};

Model::Model(ModelConfig config, Backend& backend)
    : config_(std::move(config)),
      be_(backend),
      rope_head_(config_.head_dim, config_.rope_theta),
      rope_state_(config_.ssm_state_size, config_.rope_theta) {
  config_.validate();
  const auto& c = config_;
  const int64_t d = c.hidden_size;
  i_embed_ = store_.add("model.word_embed.weight", {c.vocab_size, d}, true, c.tie_word_embeddings);
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    auto b = std::make_unique<Block>();
    const std::string p = "model.layers." + std::to_string(i) + ".";
    b->i_norm1 = store_.add(p + "pre_sequence_layernorm.weight", {d}, false, false);
    if (c.residual_scale) b->i_res1 = store_.add(p + "post_sequence_residual.weight", {d}, false, false);
    switch (c.layer_types[size_t(i)]) {
      case LayerType::Ssd: b->mixer = std::make_unique<SsdMixer>(c, store_, p + "ssd."); break;
      case LayerType::Attention: b->mixer = std::make_unique<AttentionMixer>(c, store_, p + "attn."); break;
      case LayerType::Mamba2: b->mixer = std::make_unique<Mamba2Mixer>(c, store_, p + "mamba."); break;
    }
    b->i_norm2 = store_.add(p + "pre_state_layernorm.weight", {d}, false, false);
    if (c.residual_scale) b->i_res2 = store_.add(p + "post_state_residual.weight", {d}, false, false);
    b->mlp = std::make_unique<SwiGluMlp>(c, store_, p + "feed_forward.");
    blocks_.push_back(std::move(b));
  }
  i_final_norm_ = store_.add("model.final_layernorm.weight", {d}, false, false);
  if (!c.tie_word_embeddings) i_head_ = store_.add("lm_head.weight", {c.vocab_size, d}, true, true);
  store_.allocate();
  for (auto& b : blocks_) {
    b->norm1 = store_.weight(b->i_norm1), b->dnorm1 = store_.grad(b->i_norm1);
    b->norm2 = store_.weight(b->i_norm2), b->dnorm2 = store_.grad(b->i_norm2);
    if (b->i_res1 >= 0) b->res1 = store_.weight(b->i_res1), b->dres1 = store_.grad(b->i_res1);
    if (b->i_res2 >= 0) b->res2 = store_.weight(b->i_res2), b->dres2 = store_.grad(b->i_res2);
    b->mixer->bind(store_);
    b->mlp->bind(store_);
  }
  // Weights start at zero: callers either init(seed) or load a checkpoint (drawing 1.3B normals twice is slow).
}

Model::~Model() = default;

static bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

void Model::init(uint64_t seed) {
  const double std = config_.initializer_range;
  const auto& params = store_.params();
  for (size_t k = 0; k < params.size(); ++k) {
    const Param& p = params[k];
    float* w = store_.weights() + p.offset;
    Rng rng(hash64(seed, k, 0x7472616e73ULL));
    const std::string& n = p.name;
    if (ends_with(n, "layernorm.weight") || ends_with(n, "residual.weight") || ends_with(n, "norm.weight") ||
        ends_with(n, ".D")) {
      for (int64_t i = 0; i < p.numel; ++i) w[i] = 1.0f;
    } else if (ends_with(n, "A_log")) {
      for (int64_t i = 0; i < p.numel; ++i) w[i] = float(std::log(rng.uniform(1.0, 16.0)));
    } else if (ends_with(n, "dt_bias")) {
      // Mamba-2: dt = exp(U[log 1e-3, log 1e-1]) floored at 1e-4; dt_bias = softplus⁻¹(dt).
      for (int64_t i = 0; i < p.numel; ++i) {
        double dt = std::exp(rng.uniform(std::log(1e-3), std::log(1e-1)));
        dt = std::max(dt, 1e-4);
        w[i] = float(dt + std::log(-std::expm1(-dt)));
      }
    } else if (ends_with(n, "conv1d.weight") || ends_with(n, "conv1d.bias")) {
      // PyTorch's Conv1d default (kaiming-uniform, a = √5): U(−1/√fan_in, 1/√fan_in), fan_in = kernel width.
      const double bound = 1.0 / std::sqrt(double(config_.conv_kernel));
      for (int64_t i = 0; i < p.numel; ++i) w[i] = float(rng.uniform(-bound, bound));
    } else {
      for (int64_t i = 0; i < p.numel; ++i) w[i] = float(std * rng.normal());
    }
  }
}

int64_t Model::matmul_params() const {
  int64_t n = 0;
  for (auto& p : store_.params()) n += p.matmul ? p.numel : 0;
  if (config_.tie_word_embeddings) {
    // The tied embedding is registered as a matmul parameter: it is the LM head.
  }
  return n;
}

double Model::mixing_flops_per_token(int64_t seq) const {
  const auto& c = config_;
  double f = 0;
  // Causal attention: QKᵀ and PV, 2 FLOPs per MAC, half the T×T square on average.
  f += double(c.count(LayerType::Attention)) * 2.0 * 2.0 * double(c.num_attention_heads * c.head_dim) *
       double(seq) / 2.0;
  // Chunked SSD per token (chunk Q): intra-chunk C·Bᵀ (Q·N/2) and ·X (Q·P/2) plus state terms (2·P·N).
  auto ssd = [&](int64_t H, int64_t P, int64_t N) {
    const double Q = double(std::min<int64_t>(c.ssm_chunk_size, seq));
    return 2.0 * double(H) * (Q * double(N) / 2 + Q * double(P) / 2 + 2.0 * double(P * N));
  };
  f += double(c.count(LayerType::Ssd)) * ssd(c.num_attention_heads, c.head_dim, c.ssm_state_size);
  f += double(c.count(LayerType::Mamba2)) * ssd(c.mamba_heads(), c.mamba_head_dim, c.mamba_d_state);
  return f;
}

void Model::check_ids(const int32_t* ids, const int32_t* targets, int64_t n) const {
  for (int64_t i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] >= config_.vocab_size)
      fail("token id {} at position {} is outside the vocabulary [0, {})", ids[i], i, config_.vocab_size);
    if (targets && (targets[i] < -1 || targets[i] >= config_.vocab_size))
      fail("target id {} at position {} is outside the vocabulary [0, {})", targets[i], i, config_.vocab_size);
  }
}

const float* Model::head_weight() {
  return store_.weight(config_.tie_word_embeddings ? i_embed_ : i_head_);
}

void Model::run_forward(const int32_t* ids, int64_t batch, int64_t seq, const int32_t* positions) {
  const int64_t rows = batch * seq, d = config_.hidden_size, L = config_.num_hidden_layers;
  pos_.resize(size_t(rows));
  int32_t max_pos = 0;
  for (int64_t r = 0; r < rows; ++r) {
    pos_[size_t(r)] = positions ? positions[r] : int32_t(r % seq);
    if (pos_[size_t(r)] < 0) fail("negative position {}", pos_[size_t(r)]);
    max_pos = std::max(max_pos, pos_[size_t(r)]);
  }
  rope_head_.ensure(max_pos + 1);
  rope_state_.ensure(max_pos + 1);
  pass_.batch = batch, pass_.seq = seq, pass_.pos = pos_.data();
  pass_.rope_head = &rope_head_, pass_.rope_state = &rope_state_;

  stream_.resize(size_t((L + 1) * rows * d));
  be_.embedding_forward(ids, store_.weight(i_embed_), stream_.data(), rows, d);
  for (int64_t l = 0; l < L; ++l) {
    Block& b = *blocks_[size_t(l)];
    const float* h_in = stream_.data() + l * rows * d;
    float* h_out = stream_.data() + (l + 1) * rows * d;
    b.mid.resize(size_t(rows * d));
    b.n1.resize(size_t(rows * d));
    b.n2.resize(size_t(rows * d));
    b.rstd1.resize(size_t(rows));
    b.rstd2.resize(size_t(rows));
    be_.rmsnorm_forward(h_in, b.norm1, b.n1.data(), b.rstd1.data(), rows, d, config_.rms_norm_eps);
    b.mixer->forward(be_, pass_, b.n1.data(), b.mid.data());                 // mid = Mixer(n1)
    be_.residual_forward(h_in, b.res1, b.mid.data(), b.mid.data(), rows, d);  // mid = w1⊙h + mid
    be_.rmsnorm_forward(b.mid.data(), b.norm2, b.n2.data(), b.rstd2.data(), rows, d, config_.rms_norm_eps);
    b.mlp->forward(be_, pass_, b.n2.data(), h_out);
    be_.residual_forward(b.mid.data(), b.res2, h_out, h_out, rows, d);
  }
  final_.resize(size_t(rows * d));
  final_rstd_.resize(size_t(rows));
  be_.rmsnorm_forward(stream_.data() + L * rows * d, store_.weight(i_final_norm_), final_.data(), final_rstd_.data(),
                      rows, d, config_.rms_norm_eps);
}

CrossEntropyResult Model::forward(const int32_t* ids, const int32_t* targets, int64_t batch, int64_t seq,
                                  float* target_logprob, float* logits, const int32_t* positions) {
  check_ids(ids, targets, batch * seq);
  run_forward(ids, batch, seq, positions);
  const int64_t rows = batch * seq, d = config_.hidden_size, V = config_.vocab_size;
  if (logits) be_.lm_head_logits(final_.data(), head_weight(), logits, rows, d, V);
  if (!targets) return {};
  return be_.lm_head_cross_entropy(final_.data(), head_weight(), targets, rows, d, V, target_logprob, nullptr,
                                   nullptr, 0.0f);
}

void Model::forward_last(const int32_t* ids, int64_t seq, float* logits) {
  check_ids(ids, nullptr, seq);
  run_forward(ids, 1, seq, nullptr);
  const int64_t d = config_.hidden_size;
  be_.lm_head_logits(final_.data() + (seq - 1) * d, head_weight(), logits, 1, d, config_.vocab_size);
}

CrossEntropyResult Model::forward_backward(const int32_t* ids, const int32_t* targets, int64_t batch, int64_t seq,
                                           float grad_scale, const int32_t* positions) {
  check_ids(ids, targets, batch * seq);
  run_forward(ids, batch, seq, positions);
  const int64_t rows = batch * seq, d = config_.hidden_size, V = config_.vocab_size, L = config_.num_hidden_layers;
  float* dhead = store_.grad(config_.tie_word_embeddings ? i_embed_ : i_head_);
  dstream_.resize(size_t(rows * d));
  dtmp_.resize(size_t(rows * d));
  dbranch_.resize(size_t(rows * d));
  float *dh = dstream_.data(), *dtmp = dtmp_.data(), *dbranch = dbranch_.data();
  // dtmp = ∂L/∂(final normed hidden); then through the final norm into dh.
  const CrossEntropyResult ce = be_.lm_head_cross_entropy(final_.data(), head_weight(), targets, rows, d, V, nullptr,
                                                          dtmp, dhead, grad_scale);
  be_.rmsnorm_backward(dtmp, stream_.data() + L * rows * d, store_.weight(i_final_norm_), final_rstd_.data(), dh,
                       store_.grad(i_final_norm_), rows, d);
  for (int64_t l = L - 1; l >= 0; --l) {
    Block& b = *blocks_[size_t(l)];
    const float* h_in = stream_.data() + l * rows * d;
    // dh = ∂L/∂h_out. MLP branch: ∂/∂mid = w2⊙dh + RMSNorm2ᵀ(MLPᵀ(dh)).
    b.mlp->backward(be_, pass_, b.n2.data(), dh, dbranch, ws_);
    be_.residual_backward(dh, b.mid.data(), b.res2, dh, b.dres2, rows, d);
    be_.rmsnorm_backward(dbranch, b.mid.data(), b.norm2, b.rstd2.data(), dtmp, b.dnorm2, rows, d);
    be_.residual_forward(dh, nullptr, dtmp, dh, rows, d);  // dh += dtmp
    // Mixer branch: ∂/∂h_in = w1⊙dmid + RMSNorm1ᵀ(Mixerᵀ(dmid)).
    b.mixer->backward(be_, pass_, b.n1.data(), dh, dbranch, ws_);
    be_.residual_backward(dh, h_in, b.res1, dh, b.dres1, rows, d);
    be_.rmsnorm_backward(dbranch, h_in, b.norm1, b.rstd1.data(), dtmp, b.dnorm1, rows, d);
    be_.residual_forward(dh, nullptr, dtmp, dh, rows, d);
  }
  be_.embedding_backward(ids, dh, store_.grad(i_embed_), rows, d);
  return ce;
}

}  // namespace txs
