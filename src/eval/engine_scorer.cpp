// Log-likelihood scoring over the InferenceEngine with prefix reuse: requests are sorted by their model
// input, each distinct context is prefilled once and its state is forked (copied) per continuation, and
// every prefix it shares with the next context (few-shot exemplars) is prefilled once as a checkpoint that
// later contexts fork from while they still start with it.
#include <algorithm>
#include <numeric>

#include "core/error.h"
#include "eval/scorer.h"
#include "infer/engine.h"

namespace txs::eval {

namespace {

// Shorter than this, a shared prefix is not worth a state copy.
constexpr size_t kMinShared = 16;

size_t common_prefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  const size_t n = std::min(a.size(), b.size());
  size_t i = 0;
  while (i < n && a[i] == b[i]) ++i;
  return i;
}

class EngineScorer : public LogLikelihoodScorer {
 public:
  EngineScorer(Model& model, int64_t max_len)
      : engine_(model), max_len_(max_len > 0 ? max_len : model.config().max_position_embeddings) {}
  int64_t max_length() const override { return max_len_; }
  const char* name() const override { return "engine"; }

  std::vector<LoglikResult> score(const std::vector<LoglikRequest>& requests, const Progress& progress) override {
    const size_t n = requests.size();
    const int64_t V = engine_.config().vocab_size;
    std::vector<LoglikResult> out(n);
    // prefix[i]: the tokens fed before the first continuation token is predicted.
    std::vector<std::vector<int32_t>> prefix(n);
    for (size_t i = 0; i < n; ++i) {
      int64_t first = 0;
      auto row = model_input(requests[i], max_len_, &first);
      prefix[i].assign(row.begin(), row.begin() + first + 1);
      out[i].tokens = int64_t(requests[i].continuation.size());
    }
    std::vector<size_t> order(n);
    std::iota(order.begin(), order.end(), size_t(0));
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return prefix[a] < prefix[b]; });

    // Checkpoints along the current context: nested prefixes (len, state after them, logits after them).
    // In sorted order, a checkpoint stays useful exactly while it is a prefix of the next context too.
    struct Checkpoint {
      size_t len;
      SequenceState state;
      std::vector<float> logits;
    };
    std::vector<Checkpoint> stack;
    std::vector<float> logits(static_cast<size_t>(V));
    std::vector<float> lp;
    const std::vector<int32_t>* prev = nullptr;
    size_t done = 0;
    for (size_t g = 0; g < n;) {
      const auto& P = prefix[order[g]];
      size_t g_end = g + 1;
      while (g_end < n && prefix[order[g_end]] == P) ++g_end;
      const size_t keep = prev ? common_prefix(*prev, P) : 0;
      while (!stack.empty() && stack.back().len > keep) stack.pop_back();
      // A prefix shared with the next context is prefilled once, as a new checkpoint.
      if (g_end < n) {
        const size_t L = std::min(common_prefix(P, prefix[order[g_end]]), P.size() - 1);
        const size_t base = stack.empty() ? 0 : stack.back().len;
        if (L >= kMinShared && L >= base + kMinShared) {
          Checkpoint c{L, stack.empty() ? engine_.new_sequence() : stack.back().state, std::vector<float>(size_t(V))};
          engine_.prefill(c.state, P.data() + base, int64_t(L - base), nullptr, nullptr, c.logits.data());
          stack.push_back(std::move(c));
        }
      }
      // State after P: fork the deepest checkpoint and feed the rest.
      SequenceState state = stack.empty() ? engine_.new_sequence() : stack.back().state;
      const size_t have = stack.empty() ? 0 : stack.back().len;
      if (have < P.size())
        engine_.prefill(state, P.data() + have, int64_t(P.size() - have), nullptr, nullptr, logits.data());
      else
        logits = stack.back().logits;
      prev = &P;

      for (size_t k = g; k < g_end; ++k) {
        const size_t i = order[k];
        const auto& cont = requests[i].continuation;
        bool greedy = false;
        double s = logprob_of(logits.data(), V, cont[0], &greedy);
        if (cont.size() > 1) {
          SequenceState fork = state;
          if (requests[i].need_greedy) {
            // One decode step per token: the full logits show whether each token is the argmax.
            std::vector<SequenceState*> seqs{&fork};
            std::vector<float> step(static_cast<size_t>(V));
            for (size_t t = 1; t < cont.size(); ++t) {
              engine_.decode(seqs, &cont[t - 1], step.data());
              bool am = false;
              s += logprob_of(step.data(), V, cont[t], &am);
              greedy = greedy && am;
            }
          } else {
            lp.assign(cont.size() - 1, 0.f);
            engine_.prefill(fork, cont.data(), int64_t(cont.size() - 1), cont.data() + 1, lp.data(), nullptr);
            for (float v : lp) s += v;
          }
        }
        out[i].logprob = s;
        out[i].is_greedy = requests[i].need_greedy && greedy;
        if (progress) progress(++done, n);
      }
      g = g_end;
    }
    return out;
  }

  void greedy_extend(std::vector<int32_t>& ids, int64_t max_new, const std::function<bool(int32_t)>& on_token) override {
    if (ids.empty()) fail("generation needs at least one prompt token");
    const int64_t V = engine_.config().vocab_size;
    const int64_t T = std::min<int64_t>(int64_t(ids.size()), max_len_);
    SequenceState s = engine_.new_sequence();
    std::vector<float> logits(static_cast<size_t>(V));
    engine_.prefill(s, ids.data() + ids.size() - size_t(T), T, nullptr, nullptr, logits.data());
    std::vector<SequenceState*> seqs{&s};
    for (int64_t k = 0; k < max_new; ++k) {
      const int32_t next = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
      ids.push_back(next);
      if (on_token && !on_token(next)) break;
      if (k + 1 < max_new) engine_.decode(seqs, &next, logits.data());
    }
  }

 private:
  InferenceEngine engine_;
  int64_t max_len_;
};

}  // namespace

std::unique_ptr<LogLikelihoodScorer> make_engine_scorer(Model& model, int64_t max_len) {
  return std::make_unique<EngineScorer>(model, max_len);
}

}  // namespace txs::eval
