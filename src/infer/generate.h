// Generation with the fast engine: prefill the prompt once, then one decode step per new token.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "infer/engine.h"
#include "infer/sampler.h"

namespace txs {

struct GenerationStats {
  int64_t prompt_tokens = 0, new_tokens = 0;
  double prefill_seconds = 0, decode_seconds = 0;
};

// Feeds `prompt` to `seq` (which may already hold a prefix, e.g. a loaded snapshot; the prompt may then be
// empty), then samples up to max_new tokens. on_token (optional) sees each new id; returning false stops
// (the id is still returned). Afterwards `seq` holds the prompt and every returned token. The Rng draws in the same order as generate_recompute, so both give the same
// tokens for the same seed. With an empty prompt, resume_logits ([vocab], the logits after the state's last
// token, e.g. saved with a snapshot) start the sampling. Returns the new ids.
std::vector<int32_t> generate(InferenceEngine& engine, SequenceState& seq, const std::vector<int32_t>& prompt,
                              int64_t max_new, const SamplingParams& params, uint64_t seed,
                              const std::function<bool(int32_t)>& on_token = {}, GenerationStats* stats = nullptr,
                              const std::vector<float>* resume_logits = nullptr);

}  // namespace txs
