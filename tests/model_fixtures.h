// Test helpers shared by the model and inference tests: random token ids and weights far from the
// initialisation (non-unit norms, residual scales and D; larger projections and conv taps), so that every
// path visibly changes the output and every gradient is generic.
#pragma once
#include <string>
#include <vector>

#include "core/rng.h"
#include "model/model.h"

namespace txs::test {

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
