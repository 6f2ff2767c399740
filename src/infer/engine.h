// Fast inference: a prompt is fed in parallel chunked passes (prefill) that leave a per-sequence state —
// the SSD state H×P×N per SSD / Mamba-2 layer, the last K−1 conv inputs for conv layers, and a KV cache
// for attention layers only — after which every new token costs O(1) in each SSD layer (decode).
// The engine drives the model's own layers (Model::forward_cached); it owns no copy of the architecture,
// only chunking, logits and snapshots, and computes with the model's Backend.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/model.h"

namespace txs {

class InferenceEngine {
 public:
  explicit InferenceEngine(Model& model);
  ~InferenceEngine();
  InferenceEngine(const InferenceEngine&) = delete;
  InferenceEngine& operator=(const InferenceEngine&) = delete;

  const ModelConfig& config() const { return model_.config(); }
  Model& model() { return model_; }
  SequenceState new_sequence() const { return model_.new_sequence(); }

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
  void check_prefill(const SequenceState& s, const int32_t* ids, int64_t n, const int32_t* targets) const;
  // Runs ids[0..n) in passes of at most kMaxChunk tokens; on_pass(c0, hidden) gets the final normed hidden
  // states [rows, d] of tokens c0 .. c0+rows−1.
  void prefill_passes(SequenceState& s, const int32_t* ids, int64_t n,
                      const std::function<void(int64_t, const Tensor&)>& on_pass);

  Model& model_;
  Backend& be_;
  mutable uint64_t fingerprint_ = 0;
  mutable bool have_fingerprint_ = false;
  DeviceBuffer targets_, logprob_, logits_;  // reused by every call
};

}  // namespace txs
