// Matched parameter counts for the reproduction study (`transxssm study`).
//
// Rule (deterministic, documented in README "Reproduction study"): the reference is the `transxssm` preset at
// the chosen size (its intermediate_size untouched). Every other architecture keeps the preset's d_model,
// layer count, heads and vocabulary and changes only its SwiGLU width `intermediate_size`: the parameter
// count is affine in it (3·d·L parameters per unit), so the rule takes the multiple of 8 nearest to the exact
// solution of count(arch, I) = count(transxssm), ties to the smaller. The result must be within 2% of the
// reference (`match_widths` throws otherwise); a study also checks the count of the model it actually builds.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/config.h"

namespace txs::study {

// Parameters of a model with this config, computed from the config alone (no allocation); equal to
// Model(config).num_params() (tests/test_study_match.cpp checks it for every architecture).
int64_t count_params(const ModelConfig& c);

struct MatchedArch {
  std::string arch;
  int64_t intermediate_size = 0;  // the width the rule chose (the preset's for the reference)
  int64_t preset_intermediate_size = 0;
  int64_t params = 0;
  double rel_diff = 0;            // (params − reference) / reference
  nlohmann::json overrides;       // model overrides that build it: {"intermediate_size": I, ...base}
};

struct Matching {
  std::string reference_arch = "transxssm";
  int64_t reference_params = 0;
  std::string rule;
  std::vector<MatchedArch> archs;
  nlohmann::json to_json() const;
};

constexpr double kMaxParamMismatch = 0.02;
constexpr int64_t kWidthMultiple = 8;

// base: model overrides applied to every architecture (vocab_size, max_position_embeddings, ...).
Matching match_widths(const std::vector<std::string>& archs, const std::string& size, const nlohmann::json& base);

}  // namespace txs::study
