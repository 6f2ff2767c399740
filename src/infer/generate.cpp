#include "infer/generate.h"

#include <chrono>

#include "core/error.h"

namespace txs {

static double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::vector<int32_t> generate(InferenceEngine& engine, SequenceState& seq, const std::vector<int32_t>& prompt,
                              int64_t max_new, const SamplingParams& params, uint64_t seed,
                              const std::function<bool(int32_t)>& on_token, GenerationStats* stats,
                              const std::vector<float>* resume_logits) {
  const int64_t V = engine.config().vocab_size;
  std::vector<float> logits(static_cast<size_t>(V));
  GenerationStats st;
  auto t0 = std::chrono::steady_clock::now();
  if (!prompt.empty()) {
    engine.prefill(seq, prompt.data(), int64_t(prompt.size()), nullptr, nullptr, logits.data());
  } else if (resume_logits && int64_t(resume_logits->size()) == V) {
    logits = *resume_logits;
  } else {
    fail("generate: the prompt must hold at least one token");
  }
  st.prompt_tokens = int64_t(prompt.size());
  st.prefill_seconds = seconds_since(t0);
  Rng rng(seed);
  std::vector<int32_t> out;
  t0 = std::chrono::steady_clock::now();
  std::vector<SequenceState*> one{&seq};
  for (int64_t n = 0; n < max_new; ++n) {
    const int32_t next = sample_token(logits.data(), V, params, rng);
    out.push_back(next);
    engine.decode(one, &next, logits.data());  // fed even when it is the last: seq then holds every token
    if (on_token && !on_token(next)) break;
  }
  st.new_tokens = int64_t(out.size());
  st.decode_seconds = seconds_since(t0);
  if (stats) *stats = st;
  return out;
}

}  // namespace txs
