// State snapshots (generate --load-state): InferenceEngine::load_state on a tiny hybrid model, then one
// decode step from the loaded state. TRANSXSSM_FUZZ_WRITE_SEED=PATH writes a valid snapshot of this model
// (the seed corpus, fuzz/make_corpus.sh) and exits.
#include <cstdlib>

#include "core/error.h"
#include "fuzz_util.h"
#include "infer/engine.h"
#include "model/config.h"
#include "model/model.h"

namespace {
txs::Model& tiny_model() {
  static txs::Model m(txs::resolve_config(
      "", "",
      {{"arch", "transxssm"}, {"vocab_size", 16}, {"hidden_size", 16}, {"intermediate_size", 16},
       {"num_hidden_layers", 3}, {"num_attention_heads", 2}, {"num_key_value_heads", 1}, {"head_dim", 8},
       {"ssm_state_size", 8}, {"attn_layer_period", 3}, {"attn_layer_offset", 1}, {"ssm_chunk_size", 4},
       {"max_position_embeddings", 64}}));
  static bool initialised = (m.init(1), true);
  (void)initialised;
  return m;
}
txs::InferenceEngine& engine() {
  static txs::InferenceEngine e(tiny_model());
  return e;
}
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (const char* out = std::getenv("TRANSXSSM_FUZZ_WRITE_SEED")) {
    for (int n : {1, 5}) {
      auto s = engine().new_sequence();
      std::vector<int32_t> ids(size_t(n), 3);
      engine().prefill(s, ids.data(), n, nullptr, nullptr, nullptr);
      engine().save_state(s, std::string(out) + "/state_" + std::to_string(n) + ".bin");
    }
    std::exit(0);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fuzz::write_scratch("state.bin", data, size);
  try {
    txs::SequenceState s = engine().load_state(path);
    std::vector<float> logits(size_t(engine().config().vocab_size));
    int32_t id = 1;
    engine().decode({&s}, &id, logits.data());
  } catch (const txs::Error&) {
  }
  return 0;
}
