// Test helpers shared by the model and inference tests: random token ids and weights far from the
// initialisation (non-unit norms, residual scales and D; larger projections and conv taps), so that every
// path visibly changes the output and every gradient is generic.
#pragma once
#include <string>
#include <vector>

#include "core/rng.h"
#include "model/model.h"

namespace txs::test {

// The small models of the model, inference, bf16 and device tests: milliseconds per pass, crossing SSD chunks
// (chunk 5) and the engine's internal prefill split, attention every other layer so that the hybrids have both
// kinds, 2 kv heads for grouped-query attention; MLP width 1.5 × hidden.
inline ModelConfig small_config(const std::string& arch, int64_t hidden = 64, int64_t vocab = 64) {
  return resolve_config("", "",
                        {{"arch", arch},
                         {"vocab_size", vocab},
                         {"hidden_size", hidden},
                         {"intermediate_size", hidden * 3 / 2},
                         {"num_hidden_layers", 4},
                         {"num_attention_heads", 4},
                         {"num_key_value_heads", 2},
                         {"attn_layer_period", 2},
                         {"attn_layer_offset", 1},
                         {"ssm_chunk_size", 5},
                         {"mamba_head_dim", 16},
                         {"mamba_d_state", 8},
                         {"max_position_embeddings", 64}});
}

inline std::vector<int32_t> random_ids(Rng& rng, int64_t n, int64_t vocab) {
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (auto& x : v) x = int32_t(rng.below(uint64_t(vocab)));
  return v;
}

inline void randomize_weights(Model& m, uint64_t seed, double proj_std = 0.3) {
  Rng rng(seed);
  for (auto& p : m.params().params()) {
    float* w = m.params().weights() + p.offset;
    const bool unit = p.name.find("norm") != std::string::npos || p.name.find("residual") != std::string::npos ||
                      (p.name.size() > 2 && p.name.substr(p.name.size() - 2) == ".D");
    if (unit)
      for (int64_t i = 0; i < p.numel; ++i) w[i] = float(1.0 + 0.3 * rng.normal());
    else if (p.name.find("proj") != std::string::npos || p.name.find("embed") != std::string::npos ||
             p.name.find("lm_head") != std::string::npos || p.name.find("conv1d") != std::string::npos)
      for (int64_t i = 0; i < p.numel; ++i) w[i] = float(proj_std * rng.normal());
  }
}

}  // namespace txs::test
