#include "infer/recompute_generate.h"

#include <algorithm>

#include "core/buffer.h"
#include "core/error.h"

namespace txs {

void generate_recompute(Model& model, std::vector<int32_t>& ids, int64_t max_new, const SamplingParams& params,
                        uint64_t seed, const std::function<bool(int32_t)>& on_token) {
  if (ids.empty()) fail("generate: the prompt must hold at least one token");
  const int64_t V = model.config().vocab_size, window = model.config().max_position_embeddings;
  Rng rng(seed);
  std::vector<float> logits;
  for (int64_t n = 0; n < max_new; ++n) {
    const int64_t T = std::min<int64_t>(int64_t(ids.size()), window);
    const int32_t* ctx = ids.data() + ids.size() - size_t(T);
    logits.resize(size_t(V));
    model.forward_last(ctx, T, logits.data());
    const int32_t next = sample_token(logits.data(), V, params, rng);
    ids.push_back(next);
    if (on_token && !on_token(next)) break;
  }
}

}  // namespace txs
