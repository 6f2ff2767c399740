// Picks the next token from a row of logits: temperature (0 = greedy argmax), top-k, top-p (nucleus).
#pragma once
#include <cstdint>

#include "core/rng.h"

namespace txs {

struct SamplingParams {
  double temperature = 1.0;  // 0: greedy
  int64_t top_k = 0;         // 0: off
  double top_p = 1.0;        // 1: off
};

int32_t sample_token(const float* logits, int64_t vocab, const SamplingParams& params, Rng& rng);

}  // namespace txs
