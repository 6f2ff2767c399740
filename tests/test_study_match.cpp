// The study's width-matching rule (src/study/match.h): for every architecture at every size the matched
// parameter count is within 2% of the transxssm reference, the rule is deterministic, and the analytic
// count equals the parameters a Model actually allocates.
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "model/model.h"
#include "study/match.h"

using namespace txs;

namespace {
const std::vector<std::string> kArchs = {"transxssm", "transformer", "mamba2", "jamba", "hybrid-conv", "hybrid-nope"};
}

TEST(StudyMatch, AnalyticCountEqualsModelAtTiny) {
  for (const auto& arch : kArchs)
    for (int64_t vocab : {256, 8192}) {
      const nlohmann::json over = {{"vocab_size", vocab}, {"max_position_embeddings", 256}};
      const ModelConfig c = resolve_config(arch, "tiny", over);
      Model m(c);
      EXPECT_EQ(study::count_params(c), m.num_params()) << arch << " vocab " << vocab;
    }
  // Untied head, grouped KV heads, no residual scales, conv SSD: still exact.
  const ModelConfig c = resolve_config("hybrid-conv", "tiny", {{"vocab_size", 512}, {"tie_word_embeddings", false},
                                                                {"num_key_value_heads", 2}, {"residual_scale", false},
                                                                {"intermediate_size", 200}});
  Model m(c);
  EXPECT_EQ(study::count_params(c), m.num_params());
}

TEST(StudyMatch, AllArchitecturesWithinTwoPercentAtEverySize) {
  for (const std::string size : {"tiny", "320m", "1.3b"})
    for (int64_t vocab : {8192, 50304}) {
      const nlohmann::json base = {{"vocab_size", vocab}};
      const study::Matching m = study::match_widths(kArchs, size, base);
      ASSERT_EQ(m.archs.size(), kArchs.size());
      const ModelConfig ref = resolve_config("transxssm", size, base);
      EXPECT_EQ(m.reference_params, study::count_params(ref));
      for (const auto& a : m.archs) {
        SCOPED_TRACE(size + " " + a.arch + " vocab " + std::to_string(vocab));
        EXPECT_LE(std::abs(a.rel_diff), study::kMaxParamMismatch);
        EXPECT_EQ(a.intermediate_size % study::kWidthMultiple, 0);
        const ModelConfig c = resolve_config(a.arch, size, a.overrides);
        EXPECT_EQ(c.intermediate_size, a.intermediate_size);
        EXPECT_EQ(study::count_params(c), a.params);
        EXPECT_EQ(c.hidden_size, ref.hidden_size);  // only the MLP width changes
        EXPECT_EQ(c.num_hidden_layers, ref.num_hidden_layers);
        // No other multiple of 8 is closer to the reference (the rule picks the nearest).
        for (int64_t delta : {-study::kWidthMultiple, study::kWidthMultiple}) {
          nlohmann::json o = a.overrides;
          o["intermediate_size"] = a.intermediate_size + delta;
          if (a.arch == "transxssm") continue;
          const int64_t other = study::count_params(resolve_config(a.arch, size, o));
          EXPECT_GE(std::llabs(other - m.reference_params), std::llabs(a.params - m.reference_params));
        }
      }
      // The reference and the no-position ablation have identical shapes: nothing to change.
      for (const auto& a : m.archs)
        if (a.arch == "transxssm" || a.arch == "hybrid-nope") {
          EXPECT_EQ(a.intermediate_size, a.preset_intermediate_size);
          EXPECT_EQ(a.params, m.reference_params);
        }
      // Deterministic: the same inputs give the same widths.
      const study::Matching again = study::match_widths(kArchs, size, base);
      for (size_t i = 0; i < m.archs.size(); ++i) EXPECT_EQ(again.archs[i].intermediate_size, m.archs[i].intermediate_size);
    }
}

TEST(StudyMatch, ImpossibleMatchIsAnError) {
  // A huge Mamba-2 state makes its mixers alone larger than the whole reference: no MLP width can match.
  EXPECT_THROW(study::match_widths({"mamba2"}, "tiny", {{"vocab_size", 256}, {"mamba_d_state", 4096}}), Error);
}
