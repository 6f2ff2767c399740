// Simple generation that recomputes the whole forward pass for every new token (O(T²) per sequence).
// It is the reference the fast constant-state decoder is checked against, and the trainer's demo sampler.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "infer/sampler.h"
#include "model/model.h"

namespace txs {

// Appends up to max_new tokens to `ids`; the window is the last max_position_embeddings tokens.
// on_token (optional) sees each new id; returning false stops generation.
void generate_recompute(Model& model, std::vector<int32_t>& ids, int64_t max_new, const SamplingParams& params,
                        uint64_t seed, const std::function<bool(int32_t)>& on_token = {});

}  // namespace txs
