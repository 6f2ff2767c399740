#include "model/model.h"

#include <algorithm>
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
  ParamRef norm1, res1, norm2, res2;
  DeviceBuffer mid, n1, n2, rstd1, rstd2;  // activations saved for backward (training passes)
  int64_t param_lo = 0, param_hi = 0;      // the block's parameters: [param_lo, param_hi) of the store
};

namespace {
// The block's activations of one pass: [rows, hidden] except the norm statistics [1, rows].
struct BlockActs {
  Tensor n1, mid, n2, rstd1, rstd2;
};
BlockActs acts_of(DeviceBuffer& n1, DeviceBuffer& mid, DeviceBuffer& n2, DeviceBuffer& r1, DeviceBuffer& r2,
                  int64_t rows, int64_t d) {
  for (DeviceBuffer* b : {&n1, &mid, &n2}) b->resize(rows * d);
  r1.resize(rows), r2.resize(rows);
  return {n1.mat(rows, d), mid.mat(rows, d), n2.mat(rows, d), r1.mat(1, rows), r2.mat(1, rows)};
}
}  // namespace

Model::Model(ModelConfig config, Backend& backend, ModelOptions options)
    : config_(std::move(config)),
      be_(backend),
      store_(backend),
      rope_head_(backend, config_.head_dim, config_.rope_theta),
      rope_state_(backend, config_.ssm_state_size, config_.rope_theta),
      scratch_(backend),
      ids_(backend, DType::I32),
      targets_(backend, DType::I32),
      pos_(backend, DType::I32),
      stream_(backend),
      final_(backend),
      final_rstd_(backend),
      dstream_(backend),
      dtmp_(backend),
      dbranch_(backend),
      out_(backend) {
  config_.validate();
  const auto& c = config_;
  const int64_t d = c.hidden_size;
  embed_ = store_.add({"model.word_embed.weight", {c.vocab_size, d}, Init::Normal, true, c.tie_word_embeddings, true});
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    auto b = std::make_unique<Block>();
    b->param_lo = store_.size();
    const std::string p = "model.layers." + std::to_string(i) + ".";
    b->norm1 = store_.add({p + "pre_sequence_layernorm.weight", {d}, Init::Ones});
    if (c.residual_scale) b->res1 = store_.add({p + "post_sequence_residual.weight", {d}, Init::Ones});
    switch (c.layer_types[size_t(i)]) {
      case LayerType::Ssd: b->mixer = std::make_unique<SsdMixer>(config_, store_, p + "ssd."); break;
      case LayerType::Attention: b->mixer = std::make_unique<AttentionMixer>(config_, store_, p + "attn."); break;
      case LayerType::Mamba2: b->mixer = std::make_unique<Mamba2Mixer>(config_, store_, p + "mamba."); break;
    }
    b->norm2 = store_.add({p + "pre_state_layernorm.weight", {d}, Init::Ones});
    if (c.residual_scale) b->res2 = store_.add({p + "post_state_residual.weight", {d}, Init::Ones});
    b->mlp = std::make_unique<SwiGluMlp>(config_, store_, p + "feed_forward.");
    for (DeviceBuffer* buf : {&b->mid, &b->n1, &b->n2, &b->rstd1, &b->rstd2}) buf->bind(backend);
    b->param_hi = store_.size();
    blocks_.push_back(std::move(b));
  }
  final_norm_ = store_.add({"model.final_layernorm.weight", {d}, Init::Ones});
  if (!c.tie_word_embeddings) head_ = store_.add({"lm_head.weight", {c.vocab_size, d}, Init::Normal, true, true});
  store_.allocate(options.precision, options.training);
  // Weights start at zero: callers either init(seed) or load a checkpoint (drawing 1.3B normals twice is slow).
}

Model::~Model() = default;

void Model::init(uint64_t seed) {
  const double std = config_.initializer_range;
  const auto& params = store_.params();
  std::vector<float> w;
  for (size_t k = 0; k < params.size(); ++k) {
    const Param& p = params[k];
    w.resize(size_t(p.numel));
    Rng rng(hash64(seed, k, 0x7472616e73ULL));
    switch (p.init) {
      case Init::Ones: std::fill(w.begin(), w.end(), 1.0f); break;
      case Init::ALog:
        for (auto& x : w) x = float(std::log(rng.uniform(1.0, 16.0)));
        break;
      case Init::DtBias:
        // Mamba-2: dt = exp(U[log 1e-3, log 1e-1]) floored at 1e-4; dt_bias = softplus⁻¹(dt).
        for (auto& x : w) {
          double dt = std::exp(rng.uniform(std::log(1e-3), std::log(1e-1)));
          dt = std::max(dt, 1e-4);
          x = float(dt + std::log(-std::expm1(-dt)));
        }
        break;
      case Init::ConvUniform: {
        // PyTorch's Conv1d default (kaiming-uniform, a = √5): U(−1/√fan_in, 1/√fan_in), fan_in = kernel width.
        const double bound = 1.0 / std::sqrt(double(config_.conv_kernel));
        for (auto& x : w) x = float(rng.uniform(-bound, bound));
        break;
      }
      case Init::Normal:
        for (auto& x : w) x = float(std * rng.normal());
        break;
    }
    store_.load(p, w.data());
  }
  store_.refresh_compute();
}

int64_t Model::matmul_params() const {
  int64_t n = 0;
  for (auto& p : store_.params()) n += p.matmul ? p.numel : 0;  // a tied embedding is registered as the LM head
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

Tensor Model::head_weight() const { return store_.matmul_weight(config_.tie_word_embeddings ? embed_ : head_); }

// Positions of the pass's rows: given, or start[b] + t (start null: 0) for token t of batch row b.
void Model::set_positions(Pass& pass, const int32_t* positions, int64_t batch, int64_t seq, const int64_t* start) {
  const int64_t rows = batch * seq;
  host_pos_.resize(size_t(rows));
  int64_t max_pos = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t p = positions ? positions[r] : (start ? start[r / seq] : 0) + r % seq;
    if (p < 0) fail("negative position {}", p);
    if (p >= (int64_t(1) << 31) - 1) fail("position {} is too large", p);
    host_pos_[size_t(r)] = int32_t(p);
    max_pos = std::max(max_pos, p);
  }
  rope_head_.ensure(max_pos + 1);
  rope_state_.ensure(max_pos + 1);
  pos_.resize(rows);
  be_.upload(host_pos_.data(), pos_.mat(1, rows));
  pass.batch = batch, pass.seq = seq, pass.pos = pos_.mat(1, rows);
  pass.rope_head = rope_head_.coeffs(), pass.rope_state = rope_state_.coeffs();
}

void Model::run_forward(const int32_t* ids, int64_t batch, int64_t seq, const int32_t* positions) {
  const int64_t rows = batch * seq, d = config_.hidden_size, L = config_.num_hidden_layers;
  set_positions(pass_, positions, batch, seq, nullptr);
  ids_.resize(rows);
  be_.upload(ids, ids_.mat(1, rows));
  stream_.resize((L + 1) * rows * d);
  const Tensor stream = stream_.mat((L + 1) * rows, d);
  be_.embedding_forward(ids_.mat(1, rows), store_.matmul_weight(embed_), stream.row_slice(0, rows));
  for (int64_t l = 0; l < L; ++l) {
    Block& b = *blocks_[size_t(l)];
    const Tensor h_in = stream.row_slice(l * rows, rows), h_out = stream.row_slice((l + 1) * rows, rows);
    const BlockActs a = acts_of(b.n1, b.mid, b.n2, b.rstd1, b.rstd2, rows, d);
    be_.rmsnorm_forward(h_in, store_.weight(b.norm1), a.n1, a.rstd1, config_.rms_norm_eps);
    b.mixer->forward(be_, pass_, a.n1, a.mid);                            // mid = Mixer(n1)
    be_.residual_forward(h_in, store_.weight(b.res1), a.mid, a.mid);      // mid = w1⊙h + mid
    be_.rmsnorm_forward(a.mid, store_.weight(b.norm2), a.n2, a.rstd2, config_.rms_norm_eps);
    b.mlp->forward(be_, pass_, a.n2, h_out);
    be_.residual_forward(a.mid, store_.weight(b.res2), h_out, h_out);
  }
  final_.resize(rows * d);
  final_rstd_.resize(rows);
  be_.rmsnorm_forward(stream.row_slice(L * rows, rows), store_.weight(final_norm_), final_.mat(rows, d),
                      final_rstd_.mat(1, rows), config_.rms_norm_eps);
}

CrossEntropyResult Model::forward(const int32_t* ids, const int32_t* targets, int64_t batch, int64_t seq,
                                  float* target_logprob, float* logits, const int32_t* positions) {
  check_ids(ids, targets, batch * seq);
  run_forward(ids, batch, seq, positions);
  const int64_t rows = batch * seq, d = config_.hidden_size, V = config_.vocab_size;
  const Tensor h = final_.mat(rows, d);
  if (logits) {
    out_.resize(rows * V);
    be_.lm_head_logits(h, head_weight(), out_.mat(rows, V));
    be_.download(out_.mat(rows, V), logits);
  }
  if (!targets) return {};
  targets_.resize(rows);
  be_.upload(targets, targets_.mat(1, rows));
  out_.resize(rows);
  const Tensor lp = target_logprob ? out_.mat(1, rows) : Tensor{};
  const CrossEntropyResult r =
      be_.lm_head_cross_entropy(h, head_weight(), targets_.mat(1, rows), lp, Tensor{}, Tensor{}, 0.0f);
  if (target_logprob) be_.download(lp, target_logprob);
  return r;
}

void Model::forward_last(const int32_t* ids, int64_t seq, float* logits) {
  check_ids(ids, nullptr, seq);
  run_forward(ids, 1, seq, nullptr);
  const int64_t d = config_.hidden_size, V = config_.vocab_size;
  out_.resize(V);
  be_.lm_head_logits(final_.mat(seq, d).row_slice(seq - 1, 1), head_weight(), out_.mat(1, V));
  be_.download(out_.mat(1, V), logits);
}

CrossEntropyResult Model::forward_backward(const int32_t* ids, const int32_t* targets, int64_t batch, int64_t seq,
                                           float grad_scale, const int32_t* positions,
                                           const GradsReady& grads_ready) {
  check_ids(ids, targets, batch * seq);
  run_forward(ids, batch, seq, positions);
  const int64_t rows = batch * seq, d = config_.hidden_size, L = config_.num_hidden_layers;
  targets_.resize(rows);
  be_.upload(targets, targets_.mat(1, rows));
  dstream_.resize(rows * d);
  dtmp_.resize(rows * d);
  dbranch_.resize(rows * d);
  const Tensor dh = dstream_.mat(rows, d), dtmp = dtmp_.mat(rows, d), dbranch = dbranch_.mat(rows, d);
  const Tensor stream = stream_.mat((L + 1) * rows, d);
  const Tensor dhead = store_.grad(config_.tie_word_embeddings ? embed_ : head_);
  // dtmp = ∂L/∂(final normed hidden); then through the final norm into dh.
  const CrossEntropyResult ce = be_.lm_head_cross_entropy(final_.mat(rows, d), head_weight(), targets_.mat(1, rows),
                                                          Tensor{}, dtmp, dhead, grad_scale);
  be_.rmsnorm_backward(dtmp, stream.row_slice(L * rows, rows), store_.weight(final_norm_), final_rstd_.mat(1, rows), dh,
                       store_.grad(final_norm_));
  // Parameters after the last block (final norm, untied LM head) are final now.
  if (grads_ready) grads_ready(L > 0 ? blocks_.back()->param_hi : store_.param(embed_).numel, store_.size());
  for (int64_t l = L - 1; l >= 0; --l) {
    Block& b = *blocks_[size_t(l)];
    const Tensor h_in = stream.row_slice(l * rows, rows);
    const BlockActs a = acts_of(b.n1, b.mid, b.n2, b.rstd1, b.rstd2, rows, d);
    // dh = ∂L/∂h_out. MLP branch: ∂/∂mid = w2⊙dh + RMSNorm2ᵀ(MLPᵀ(dh)).
    b.mlp->backward(be_, pass_, a.n2, dh, dbranch, scratch_);
    scratch_.reset();
    be_.residual_backward(dh, a.mid, store_.weight(b.res2), dh, store_.grad(b.res2));
    be_.rmsnorm_backward(dbranch, a.mid, store_.weight(b.norm2), a.rstd2, dtmp, store_.grad(b.norm2));
    be_.residual_forward(dh, Tensor{}, dtmp, dh);  // dh += dtmp
    // Mixer branch: ∂/∂h_in = w1⊙dmid + RMSNorm1ᵀ(Mixerᵀ(dmid)).
    b.mixer->backward(be_, pass_, a.n1, dh, dbranch, scratch_);
    scratch_.reset();
    be_.residual_backward(dh, h_in, store_.weight(b.res1), dh, store_.grad(b.res1));
    be_.rmsnorm_backward(dbranch, h_in, store_.weight(b.norm1), a.rstd1, dtmp, store_.grad(b.norm1));
    be_.residual_forward(dh, Tensor{}, dtmp, dh);
    if (grads_ready) grads_ready(b.param_lo, b.param_hi);
  }
  be_.embedding_backward(ids_.mat(1, rows), dh, store_.grad(embed_));
  if (grads_ready) grads_ready(0, store_.param(embed_).numel);
  return ce;
}

// ---------------------------------------------------------------------------------------------------------
// Stateful inference: the same blocks, each mixer continuing every sequence's state.

SequenceState Model::new_sequence() const {
  SequenceState s;
  for (auto& b : blocks_) s.layers().push_back(b->mixer->new_state(be_));
  return s;
}

size_t sequence_state_bytes(const ModelConfig& c, int64_t context) {
  int64_t n = 0;
  for (LayerType t : c.layer_types) {
    switch (t) {
      case LayerType::Ssd: n += SsdMixer::state_floats(c); break;
      case LayerType::Mamba2: n += Mamba2Mixer::state_floats(c); break;
      case LayerType::Attention: n += AttentionMixer::state_floats(c, context); break;
    }
  }
  return size_t(n) * sizeof(float);
}

Tensor Model::forward_cached(const std::vector<SequenceState*>& seqs, const int32_t* ids, int64_t tokens_per_seq,
                             bool decode) {
  const int64_t B = int64_t(seqs.size()), n = tokens_per_seq, rows = B * n, d = config_.hidden_size;
  if (B < 1 || n < 1) fail("internal: empty stateful pass");
  if (decode ? n != 1 : B != 1) fail("internal: decode feeds one token per sequence, prefill one sequence");
  std::vector<int64_t> past(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) {
    if (!seqs[size_t(b)] || seqs[size_t(b)]->layers().size() != blocks_.size())
      fail("sequence {} is null or belongs to another model", b);
    past[size_t(b)] = seqs[size_t(b)]->position();
  }
  check_ids(ids, nullptr, rows);
  CachedPass pass;
  set_positions(pass, nullptr, B, n, past.data());
  pass.past = past.data(), pass.decode = decode;
  ids_.resize(rows);
  be_.upload(ids, ids_.mat(1, rows));
  // One hidden buffer updated in place (nothing is saved for a backward pass), one set of block activations.
  stream_.resize(rows * d);
  const Tensor h = stream_.mat(rows, d);
  Block& shared = *blocks_[0];
  const BlockActs a = acts_of(shared.n1, shared.mid, shared.n2, shared.rstd1, shared.rstd2, rows, d);
  std::vector<LayerState*> states(static_cast<size_t>(B));
  pass.states = states.data();
  be_.embedding_forward(ids_.mat(1, rows), store_.matmul_weight(embed_), h);
  for (size_t l = 0; l < blocks_.size(); ++l) {
    Block& b = *blocks_[l];
    for (int64_t s = 0; s < B; ++s) states[size_t(s)] = &seqs[size_t(s)]->layers()[l];
    be_.rmsnorm_forward(h, store_.weight(b.norm1), a.n1, a.rstd1, config_.rms_norm_eps);
    b.mixer->forward_cached(be_, pass, a.n1, a.mid);
    be_.residual_forward(h, store_.weight(b.res1), a.mid, a.mid);
    be_.rmsnorm_forward(a.mid, store_.weight(b.norm2), a.n2, a.rstd2, config_.rms_norm_eps);
    b.mlp->forward_cached(be_, pass, a.n2, h);
    be_.residual_forward(a.mid, store_.weight(b.res2), h, h);
  }
  for (int64_t s = 0; s < B; ++s) seqs[size_t(s)]->set_position(past[size_t(s)] + n);
  final_.resize(rows * d);
  final_rstd_.resize(rows);
  be_.rmsnorm_forward(h, store_.weight(final_norm_), final_.mat(rows, d), final_rstd_.mat(1, rows),
                      config_.rms_norm_eps);
  return final_.mat(rows, d);
}

}  // namespace txs
