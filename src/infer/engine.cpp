#include "infer/engine.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "core/rng.h"
#include "model/safetensors.h"

namespace txs {

namespace {

constexpr char kMagic[8] = {'T', 'X', 'S', 'S', 'T', 'A', 'T', 'E'};
constexpr uint32_t kVersion = 1;

// FNV-1a over bytes, for the config text.
uint64_t fnv1a(const void* data, size_t n, uint64_t h = 0xcbf29ce484222325ULL) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ULL;
  return h;
}

}  // namespace

InferenceEngine::InferenceEngine(Model& model)
    : model_(model), be_(model.backend()), targets_(be_, DType::I32), logprob_(be_), logits_(be_) {}

InferenceEngine::~InferenceEngine() = default;

void InferenceEngine::check_prefill(const SequenceState& s, const int32_t* ids, int64_t n,
                                    const int32_t* targets) const {
  if (n < 1) fail("prefill: need at least one token");
  if (s.layers().size() != size_t(config().num_hidden_layers))
    fail("prefill: the sequence state belongs to another model");
  model_.check_ids(ids, targets, n);
}

void InferenceEngine::prefill_passes(SequenceState& s, const int32_t* ids, int64_t n,
                                     const std::function<void(int64_t, const Tensor&)>& on_pass) {
  std::vector<SequenceState*> seqs{&s};
  for (int64_t c0 = 0; c0 < n; c0 += kMaxChunk) {
    const int64_t rows = std::min(kMaxChunk, n - c0);
    on_pass(c0, model_.forward_cached(seqs, ids + c0, rows, false));
  }
}

void InferenceEngine::prefill(SequenceState& s, const int32_t* ids, int64_t n, const int32_t* targets,
                              float* target_logprob, float* last_logits) {
  check_prefill(s, ids, n, targets);
  const int64_t V = config().vocab_size;
  const Tensor head = model_.head_weight();
  prefill_passes(s, ids, n, [&](int64_t c0, const Tensor& h) {
    const int64_t rows = h.rows;
    if (targets) {
      targets_.resize(rows);
      be_.upload(targets + c0, targets_.mat(1, rows));
      logprob_.resize(rows);
      const Tensor lp = target_logprob ? logprob_.mat(1, rows) : Tensor{};
      be_.lm_head_cross_entropy(h, head, targets_.mat(1, rows), lp, Tensor{}, Tensor{}, 0.0f);
      if (target_logprob) be_.download(lp, target_logprob + c0);
    }
    if (last_logits && c0 + rows == n) {
      logits_.resize(V);
      be_.lm_head_logits(h.row_slice(rows - 1, 1), head, logits_.mat(1, V));
      be_.download(logits_.mat(1, V), last_logits);
    }
  });
}

void InferenceEngine::prefill_each(SequenceState& s, const int32_t* ids, int64_t n,
                                   const std::function<void(int64_t, const float*)>& on_logits) {
  check_prefill(s, ids, n, nullptr);
  const int64_t V = config().vocab_size, block = 32;  // bounds the logits held
  std::vector<float> host(size_t(block * V));
  logits_.resize(block * V);
  const Tensor head = model_.head_weight();
  prefill_passes(s, ids, n, [&](int64_t c0, const Tensor& h) {
    for (int64_t r0 = 0; r0 < h.rows; r0 += block) {
      const int64_t nr = std::min(block, h.rows - r0);
      be_.lm_head_logits(h.row_slice(r0, nr), head, logits_.mat(nr, V));
      be_.download(logits_.mat(nr, V), host.data());
      for (int64_t r = 0; r < nr; ++r) on_logits(c0 + r0 + r, host.data() + r * V);
    }
  });
}

void InferenceEngine::decode(const std::vector<SequenceState*>& seqs, const int32_t* ids, float* logits) {
  const int64_t B = int64_t(seqs.size()), V = config().vocab_size;
  if (B == 0) return;
  for (int64_t i = 0; i < B; ++i) {
    if (!seqs[size_t(i)] || seqs[size_t(i)]->layers().size() != size_t(config().num_hidden_layers))
      fail("decode: sequence {} is null or belongs to another model", i);
    for (int64_t j = 0; j < i; ++j)
      if (seqs[size_t(j)] == seqs[size_t(i)]) fail("decode: sequence {} appears twice in one batch", i);
    if (ids[i] < 0 || ids[i] >= V) fail("token id {} of sequence {} is outside the vocabulary [0, {})", ids[i], i, V);
  }
  const Tensor h = model_.forward_cached(seqs, ids, 1, true);
  logits_.resize(B * V);
  be_.lm_head_logits(h, model_.head_weight(), logits_.mat(B, V));
  be_.download(logits_.mat(B, V), logits);
}

// ---------------------------------------------------------------------------------------------------------
// Snapshots: magic, version, model fingerprint, position, then per layer the three arrays with their lengths.

uint64_t InferenceEngine::fingerprint() const {
  if (have_fingerprint_) return fingerprint_;
  const std::string cfg = config().to_json().dump();
  uint64_t h = fnv1a(cfg.data(), cfg.size());
  // Weights as stored (fp32, and the bf16 copies in the bf16 mode): a multiply-xor over 16-bit words
  // (fast enough for 10⁸ parameters, sensitive to any change). Device weights come to the host first.
  const ParamStore& store = model_.params();
  uint64_t acc = 0x9e3779b97f4a7c15ULL;
  int64_t n = 0;
  for (const Tensor& t : {store.stored_fp32(), store.stored_bf16()}) {
    const size_t bytes = size_t(t.numel()) * dtype_size(t.dtype);
    std::vector<char> copy;
    const char* host = static_cast<const char*>(t.data);
    if (be_.device() != Device::Cpu && bytes) {
      copy.resize(bytes);
      be_.download(t, copy.data());
      host = copy.data();
    }
    for (size_t i = 0; i + 1 < bytes; i += 2, ++n) {
      uint16_t w;
      std::memcpy(&w, host + i, 2);
      acc = (acc ^ w) * 0x100000001b3ULL + uint64_t(n);
    }
  }
  fingerprint_ = hash64(h, acc, uint64_t(n));
  have_fingerprint_ = true;
  return fingerprint_;
}

void InferenceEngine::save_state(const SequenceState& s, const std::string& path) const {
  if (s.layers().size() != size_t(config().num_hidden_layers))
    fail("save_state: the sequence state belongs to another model");
  std::string out;
  auto put = [&](const void* p, size_t n) { out.append(static_cast<const char*>(p), n); };
  const uint64_t fp = fingerprint(), nl = s.layers().size();
  const int64_t position = s.position();
  put(kMagic, 8);
  put(&kVersion, 4);
  put(&fp, 8);
  put(&position, 8);
  put(&nl, 8);
  std::vector<float> host;
  for (auto& l : s.layers())
    for (const DeviceBuffer* v : {&l.ssm, &l.conv, &l.kv}) {
      const uint64_t n = uint64_t(v->size());
      put(&n, 8);
      host.resize(size_t(n));
      if (n) be_.download(v->flat(), host.data());
      put(host.data(), n * sizeof(float));
    }
  write_file_atomic(path, out);
}

SequenceState InferenceEngine::load_state(const std::string& path) const {
  const std::string bytes = read_file(path);
  size_t at = 0;
  auto get = [&](void* p, size_t n) {
    if (bytes.size() - at < n) fail("{}: truncated state snapshot", path);
    if (n) std::memcpy(p, bytes.data() + at, n);
    at += n;
  };
  char magic[8];
  uint32_t version = 0;
  uint64_t fp = 0, nl = 0;
  int64_t position = 0;
  get(magic, 8);
  if (std::memcmp(magic, kMagic, 8) != 0) fail("{}: not a transxssm state snapshot", path);
  get(&version, 4);
  if (version != kVersion) fail("{}: state snapshot version {} (this build reads {})", path, version, kVersion);
  get(&fp, 8);
  if (fp != fingerprint())
    fail("{}: state snapshot was made with another model (fingerprint {:016x}, this model {:016x})", path, fp,
         fingerprint());
  SequenceState s = new_sequence();
  get(&position, 8);
  get(&nl, 8);
  const ModelConfig& c = config();
  if (nl != s.layers().size() || position < 0 || position > (int64_t(1) << 31))
    fail("{}: state snapshot does not fit this model", path);
  std::vector<float> host;
  for (size_t li = 0; li < s.layers().size(); ++li) {
    LayerState& l = s.layers()[li];
    const int64_t kv_expected =
        c.layer_types[li] == LayerType::Attention ? position * 2 * c.num_key_value_heads * c.head_dim : 0;
    for (DeviceBuffer* v : {&l.ssm, &l.conv, &l.kv}) {
      uint64_t n = 0;
      get(&n, 8);
      const int64_t expected = v == &l.kv ? kv_expected : v->size();
      if (n != uint64_t(expected))
        fail("{}: state snapshot layer {} has {} values where {} were expected", path, li, n, expected);
      host.resize(size_t(n));
      get(host.data(), n * sizeof(float));
      v->resize(expected);
      if (n) be_.upload(host.data(), v->flat());
      // A NaN/inf state would decode one repeated token with no error: refuse it, naming where it is.
      if (n && !be_.all_finite(v->flat()))
        fail("{}: state snapshot layer {} holds non-finite values (NaN or inf) in its {} state", path, li,
             v == &l.ssm ? "ssm" : v == &l.conv ? "conv" : "kv");
    }
  }
  if (at != bytes.size()) fail("{}: trailing bytes after the state snapshot", path);
  s.set_position(position);
  return s;
}

}  // namespace txs
