// Fast inference (issue 4): a prompt is fed in one parallel chunked pass (prefill) that leaves a per-sequence
// state — the SSD state H×P×N per SSD / Mamba-2 layer, the last W−1 conv inputs for conv layers, and a KV cache
// for attention layers only — after which every new token costs O(1) in each SSD layer (decode).
// The engine reads the model's weights through ParamStore::find and computes with the model's Backend; it
// never touches the model's training buffers, so training and inference can share one Model.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/buffer.h"
#include "model/model.h"

namespace txs {

// Per-sequence decoding state. A plain value: copying it forks the sequence (prefix reuse).
class SequenceState {
 public:
  int64_t position() const { return position_; }  // tokens fed so far (= RoPE position of the next token)
  size_t bytes() const;                            // memory held for this sequence (KV cache counted as used)

 private:
  friend class InferenceEngine;
  // One entry per layer; fields that a layer type does not use stay empty.
  struct LayerState {
    std::vector<float> ssm;   // [H, P, N] SSD state
    std::vector<float> conv;  // [W−1, channels] conv inputs of the last W−1 tokens (zeros before the start)
    std::vector<float> kv;    // [position, 2, Hkv, P] rotated keys then values of every token so far
  };
  std::vector<LayerState> layers_;
  int64_t position_ = 0;
};

class InferenceEngine {
 public:
  explicit InferenceEngine(Model& model);
  ~InferenceEngine();
  InferenceEngine(const InferenceEngine&) = delete;
  InferenceEngine& operator=(const InferenceEngine&) = delete;

  const ModelConfig& config() const { return model_.config(); }
  Model& model() { return model_; }
  SequenceState new_sequence() const;

  // Feeds tokens ids[0..n) to the sequence (parallel chunked pass, any n ≥ 1, can be called repeatedly).
  // target_logprob[i] (nullable) = log p(targets[i] | everything up to ids[i]); targets may contain −1 (→ 0).
  // last_logits (nullable, [vocab]) = logits after the last token.
  void prefill(SequenceState& s, const int32_t* ids, int64_t n, const int32_t* targets, float* target_logprob,
               float* last_logits);
  // Like prefill, but hands the logits after every token to on_logits(i, logits[vocab]) in order (for
  // echo + logprobs with the most likely alternatives at each position).
  void prefill_each(SequenceState& s, const int32_t* ids, int64_t n,
                    const std::function<void(int64_t, const float*)>& on_logits);
  // One token for each of several sequences at once (different positions allowed): logits [batch, vocab].
  void decode(const std::vector<SequenceState*>& seqs, const int32_t* ids, float* logits);

  // Snapshot of a sequence (prompt caching), tagged with the model's fingerprint.
  void save_state(const SequenceState& s, const std::string& path) const;
  // Throws a one-line txs::Error when the file is not a snapshot or was made with another model.
  SequenceState load_state(const std::string& path) const;
  // Hash of the resolved config and every weight (computed once, on first use).
  uint64_t fingerprint() const;

  // Largest number of tokens one internal pass of prefill processes (longer inputs are split).
  static constexpr int64_t kMaxChunk = 512;

 private:
  struct LayerRefs;
  void check_prefill(const SequenceState& s, const int32_t* ids, int64_t n, const int32_t* targets) const;
  // Runs the layers over ids[0..n) in passes of at most kMaxChunk tokens; after each pass, on_pass(c0, rows)
  // finds the final normed hidden states of tokens c0 .. c0+rows−1 in final_.
  void prefill_passes(SequenceState& s, const int32_t* ids, int64_t n,
                      const std::function<void(int64_t, int64_t)>& on_pass);
  void run_layers(const std::vector<SequenceState*>& seqs, const int32_t* ids, int64_t rows, bool decoding);
  void mixer_ssd(const LayerRefs& L, size_t li, const std::vector<SequenceState*>& seqs, int64_t rows,
                 bool decoding, const float* u, float* out);
  void mixer_mamba2(const LayerRefs& L, size_t li, const std::vector<SequenceState*>& seqs, int64_t rows,
                    bool decoding, const float* u, float* out);
  void mixer_attention(const LayerRefs& L, size_t li, const std::vector<SequenceState*>& seqs, int64_t rows,
                       bool decoding, const float* u, float* out);
  // Causal conv + SiLU over [tail; new inputs] for each sequence; updates the tails.
  void conv_with_tail(size_t li, const std::vector<SequenceState*>& seqs, int64_t rows,
                      bool decoding, const float* in, int64_t in_stride, int64_t channels, const float* w,
                      const float* bias, float* out);

  Model& model_;
  Backend& be_;
  std::vector<LayerRefs> layers_;
  const float *embed_ = nullptr, *final_norm_ = nullptr, *head_ = nullptr;
  RopeTable rope_head_, rope_state_;
  mutable uint64_t fingerprint_ = 0;
  mutable bool have_fingerprint_ = false;
  // Work buffers, grown once and reused by every call.
  Buffer<int32_t> pos_;
  Buffer<float> h_, mid_, n_, branch_, proj_, xbc_, dt_, y_, gated_, rstd_, att_, lse_, window_, conv_out_, gate_up_,
      act_, step_state_, final_, block_logits_;
};

// Bytes of decoding state one sequence of `context` tokens holds for this config (what `info` and the
// server's /metrics report): SSD states + conv tails + KV caches of the attention layers.
size_t sequence_state_bytes(const ModelConfig& config, int64_t context);

}  // namespace txs
