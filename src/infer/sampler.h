// Picks the next token from a row of logits: temperature (0 = greedy argmax), top-k, top-p (nucleus).
#pragma once
#include <cstdint>

#include "core/rng.h"

namespace txs {

struct SamplingParams {
  double temperature = 1.0;  // 0: greedy
  int64_t top_k = 0;         // 0: off
  double top_p = 1.0;        // 1: off
  // Ids ≥ real_vocab are never returned (0: every id is real). A model's vocabulary is often padded past its
  // tokenizer's (NeoX: 50277 → 50304); the padding ids have no text, so sampling one would break decoding.
  int64_t real_vocab = 0;
};

// Only ids < min(vocab, params.real_vocab) can come out, in every mode (greedy, temperature, top-k/top-p).
int32_t sample_token(const float* logits, int64_t vocab, const SamplingParams& params, Rng& rng);

}  // namespace txs
