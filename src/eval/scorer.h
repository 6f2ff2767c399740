// Log-likelihood scoring in the sense of EleutherAI's lm-evaluation-harness: a request is a pair
// (context ids, continuation ids) and its answer is log P(continuation | context) summed over the
// continuation's tokens, plus whether greedy decoding would have produced the continuation exactly.
// Two implementations give the same numbers: one over Model::forward (right-padded batches), one over
// the InferenceEngine (each distinct context prefilled once, its state forked per continuation).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace txs::eval {

struct LoglikRequest {
  std::vector<int32_t> context;       // never empty (the harness puts <|endoftext|> before an empty context)
  std::vector<int32_t> continuation;  // never empty
  bool need_greedy = false;           // is_greedy costs extra logits work; ask only when the metric uses it
};

struct LoglikResult {
  double logprob = 0.0;  // Σ log p(continuation token | everything before it)
  bool is_greedy = false;  // every continuation token was the argmax (only filled when need_greedy)
  int64_t tokens = 0;      // continuation tokens scored
};

// Progress callback: (requests done, requests total).
using Progress = std::function<void(size_t, size_t)>;

class LogLikelihoodScorer {
 public:
  virtual ~LogLikelihoodScorer() = default;
  virtual std::vector<LoglikResult> score(const std::vector<LoglikRequest>& requests, const Progress& progress = {}) = 0;
  // Longest row the model sees; longer context+continuation rows are cut from the left, as the harness does.
  virtual int64_t max_length() const = 0;
  virtual const char* name() const = 0;
  // Greedy decoding for generation tasks: appends up to max_new argmax tokens to `ids` (the model sees the
  // last max_length() of them); on_token sees each new id and returns false to stop.
  virtual void greedy_extend(std::vector<int32_t>& ids, int64_t max_new, const std::function<bool(int32_t)>& on_token) = 0;
};

// The harness's truncation: the model input is (context + continuation)[-(max_len+1):][:-1] and the
// last |continuation| positions are scored. Returns the input row; *first_scored = index of the first
// position whose next token is a continuation token.
std::vector<int32_t> model_input(const LoglikRequest& r, int64_t max_len, int64_t* first_scored);

// Over Model::forward: requests sorted by length, packed into right-padded batches of at most
// `batch_tokens` tokens (padding sits after every scored position, so a causal model never sees it).
// Requests that need is_greedy are scored with forward_last per continuation token instead.
class ModelScorer : public LogLikelihoodScorer {
 public:
  explicit ModelScorer(Model& model, int64_t batch_tokens = 4096, int64_t max_len = 0);
  std::vector<LoglikResult> score(const std::vector<LoglikRequest>& requests, const Progress& progress = {}) override;
  int64_t max_length() const override { return max_len_; }
  const char* name() const override { return "model"; }
  void greedy_extend(std::vector<int32_t>& ids, int64_t max_new, const std::function<bool(int32_t)>& on_token) override;

 private:
  Model& model_;
  int64_t batch_tokens_, max_len_;
};

// Over the InferenceEngine, with prefix reuse (nullptr when the engine is not built into this binary).
std::unique_ptr<LogLikelihoodScorer> make_engine_scorer(Model& model, int64_t max_len = 0);

// --- Request construction, as the harness does it -------------------------------------------------------

// Harness `_encode_pair`: trailing whitespace of the context (what Python's str.rstrip() removes: every
// Unicode space, U+00A0 and U+3000 included) moves to the front of the continuation; the
// continuation's ids are encode(context + continuation) minus the ids of encode(context). An empty
// context becomes [eot] and the continuation is encoded alone.
LoglikRequest encode_pair(const Tokenizer& tok, const std::string& context, const std::string& continuation);

// Harness `get_rolling_token_windows` + `make_disjoint_window`: windows of at most max_len predicted
// tokens, the first preceded by `prefix_token`; each window's context is the `context_len` − 1 tokens
// before it (context_len = 1: disjoint windows, the harness default). Every token is predicted exactly once.
std::vector<LoglikRequest> rolling_windows(const std::vector<int32_t>& tokens, int32_t prefix_token, int64_t max_len,
                                           int64_t context_len = 1);

// log-softmax of one row of logits at `target`, and whether target is the (first) argmax.
double logprob_of(const float* logits, int64_t vocab, int32_t target, bool* is_argmax);

}  // namespace txs::eval
