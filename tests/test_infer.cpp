// The fast inference engine against Model::forward, for every architecture: prefill (whole and in chunks of
// random sizes) gives the same log-probabilities and logits, token-by-token decoding gives the same logits,
// batched decoding of sequences at different positions matches each one alone, forked and restored
// snapshots continue identically, and greedy generation equals argmax of the full forward at every step.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "core/rng.h"
#include "infer/engine.h"
#include "infer/generate.h"
#include "infer/recompute_generate.h"
#include "infer/text_stream.h"
#include "model/model.h"
#include "model_fixtures.h"

using namespace txs;
using txs::test::random_ids;
using txs::test::randomize_weights;

namespace {

// test::small_config at hidden 32, vocabulary 50.
ModelConfig small_config(const std::string& arch) { return test::small_config(arch, 32, 50); }


struct Reference {
  std::vector<float> logprob, logits;  // [T], [T, V]
};

Reference full_forward(Model& m, const std::vector<int32_t>& ids) {
  const int64_t T = int64_t(ids.size()) - 1, V = m.config().vocab_size;
  Reference r;
  r.logprob.resize(size_t(T));
  r.logits.resize(size_t(T * V));
  m.forward(ids.data(), ids.data() + 1, 1, T, r.logprob.data(), r.logits.data());
  return r;
}

double max_diff(const float* a, const float* b, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, double(std::fabs(a[i] - b[i])));
  return m;
}

class InferArch : public ::testing::TestWithParam<std::string> {};

constexpr double kTol = 1e-4;

TEST_P(InferArch, WholePrefillMatchesForward) {
  Model m(small_config(GetParam()));
  randomize_weights(m, 1);
  Rng rng(2);
  const auto ids = random_ids(rng, 41, m.config().vocab_size);
  const Reference ref = full_forward(m, ids);
  const int64_t T = 40, V = m.config().vocab_size;
  InferenceEngine eng(m);
  SequenceState s = eng.new_sequence();
  std::vector<float> lp(static_cast<size_t>(T)), last(static_cast<size_t>(V));
  eng.prefill(s, ids.data(), T, ids.data() + 1, lp.data(), last.data());
  EXPECT_EQ(s.position(), T);
  EXPECT_LT(max_diff(lp.data(), ref.logprob.data(), T), kTol);
  EXPECT_LT(max_diff(last.data(), ref.logits.data() + (T - 1) * V, V), kTol);
  EXPECT_EQ(s.bytes(), sequence_state_bytes(m.config(), T));
  // prefill_each hands out every position's logits.
  SequenceState e = eng.new_sequence();
  int64_t seen = 0;
  double worst = 0;
  eng.prefill_each(e, ids.data(), T, [&](int64_t i, const float* logits) {
    EXPECT_EQ(i, seen++);
    worst = std::max(worst, max_diff(logits, ref.logits.data() + i * V, V));
  });
  EXPECT_EQ(seen, T);
  EXPECT_LT(worst, kTol);
  EXPECT_EQ(e.position(), T);
}

TEST_P(InferArch, ChunkedPrefillOfRandomSizesChangesNothing) {
  Model m(small_config(GetParam()));
  randomize_weights(m, 3);
  Rng rng(4);
  const int64_t T = 40, V = m.config().vocab_size;
  const auto ids = random_ids(rng, T + 1, V);
  const Reference ref = full_forward(m, ids);
  InferenceEngine eng(m);
  for (int trial = 0; trial < 3; ++trial) {
    SequenceState s = eng.new_sequence();
    std::vector<float> lp(static_cast<size_t>(T), 99.0f), last(static_cast<size_t>(V));
    std::vector<int32_t> targets(ids.begin() + 1, ids.end());
    targets[7] = -1;  // an uncounted target gives 0
    for (int64_t at = 0; at < T;) {
      const int64_t n = std::min<int64_t>(T - at, 1 + int64_t(rng.below(trial == 0 ? 3 : 12)));
      eng.prefill(s, ids.data() + at, n, targets.data() + at, lp.data() + at, last.data());
      at += n;
      ASSERT_LT(max_diff(last.data(), ref.logits.data() + (at - 1) * V, V), kTol) << "after " << at << " tokens";
    }
    EXPECT_EQ(lp[7], 0.0f);
    lp[7] = ref.logprob[7];
    EXPECT_LT(max_diff(lp.data(), ref.logprob.data(), T), kTol);
  }
}

TEST_P(InferArch, TokenByTokenDecodeMatchesForward) {
  Model m(small_config(GetParam()));
  randomize_weights(m, 5);
  Rng rng(6);
  const int64_t T = 30, V = m.config().vocab_size;
  const auto ids = random_ids(rng, T + 1, V);
  const Reference ref = full_forward(m, ids);
  InferenceEngine eng(m);
  for (int64_t prompt : {1, 7}) {
    SequenceState s = eng.new_sequence();
    std::vector<float> logits(static_cast<size_t>(V));
    eng.prefill(s, ids.data(), prompt, nullptr, nullptr, logits.data());
    std::vector<SequenceState*> one{&s};
    for (int64_t t = prompt; t < T; ++t) {
      eng.decode(one, &ids[size_t(t)], logits.data());
      ASSERT_LT(max_diff(logits.data(), ref.logits.data() + t * V, V), kTol) << "position " << t;
      // log p(next) from the decoded logits equals the forward's target log-probability.
      double mx = -1e30, sum = 0;
      for (float x : logits) mx = std::max(mx, double(x));
      for (float x : logits) sum += std::exp(double(x) - mx);
      const double lp = double(logits[size_t(ids[size_t(t + 1)])]) - mx - std::log(sum);
      ASSERT_NEAR(lp, ref.logprob[size_t(t)], kTol);
    }
  }
}

TEST_P(InferArch, BatchedDecodeOfDifferentLengthsMatchesEachAlone) {
  Model m(small_config(GetParam()));
  randomize_weights(m, 7);
  Rng rng(8);
  const int64_t V = m.config().vocab_size, steps = 6;
  const std::vector<int64_t> prompts = {3, 11, 1};
  std::vector<std::vector<int32_t>> ids;
  std::vector<Reference> refs;
  for (int64_t p : prompts) {
    ids.push_back(random_ids(rng, p + steps + 1, V));
    refs.push_back(full_forward(m, ids.back()));
  }
  InferenceEngine eng(m);
  std::vector<SequenceState> states;
  for (size_t i = 0; i < prompts.size(); ++i) {
    states.push_back(eng.new_sequence());
    eng.prefill(states[i], ids[i].data(), prompts[i], nullptr, nullptr, nullptr);
  }
  std::vector<SequenceState*> batch;
  for (auto& s : states) batch.push_back(&s);
  std::vector<float> logits(batch.size() * size_t(V));
  for (int64_t k = 0; k < steps; ++k) {
    std::vector<int32_t> next;
    for (size_t i = 0; i < prompts.size(); ++i) next.push_back(ids[i][size_t(prompts[i] + k)]);
    eng.decode(batch, next.data(), logits.data());
    for (size_t i = 0; i < prompts.size(); ++i)
      ASSERT_LT(max_diff(logits.data() + int64_t(i) * V, refs[i].logits.data() + (prompts[i] + k) * V, V), kTol)
          << "sequence " << i << " step " << k;
  }
  // The same sequence twice in one batch would advance it twice: refused.
  std::vector<SequenceState*> twice{&states[0], &states[0]};
  int32_t two[2] = {1, 2};
  EXPECT_THROW(eng.decode(twice, two, logits.data()), Error);
}

TEST_P(InferArch, ForkedAndRestoredSnapshotsContinueIdentically) {
  Model m(small_config(GetParam()));
  randomize_weights(m, 9);
  Rng rng(10);
  const int64_t T = 24, half = 13, V = m.config().vocab_size;
  const auto ids = random_ids(rng, T + 1, V);
  const Reference ref = full_forward(m, ids);
  InferenceEngine eng(m);
  SequenceState s = eng.new_sequence();
  eng.prefill(s, ids.data(), half, nullptr, nullptr, nullptr);
  const std::string path = testing::TempDir() + "/infer_state_" + GetParam() + ".bin";
  eng.save_state(s, path);
  SequenceState fork = s;  // a copy is an independent sequence
  SequenceState loaded = eng.load_state(path);
  EXPECT_EQ(loaded.position(), half);
  EXPECT_EQ(loaded.bytes(), s.bytes());
  std::vector<float> a(static_cast<size_t>(V)), b(static_cast<size_t>(V)), c(static_cast<size_t>(V));
  // Advance the original first: the fork and the restored copy must not see it.
  eng.prefill(s, ids.data() + half, T - half, nullptr, nullptr, a.data());
  eng.prefill(fork, ids.data() + half, T - half, nullptr, nullptr, b.data());
  std::vector<SequenceState*> one{&loaded};
  for (int64_t t = half; t < T; ++t) eng.decode(one, &ids[size_t(t)], c.data());
  const float* want = ref.logits.data() + (T - 1) * V;
  EXPECT_LT(max_diff(a.data(), want, V), kTol);
  EXPECT_LT(max_diff(b.data(), want, V), kTol);
  EXPECT_LT(max_diff(c.data(), want, V), kTol);
  std::filesystem::remove(path);
}

TEST_P(InferArch, GreedyGenerationEqualsArgmaxOfFullForward) {
  Model m(small_config(GetParam()));
  randomize_weights(m, 11);
  Rng rng(12);
  const auto prompt = random_ids(rng, 5, m.config().vocab_size);
  SamplingParams greedy;
  greedy.temperature = 0;
  std::vector<int32_t> slow = prompt;
  generate_recompute(m, slow, 20, greedy, 0);
  InferenceEngine eng(m);
  SequenceState s = eng.new_sequence();
  const auto fast = generate(eng, s, prompt, 20, greedy, 0);
  EXPECT_EQ(std::vector<int32_t>(slow.begin() + 5, slow.end()), fast);
  EXPECT_EQ(s.position(), 25);
  // Sampling: the same seed gives the same tokens, another seed (almost surely) others.
  SamplingParams p;
  p.temperature = 1.0, p.top_k = 20, p.top_p = 0.95;
  SequenceState s1 = eng.new_sequence(), s2 = eng.new_sequence(), s3 = eng.new_sequence();
  const auto r1 = generate(eng, s1, prompt, 30, p, 42), r2 = generate(eng, s2, prompt, 30, p, 42);
  const auto r3 = generate(eng, s3, prompt, 30, p, 43);
  EXPECT_EQ(r1, r2);
  EXPECT_NE(r1, r3);
}

INSTANTIATE_TEST_SUITE_P(AllArchitectures, InferArch,
                         ::testing::Values("transxssm", "transformer", "mamba2", "jamba", "hybrid-conv",
                                           "hybrid-nope"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (auto& ch : n)
                             if (ch == '-') ch = '_';
                           return n;
                         });

TEST(Infer, LongPromptCrossesTheInternalPrefillSplit) {
  ModelConfig c = small_config("transxssm");
  c.max_position_embeddings = 2048;
  Model m(c);
  randomize_weights(m, 13);
  Rng rng(14);
  const int64_t T = InferenceEngine::kMaxChunk + 77, V = c.vocab_size;
  const auto ids = random_ids(rng, T + 1, V);
  std::vector<float> want(static_cast<size_t>(T)), got(static_cast<size_t>(T));
  m.forward(ids.data(), ids.data() + 1, 1, T, want.data());
  InferenceEngine eng(m);
  SequenceState s = eng.new_sequence();
  eng.prefill(s, ids.data(), T, ids.data() + 1, got.data(), nullptr);
  EXPECT_LT(max_diff(got.data(), want.data(), T), kTol);
}

TEST(Infer, GenerationPastTheTrainingLengthKeepsCountingPositions) {
  // max_position_embeddings is 64: decode to position 100 and compare with one forward over all 100 tokens.
  Model m(small_config("hybrid-nope"));
  randomize_weights(m, 15);
  Rng rng(16);
  const int64_t T = 100, V = m.config().vocab_size;
  const auto ids = random_ids(rng, T + 1, V);
  const Reference ref = full_forward(m, ids);
  InferenceEngine eng(m);
  SequenceState s = eng.new_sequence();
  std::vector<float> logits(static_cast<size_t>(V));
  eng.prefill(s, ids.data(), 50, nullptr, nullptr, logits.data());
  std::vector<SequenceState*> one{&s};
  for (int64_t t = 50; t < T; ++t) eng.decode(one, &ids[size_t(t)], logits.data());
  EXPECT_LT(max_diff(logits.data(), ref.logits.data() + (T - 1) * V, V), kTol);
}

TEST(Infer, SnapshotOfAnotherModelOrGarbageIsAOneLineError) {
  Model a(small_config("transxssm")), b(small_config("transxssm"));
  randomize_weights(a, 1);
  randomize_weights(b, 2);
  InferenceEngine ea(a), eb(b);
  SequenceState s = ea.new_sequence();
  const int32_t ids[3] = {1, 2, 3};
  ea.prefill(s, ids, 3, nullptr, nullptr, nullptr);
  const std::string dir = testing::TempDir();
  ea.save_state(s, dir + "/infer_a.bin");
  try {
    eb.load_state(dir + "/infer_a.bin");
    FAIL() << "loading another model's snapshot must fail";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("another model"), std::string::npos) << e.what();
  }
  std::ofstream(dir + "/infer_garbage.bin") << "not a snapshot at all";
  EXPECT_THROW(ea.load_state(dir + "/infer_garbage.bin"), Error);
  // Truncated: the first 40 bytes of a real snapshot.
  {
    std::ifstream in(dir + "/infer_a.bin", std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), {});
    std::ofstream(dir + "/infer_cut.bin", std::ios::binary) << bytes.substr(0, 40);
  }
  try {
    ea.load_state(dir + "/infer_cut.bin");
    FAIL() << "a truncated snapshot must fail";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
  }
  EXPECT_THROW(ea.load_state(dir + "/does_not_exist.bin"), Error);
  // Bad token ids are errors, not crashes.
  const int32_t bad = 1000;
  EXPECT_THROW(ea.prefill(s, &bad, 1, nullptr, nullptr, nullptr), Error);
  std::vector<SequenceState*> one{&s};
  std::vector<float> logits(50);
  EXPECT_THROW(ea.decode(one, &bad, logits.data()), Error);
  for (auto f : {"infer_a.bin", "infer_garbage.bin", "infer_cut.bin"}) std::filesystem::remove(dir + "/" + f);
}

TEST(Infer, TextStreamHoldsBackWhatMayBecomeAStopString) {
  const Tokenizer tok = Tokenizer::from_file(std::string(TRANSXSSM_SHARED_DIR) + "/data/tokenizers/gpt2");
  const std::string text = "Hello world, this is a test of stop strings.";
  const auto ids = tok.encode(text);
  {
    TextStream ts(tok, {"is a t"});
    std::string shown;
    for (int32_t id : ids) {
      shown += ts.push(id);
      // Nothing past the stop is ever shown, even while the stop is still incomplete.
      ASSERT_EQ(text.compare(0, shown.size(), shown), 0);
      ASSERT_LE(shown.size(), text.find("is a t"));
      if (ts.stopped()) break;
    }
    shown += ts.finish();
    EXPECT_TRUE(ts.stopped());
    EXPECT_EQ(shown, text.substr(0, text.find("is a t")));  // "Hello world, this "
  }
  {
    TextStream ts(tok, {"never there"});
    std::string shown;
    for (int32_t id : ids) shown += ts.push(id);
    shown += ts.finish();
    EXPECT_FALSE(ts.stopped());
    EXPECT_EQ(shown, text);
  }
}

TEST(Infer, StatePerSequenceIsAFractionOfTheTransformersKvCache) {
  // Spec shape "tiny": 7 of 8 layers keep a constant state; at 4096 tokens the total is ≤ 1/6 of a
  // Transformer's KV cache of the same size.
  const ModelConfig x = resolve_config("transxssm", "tiny"), t = resolve_config("transformer", "tiny");
  const double ratio = double(sequence_state_bytes(x, 4096)) / double(sequence_state_bytes(t, 4096));
  EXPECT_LT(ratio, 1.0 / 6.0) << ratio;
  EXPECT_EQ(sequence_state_bytes(t, 4096), size_t(8 * 4096 * 2 * 4 * 64 * 4));
}

}  // namespace
