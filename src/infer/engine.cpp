#include "infer/engine.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "model/safetensors.h"

namespace txs {

// Weight pointers and sizes of one block, resolved by name (spec section 9) from the model's ParamStore.
// Projections that the model registers consecutively (x/B/C/dt, q/k/v, gate/up) form one matrix here too.
struct InferenceEngine::LayerRefs {
  LayerType type = LayerType::Ssd;
  const float *norm1 = nullptr, *res1 = nullptr, *norm2 = nullptr, *res2 = nullptr;
  const float *W_gate_up = nullptr, *W_down = nullptr;
  // Mixer weights (which are set depends on the type).
  const float *W_in = nullptr, *W_out = nullptr, *A_log = nullptr, *dt_bias = nullptr, *D = nullptr;
  const float *conv_w = nullptr, *conv_b = nullptr, *norm = nullptr;
  bool conv = false, rope = false;
  // SSD geometry: heads, head dim, groups, state dim; width of the input projection and of the conv'd part.
  int64_t H = 0, P = 0, G = 0, N = 0, in_width = 0, conv_width = 0, inner = 0;
  int64_t Hkv = 0;  // attention only
};

namespace {

constexpr char kMagic[8] = {'T', 'X', 'S', 'S', 'T', 'A', 'T', 'E'};
constexpr uint32_t kVersion = 1;

// FNV-1a over bytes, for the config text.
uint64_t fnv1a(const void* data, size_t n, uint64_t h = 0xcbf29ce484222325ULL) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ULL;
  return h;
}

// Rows of sequence i in the current pass: prefill feeds one sequence all rows, decode one row per sequence.
struct RowRange {
  int64_t start, count;
};
RowRange rows_of(size_t i, int64_t rows, bool decoding) {
  return decoding ? RowRange{int64_t(i), 1} : RowRange{0, rows};
}

}  // namespace

InferenceEngine::InferenceEngine(Model& model)
    : model_(model),
      be_(model.backend()),
      rope_head_(model.config().head_dim, model.config().rope_theta),
      rope_state_(model.config().ssm_state_size, model.config().rope_theta) {
  const ModelConfig& c = model_.config();
  ParamStore& store = model_.params();
  auto w = [&](const std::string& name, bool required = true) -> const float* {
    const Param* p = store.find(name);
    if (!p) {
      if (required) fail("inference: the model has no parameter '{}'", name);
      return nullptr;
    }
    return store.weights() + p->offset;
  };
  embed_ = w("model.word_embed.weight");
  final_norm_ = w("model.final_layernorm.weight");
  head_ = c.tie_word_embeddings ? embed_ : w("lm_head.weight");
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    LayerRefs L;
    L.type = c.layer_types[size_t(i)];
    L.norm1 = w(p + "pre_sequence_layernorm.weight");
    L.res1 = w(p + "post_sequence_residual.weight", c.residual_scale);
    L.norm2 = w(p + "pre_state_layernorm.weight");
    L.res2 = w(p + "post_state_residual.weight", c.residual_scale);
    L.W_gate_up = w(p + "feed_forward.gate_proj.weight");
    L.W_down = w(p + "feed_forward.down_proj.weight");
    switch (L.type) {
      case LayerType::Ssd: {
        const std::string m = p + "ssd.";
        L.conv = c.ssm_position == "conv", L.rope = c.ssm_position == "rope";
        L.H = c.num_attention_heads, L.P = c.head_dim, L.G = L.H, L.N = c.ssm_state_size;
        L.inner = L.H * L.P;
        L.conv_width = L.inner + 2 * L.H * L.N;  // x, B, C
        L.in_width = L.conv_width + L.H;         // + dt
        L.W_in = w(m + "x_proj.weight"), L.W_out = w(m + "out_proj.weight");
        L.A_log = w(m + "A_log"), L.dt_bias = w(m + "dt_bias", c.use_dt_bias);
        if (L.conv) L.conv_w = w(m + "conv1d.weight"), L.conv_b = w(m + "conv1d.bias"), L.D = w(m + "D");
        break;
      }
      case LayerType::Mamba2: {
        const std::string m = p + "mamba.";
        L.conv = true;
        L.H = c.mamba_heads(), L.P = c.mamba_head_dim, L.G = c.mamba_n_groups, L.N = c.mamba_d_state;
        L.inner = c.mamba_inner();
        L.conv_width = c.mamba_conv_channels();
        L.in_width = 2 * L.inner + 2 * L.G * L.N + L.H;  // z, x, B, C, dt
        L.W_in = w(m + "in_proj.weight"), L.W_out = w(m + "out_proj.weight");
        L.conv_w = w(m + "conv1d.weight"), L.conv_b = w(m + "conv1d.bias");
        L.A_log = w(m + "A_log"), L.dt_bias = w(m + "dt_bias", c.use_dt_bias), L.D = w(m + "D");
        L.norm = w(m + "norm.weight");
        break;
      }
      case LayerType::Attention: {
        const std::string m = p + "attn.";
        L.rope = c.attention_position == "rope";
        L.H = c.num_attention_heads, L.Hkv = c.num_key_value_heads, L.P = c.head_dim;
        L.inner = L.H * L.P;
        L.in_width = (L.H + 2 * L.Hkv) * L.P;  // q, k, v
        L.W_in = w(m + "q_proj.weight"), L.W_out = w(m + "o_proj.weight");
        break;
      }
    }
    layers_.push_back(L);
  }
}

InferenceEngine::~InferenceEngine() = default;

size_t SequenceState::bytes() const {
  size_t n = 0;
  for (auto& l : layers_) n += (l.ssm.size() + l.conv.size() + l.kv.size()) * sizeof(float);
  return n;
}

size_t sequence_state_bytes(const ModelConfig& c, int64_t context) {
  size_t n = 0;
  const int64_t tail = c.conv_kernel - 1;
  for (LayerType t : c.layer_types) {
    switch (t) {
      case LayerType::Ssd:
        n += size_t(c.num_attention_heads * c.head_dim * c.ssm_state_size);
        if (c.ssm_position == "conv") n += size_t(tail * c.ssd_conv_channels());
        break;
      case LayerType::Mamba2:
        n += size_t(c.mamba_heads() * c.mamba_head_dim * c.mamba_d_state + tail * c.mamba_conv_channels());
        break;
      case LayerType::Attention: n += size_t(context * 2 * c.num_key_value_heads * c.head_dim); break;
    }
  }
  return n * sizeof(float);
}

SequenceState InferenceEngine::new_sequence() const {
  SequenceState s;
  const int64_t tail = config().conv_kernel - 1;
  for (const LayerRefs& L : layers_) {
    SequenceState::LayerState ls;
    if (L.type != LayerType::Attention) {
      ls.ssm.assign(size_t(L.H * L.P * L.N), 0.0f);
      if (L.conv) ls.conv.assign(size_t(tail * L.conv_width), 0.0f);
    }
    s.layers_.push_back(std::move(ls));
  }
  return s;
}

// ---------------------------------------------------------------------------------------------------------
// The forward pass over the new rows of every sequence. Row r of the pass sits at position pos_[r].

void InferenceEngine::run_layers(const std::vector<SequenceState*>& seqs, const int32_t* ids, int64_t rows,
                                 bool decoding) {
  const ModelConfig& c = config();
  const int64_t d = c.hidden_size, I = c.intermediate_size;
  h_.resize(size_t(rows * d));
  mid_.resize(size_t(rows * d));
  n_.resize(size_t(rows * d));
  branch_.resize(size_t(rows * d));
  rstd_.resize(size_t(rows));
  be_.embedding_forward(ids, embed_, h_.data(), rows, d);
  for (size_t li = 0; li < layers_.size(); ++li) {
    const LayerRefs& L = layers_[li];
    be_.rmsnorm_forward(h_.data(), L.norm1, n_.data(), rstd_.data(), rows, d, c.rms_norm_eps);
    switch (L.type) {
      case LayerType::Ssd: mixer_ssd(L, li, seqs, rows, decoding, n_.data(), branch_.data()); break;
      case LayerType::Mamba2: mixer_mamba2(L, li, seqs, rows, decoding, n_.data(), branch_.data()); break;
      case LayerType::Attention: mixer_attention(L, li, seqs, rows, decoding, n_.data(), branch_.data()); break;
    }
    be_.residual_forward(h_.data(), L.res1, branch_.data(), mid_.data(), rows, d);
    // SwiGLU MLP on the second norm, then the second residual back into h.
    be_.rmsnorm_forward(mid_.data(), L.norm2, n_.data(), rstd_.data(), rows, d, c.rms_norm_eps);
    gate_up_.resize(size_t(rows * 2 * I));
    act_.resize(size_t(rows * I));
    be_.linear_forward(n_.data(), L.W_gate_up, gate_up_.data(), rows, d, 2 * I);
    be_.silu_mul_forward(gate_up_.data(), 2 * I, gate_up_.data() + I, 2 * I, act_.data(), I, rows, I);
    be_.linear_forward(act_.data(), L.W_down, branch_.data(), rows, I, d);
    be_.residual_forward(mid_.data(), L.res2, branch_.data(), h_.data(), rows, d);
  }
  final_.resize(size_t(rows * d));
  be_.rmsnorm_forward(h_.data(), final_norm_, final_.data(), rstd_.data(), rows, d, c.rms_norm_eps);
}

void InferenceEngine::conv_with_tail(size_t li, const std::vector<SequenceState*>& seqs,
                                     int64_t rows, bool decoding, const float* in, int64_t in_stride,
                                     int64_t channels, const float* w, const float* bias, float* out) {
  // Each sequence's window is [its last W−1 inputs; its new rows]: the causal conv over the window gives
  // exactly the outputs the full sequence would give at the new rows (before the start the tail is zeros,
  // as the kernel's padding is).
  const int64_t W = config().conv_kernel, tail = W - 1;
  const int64_t per_seq = decoding ? 1 : rows, win = tail + per_seq, B = int64_t(seqs.size());
  window_.resize(size_t(B * win * channels));
  conv_out_.resize(size_t(B * win * channels));
  for (size_t i = 0; i < seqs.size(); ++i) {
    const RowRange r = rows_of(i, rows, decoding);
    std::vector<float>& t = seqs[i]->layers_[li].conv;
    float* wi = window_.data() + int64_t(i) * win * channels;
    std::copy(t.begin(), t.end(), wi);
    for (int64_t k = 0; k < r.count; ++k)
      std::memcpy(wi + (tail + k) * channels, in + (r.start + k) * in_stride, size_t(channels) * sizeof(float));
  }
  be_.conv1d_silu_forward(window_.data(), channels, w, bias, conv_out_.data(), channels, B, win, channels, W);
  for (size_t i = 0; i < seqs.size(); ++i) {
    const RowRange r = rows_of(i, rows, decoding);
    const float* wi = window_.data() + int64_t(i) * win * channels;
    const float* oi = conv_out_.data() + int64_t(i) * win * channels;
    std::memcpy(out + r.start * channels, oi + tail * channels, size_t(r.count * channels) * sizeof(float));
    std::vector<float>& t = seqs[i]->layers_[li].conv;
    std::copy(wi + per_seq * channels, wi + win * channels, t.begin());  // the newest W−1 inputs
  }
}

// Attention of one new query per head over a sequence's whole KV cache (decoding). The tiled kernel of
// ops/cpu/attention pads the queries of a tile to a SIMD width, 16× the work for a single query, so decoding
// uses this plain two-pass softmax instead: scores q·k_j/√P, then Σ_j p_j v_j. Threads split the heads.
// (A Backend op of its own would be the place for this once a second backend exists.)
static void attention_one_query(int64_t H, int64_t Hkv, int64_t P, const float* q, const float* k, const float* v,
                                int64_t kv_len, int64_t kv_stride, float* out) {
  const int64_t group = H / Hkv;
  const float scale = 1.0f / std::sqrt(float(P));
#pragma omp parallel for schedule(static) if (kv_len * H * P >= (1 << 18))
  for (int64_t h = 0; h < H; ++h) {
    static thread_local std::vector<float> scores;
    scores.resize(size_t(kv_len));
    const float* qh = q + h * P;
    const int64_t off = (h / group) * P;
    float mx = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < kv_len; ++j) {
      const float* kj = k + j * kv_stride + off;
      float dot = 0;
#pragma omp simd reduction(+ : dot)
      for (int64_t p = 0; p < P; ++p) dot += qh[p] * kj[p];
      scores[size_t(j)] = dot * scale;
      mx = std::max(mx, scores[size_t(j)]);
    }
    double sum = 0;
    for (int64_t j = 0; j < kv_len; ++j) sum += scores[size_t(j)] = std::exp(scores[size_t(j)] - mx);
    float* o = out + h * P;
    std::fill(o, o + P, 0.0f);
    for (int64_t j = 0; j < kv_len; ++j) {
      const float* vj = v + j * kv_stride + off;
      const float w = scores[size_t(j)];
#pragma omp simd
      for (int64_t p = 0; p < P; ++p) o[p] += w * vj[p];
    }
    const float inv = float(1.0 / sum);
    for (int64_t p = 0; p < P; ++p) o[p] *= inv;
  }
}

// Shared by the SSD and Mamba-2 mixers: the scan over the new rows, continuing each sequence's state.
// xbc rows hold [x (H·P), B (G·N), C (G·N)] with row stride xbc_stride.
static void ssd_continue(Backend& be, int64_t chunk, int64_t H, int64_t P, int64_t G, int64_t N, const float* xbc,
                         int64_t xbc_stride, const float* dt, const float* A, const float* D,
                         const std::vector<float*>& states, int64_t rows, bool decoding, float* y, int64_t y_stride,
                         Buffer<float>& scratch) {
  if (decoding) {
    // O(1) per token: S = exp(Δ·A)·S + Δ·x⊗B, y = S·C (+ D·x), one sequence per row.
    for (size_t i = 0; i < states.size(); ++i) {
      const float* x = xbc + int64_t(i) * xbc_stride;
      be.ssd_step(1, H, P, G, N, x, dt + int64_t(i) * H, A, x + H * P, x + H * P + G * N, D, states[i],
                  y + int64_t(i) * y_stride);
    }
    return;
  }
  SsdShape s;
  s.batch = 1, s.seq = rows, s.heads = H, s.head_dim = P, s.groups = G, s.state_dim = N, s.chunk = chunk;
  s.x_stride = s.bc_stride = xbc_stride, s.dt_stride = H, s.y_stride = y_stride;
  scratch.resize(size_t(H * P * N));
  be.ssd_forward(s, xbc, dt, A, xbc + H * P, xbc + H * P + G * N, D, states[0], y, scratch.data());
  std::memcpy(states[0], scratch.data(), size_t(H * P * N) * sizeof(float));
}

void InferenceEngine::mixer_ssd(const LayerRefs& L, size_t li, const std::vector<SequenceState*>& seqs, int64_t rows,
                                bool decoding, const float* u, float* out) {
  const int64_t d = config().hidden_size, H = L.H, P = L.P, N = L.N;
  proj_.resize(size_t(rows * L.in_width));
  dt_.resize(size_t(rows * H));
  y_.resize(size_t(rows * L.inner));
  be_.linear_forward(u, L.W_in, proj_.data(), rows, d, L.in_width);
  const float* xbc = proj_.data();
  int64_t xbc_stride = L.in_width;
  if (L.conv) {
    xbc_.resize(size_t(rows * L.conv_width));
    conv_with_tail(li, seqs, rows, decoding, proj_.data(), L.in_width, L.conv_width, L.conv_w, L.conv_b,
                   xbc_.data());
    xbc = xbc_.data(), xbc_stride = L.conv_width;
  } else if (L.rope) {
    be_.rope_apply(proj_.data() + H * P, rows, 2 * H, L.in_width, pos_.data(), rope_state_, false);
  }
  be_.softplus_forward(proj_.data() + L.conv_width, L.in_width, L.dt_bias, dt_.data(), rows, H);
  float A[1024];
  if (H > 1024) fail("inference: {} SSD heads is more than 1024", H);
  for (int64_t h = 0; h < H; ++h) A[h] = -std::exp(L.A_log[h]);
  std::vector<float*> states;
  for (auto* s : seqs) states.push_back(s->layers_[li].ssm.data());
  ssd_continue(be_, config().ssm_chunk_size, H, P, H, N, xbc, xbc_stride, dt_.data(), A, L.D, states, rows,
               decoding, y_.data(), L.inner, step_state_);
  be_.linear_forward(y_.data(), L.W_out, out, rows, L.inner, d);
}

void InferenceEngine::mixer_mamba2(const LayerRefs& L, size_t li, const std::vector<SequenceState*>& seqs,
                                   int64_t rows, bool decoding, const float* u, float* out) {
  const ModelConfig& c = config();
  const int64_t d = c.hidden_size, E = L.inner, H = L.H;
  proj_.resize(size_t(rows * L.in_width));
  xbc_.resize(size_t(rows * L.conv_width));
  dt_.resize(size_t(rows * H));
  y_.resize(size_t(rows * E));
  gated_.resize(size_t(rows * E));
  be_.linear_forward(u, L.W_in, proj_.data(), rows, d, L.in_width);
  const float* z = proj_.data();
  conv_with_tail(li, seqs, rows, decoding, z + E, L.in_width, L.conv_width, L.conv_w, L.conv_b, xbc_.data());
  be_.softplus_forward(z + E + L.conv_width, L.in_width, L.dt_bias, dt_.data(), rows, H);
  float A[1024];
  if (H > 1024) fail("inference: {} Mamba-2 heads is more than 1024", H);
  for (int64_t h = 0; h < H; ++h) A[h] = -std::exp(L.A_log[h]);
  std::vector<float*> states;
  for (auto* s : seqs) states.push_back(s->layers_[li].ssm.data());
  ssd_continue(be_, c.ssm_chunk_size, H, L.P, L.G, L.N, xbc_.data(), L.conv_width, dt_.data(), A, L.D, states, rows,
               decoding, y_.data(), E, step_state_);
  // Gated RMSNorm: norm(y ⊙ silu(z)), then the output projection.
  be_.silu_mul_forward(z, L.in_width, y_.data(), E, gated_.data(), E, rows, E);
  be_.rmsnorm_forward(gated_.data(), L.norm, y_.data(), rstd_.data(), rows, E, c.mamba_norm_eps);
  be_.linear_forward(y_.data(), L.W_out, out, rows, E, d);
}

void InferenceEngine::mixer_attention(const LayerRefs& L, size_t li, const std::vector<SequenceState*>& seqs,
                                      int64_t rows, bool decoding, const float* u, float* out) {
  const int64_t d = config().hidden_size, H = L.H, Hkv = L.Hkv, P = L.P, kv_row = 2 * Hkv * P;
  proj_.resize(size_t(rows * L.in_width));
  att_.resize(size_t(rows * L.inner));
  be_.linear_forward(u, L.W_in, proj_.data(), rows, d, L.in_width);
  if (L.rope) be_.rope_apply(proj_.data(), rows, H + Hkv, L.in_width, pos_.data(), rope_head_, false);
  for (size_t i = 0; i < seqs.size(); ++i) {
    const RowRange r = rows_of(i, rows, decoding);
    SequenceState& s = *seqs[i];
    std::vector<float>& kv = s.layers_[li].kv;
    // Append the new rotated keys and values: the cache holds rows [k (Hkv·P), v (Hkv·P)].
    const size_t old = kv.size();
    kv.resize(old + size_t(r.count * kv_row));
    for (int64_t k = 0; k < r.count; ++k) {
      const float* src = proj_.data() + (r.start + k) * L.in_width + H * P;  // k then v, adjacent
      std::memcpy(kv.data() + old + size_t(k * kv_row), src, size_t(kv_row) * sizeof(float));
    }
    if (decoding) {
      attention_one_query(H, Hkv, P, proj_.data() + r.start * L.in_width, kv.data(), kv.data() + Hkv * P,
                          s.position_ + 1, kv_row, att_.data() + r.start * L.inner);
      continue;
    }
    AttentionShape a;
    a.batch = 1, a.q_len = r.count, a.kv_len = s.position_ + r.count;
    a.heads = H, a.kv_heads = Hkv, a.head_dim = P;
    a.q_stride = L.in_width, a.kv_stride = kv_row, a.out_stride = L.inner;
    lse_.resize(size_t(H * r.count));
    be_.attention_forward(a, proj_.data() + r.start * L.in_width, kv.data(), kv.data() + Hkv * P,
                          att_.data() + r.start * L.inner, lse_.data());
  }
  be_.linear_forward(att_.data(), L.W_out, out, rows, L.inner, d);
}

// ---------------------------------------------------------------------------------------------------------

void InferenceEngine::check_prefill(const SequenceState& s, const int32_t* ids, int64_t n,
                                    const int32_t* targets) const {
  const ModelConfig& c = config();
  if (n < 1) fail("prefill: need at least one token");
  if (s.layers_.size() != layers_.size()) fail("prefill: the sequence state belongs to another model");
  for (int64_t i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] >= c.vocab_size)
      fail("token id {} at position {} is outside the vocabulary [0, {})", ids[i], i, c.vocab_size);
    if (targets && (targets[i] < -1 || targets[i] >= c.vocab_size))
      fail("target id {} at position {} is outside the vocabulary [0, {})", targets[i], i, c.vocab_size);
  }
}

void InferenceEngine::prefill_passes(SequenceState& s, const int32_t* ids, int64_t n,
                                     const std::function<void(int64_t, int64_t)>& on_pass) {
  std::vector<SequenceState*> seqs{&s};
  for (int64_t c0 = 0; c0 < n; c0 += kMaxChunk) {
    const int64_t rows = std::min(kMaxChunk, n - c0);
    pos_.resize(size_t(rows));
    for (int64_t r = 0; r < rows; ++r) pos_[size_t(r)] = int32_t(s.position_ + r);
    rope_head_.ensure(s.position_ + rows);
    rope_state_.ensure(s.position_ + rows);
    run_layers(seqs, ids + c0, rows, false);
    s.position_ += rows;
    on_pass(c0, rows);
  }
}

void InferenceEngine::prefill(SequenceState& s, const int32_t* ids, int64_t n, const int32_t* targets,
                              float* target_logprob, float* last_logits) {
  check_prefill(s, ids, n, targets);
  const int64_t d = config().hidden_size, V = config().vocab_size;
  prefill_passes(s, ids, n, [&](int64_t c0, int64_t rows) {
    if (targets)
      be_.lm_head_cross_entropy(final_.data(), head_, targets + c0, rows, d, V,
                                target_logprob ? target_logprob + c0 : nullptr, nullptr, nullptr, 0.0f);
    if (last_logits && c0 + rows == n) be_.lm_head_logits(final_.data() + (rows - 1) * d, head_, last_logits, 1, d, V);
  });
}

void InferenceEngine::prefill_each(SequenceState& s, const int32_t* ids, int64_t n,
                                   const std::function<void(int64_t, const float*)>& on_logits) {
  check_prefill(s, ids, n, nullptr);
  const int64_t d = config().hidden_size, V = config().vocab_size, block = 32;  // bounds the logits held
  block_logits_.resize(size_t(block * V));
  prefill_passes(s, ids, n, [&](int64_t c0, int64_t rows) {
    for (int64_t r0 = 0; r0 < rows; r0 += block) {
      const int64_t nr = std::min(block, rows - r0);
      be_.lm_head_logits(final_.data() + r0 * d, head_, block_logits_.data(), nr, d, V);
      for (int64_t r = 0; r < nr; ++r) on_logits(c0 + r0 + r, block_logits_.data() + r * V);
    }
  });
}

void InferenceEngine::decode(const std::vector<SequenceState*>& seqs, const int32_t* ids, float* logits) {
  const ModelConfig& c = config();
  const int64_t B = int64_t(seqs.size());
  if (B == 0) return;
  int64_t max_pos = 0;
  pos_.resize(size_t(B));
  for (int64_t i = 0; i < B; ++i) {
    if (!seqs[size_t(i)] || seqs[size_t(i)]->layers_.size() != layers_.size())
      fail("decode: sequence {} is null or belongs to another model", i);
    for (int64_t j = 0; j < i; ++j)
      if (seqs[size_t(j)] == seqs[size_t(i)]) fail("decode: sequence {} appears twice in one batch", i);
    if (ids[i] < 0 || ids[i] >= c.vocab_size)
      fail("token id {} of sequence {} is outside the vocabulary [0, {})", ids[i], i, c.vocab_size);
    pos_[size_t(i)] = int32_t(seqs[size_t(i)]->position_);
    max_pos = std::max(max_pos, seqs[size_t(i)]->position_);
  }
  rope_head_.ensure(max_pos + 1);
  rope_state_.ensure(max_pos + 1);
  run_layers(seqs, ids, B, true);
  for (auto* s : seqs) s->position_ += 1;
  be_.lm_head_logits(final_.data(), head_, logits, B, c.hidden_size, c.vocab_size);
}

// ---------------------------------------------------------------------------------------------------------
// Snapshots: magic, version, model fingerprint, position, then per layer the three arrays with their lengths.

uint64_t InferenceEngine::fingerprint() const {
  if (have_fingerprint_) return fingerprint_;
  const std::string cfg = config().to_json().dump();
  uint64_t h = fnv1a(cfg.data(), cfg.size());
  // Weights: a multiply-xor over 64-bit words (fast enough for 10⁸ parameters, sensitive to any change).
  const ParamStore& store = model_.params();
  const auto* words = reinterpret_cast<const uint32_t*>(store.weights());
  const int64_t n = store.size();
  uint64_t acc = 0x9e3779b97f4a7c15ULL;
  for (int64_t i = 0; i < n; ++i) acc = (acc ^ words[i]) * 0x100000001b3ULL + uint64_t(i);
  fingerprint_ = hash64(h, acc, uint64_t(n));
  have_fingerprint_ = true;
  return fingerprint_;
}

void InferenceEngine::save_state(const SequenceState& s, const std::string& path) const {
  if (s.layers_.size() != layers_.size()) fail("save_state: the sequence state belongs to another model");
  std::string out;
  auto put = [&](const void* p, size_t n) { out.append(static_cast<const char*>(p), n); };
  const uint64_t fp = fingerprint(), nl = s.layers_.size();
  put(kMagic, 8);
  put(&kVersion, 4);
  put(&fp, 8);
  put(&s.position_, 8);
  put(&nl, 8);
  for (auto& l : s.layers_)
    for (const std::vector<float>* v : {&l.ssm, &l.conv, &l.kv}) {
      const uint64_t n = v->size();
      put(&n, 8);
      put(v->data(), n * sizeof(float));
    }
  write_file_atomic(path, out);
}

SequenceState InferenceEngine::load_state(const std::string& path) const {
  const std::string bytes = read_file(path);
  size_t at = 0;
  auto get = [&](void* p, size_t n) {
    if (bytes.size() - at < n) fail("{}: truncated state snapshot", path);
    std::memcpy(p, bytes.data() + at, n);
    at += n;
  };
  char magic[8];
  uint32_t version = 0;
  uint64_t fp = 0, nl = 0;
  get(magic, 8);
  if (std::memcmp(magic, kMagic, 8) != 0) fail("{}: not a transxssm state snapshot", path);
  get(&version, 4);
  if (version != kVersion) fail("{}: state snapshot version {} (this build reads {})", path, version, kVersion);
  get(&fp, 8);
  if (fp != fingerprint())
    fail("{}: state snapshot was made with another model (fingerprint {:016x}, this model {:016x})", path, fp,
         fingerprint());
  SequenceState s = new_sequence();
  get(&s.position_, 8);
  get(&nl, 8);
  if (nl != layers_.size() || s.position_ < 0) fail("{}: state snapshot does not fit this model", path);
  for (size_t li = 0; li < layers_.size(); ++li) {
    auto& l = s.layers_[li];
    const LayerRefs& L = layers_[li];
    const size_t kv_expected =
        L.type == LayerType::Attention ? size_t(s.position_ * 2 * L.Hkv * L.P) : size_t(0);
    for (std::vector<float>* v : {&l.ssm, &l.conv, &l.kv}) {
      uint64_t n = 0;
      get(&n, 8);
      const size_t expected = v == &l.kv ? kv_expected : v->size();
      if (n != expected) fail("{}: state snapshot layer {} has {} values where {} were expected", path, li, n, expected);
      v->resize(n);
      get(v->data(), n * sizeof(float));
    }
  }
  if (at != bytes.size()) fail("{}: trailing bytes after the state snapshot", path);
  return s;
}

}  // namespace txs
