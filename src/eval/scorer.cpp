// Log-likelihood scoring over Model::forward, and the harness's request construction.
#include "eval/scorer.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/buffer.h"
#include "core/error.h"
#include "tokenizer/unicode.h"

namespace txs::eval {

std::vector<int32_t> model_input(const LoglikRequest& r, int64_t max_len, int64_t* first_scored) {
  if (r.context.empty() || r.continuation.empty()) fail("log-likelihood request with an empty context or continuation");
  const int64_t nc = int64_t(r.continuation.size());
  if (nc > max_len) fail("continuation of {} tokens is longer than the model's {} positions", nc, max_len);
  std::vector<int32_t> whole(r.context);
  whole.insert(whole.end(), r.continuation.begin(), r.continuation.end());
  // (context + continuation)[-(max_len+1):][:-1]
  const int64_t start = std::max<int64_t>(0, int64_t(whole.size()) - (max_len + 1));
  std::vector<int32_t> row(whole.begin() + start, whole.end() - 1);
  *first_scored = int64_t(row.size()) - nc;
  return row;
}

double logprob_of(const float* logits, int64_t vocab, int32_t target, bool* is_argmax) {
  float mx = logits[0];
  int64_t arg = 0;
  for (int64_t v = 1; v < vocab; ++v)
    if (logits[v] > mx) mx = logits[v], arg = v;
  double sum = 0;
  for (int64_t v = 0; v < vocab; ++v) sum += std::exp(double(logits[v]) - mx);
  if (is_argmax) *is_argmax = (arg == target);
  return double(logits[target]) - mx - std::log(sum);
}

ModelScorer::ModelScorer(Model& model, int64_t batch_tokens, int64_t max_len)
    : model_(model), batch_tokens_(batch_tokens), max_len_(max_len > 0 ? max_len : model.config().max_position_embeddings) {
  if (batch_tokens_ < 1) fail("batch size in tokens must be positive, got {}", batch_tokens_);
}

std::vector<LoglikResult> ModelScorer::score(const std::vector<LoglikRequest>& requests, const Progress& progress) {
  const size_t n = requests.size();
  std::vector<LoglikResult> out(n);
  std::vector<std::vector<int32_t>> rows(n);
  std::vector<int64_t> first(n);
  for (size_t i = 0; i < n; ++i) {
    rows[i] = model_input(requests[i], max_len_, &first[i]);
    out[i].tokens = int64_t(requests[i].continuation.size());
  }
  size_t done = 0;
  const int64_t V = model_.config().vocab_size;

  // Greedy-checked requests: one forward_last per continuation token gives the full logits row there.
  std::vector<float> logits(static_cast<size_t>(V));
  for (size_t i = 0; i < n; ++i) {
    if (!requests[i].need_greedy) continue;
    const auto& cont = requests[i].continuation;
    std::vector<int32_t> prefix(rows[i].begin(), rows[i].begin() + first[i] + 1);
    bool greedy = true;
    double lp = 0;
    for (size_t k = 0; k < cont.size(); ++k) {
      model_.forward_last(prefix.data(), int64_t(prefix.size()), logits.data());
      bool am = false;
      lp += logprob_of(logits.data(), V, cont[k], &am);
      greedy = greedy && am;
      if (k + 1 < cont.size()) prefix.push_back(cont[k]);
    }
    out[i].logprob = lp, out[i].is_greedy = greedy;
    if (progress) progress(++done, n);
  }

  // The rest: longest first, packed into right-padded batches (pad id 0, target −1 = not counted).
  std::vector<size_t> order;
  for (size_t i = 0; i < n; ++i)
    if (!requests[i].need_greedy) order.push_back(i);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return rows[a].size() > rows[b].size(); });
  std::vector<int32_t> ids, targets;
  std::vector<float> lp;
  for (size_t b = 0; b < order.size();) {
    const int64_t seq = int64_t(rows[order[b]].size());
    const int64_t batch = std::max<int64_t>(1, std::min<int64_t>(batch_tokens_ / seq, int64_t(order.size() - b)));
    ids.assign(size_t(batch * seq), 0);
    targets.assign(size_t(batch * seq), -1);
    for (int64_t r = 0; r < batch; ++r) {
      const size_t i = order[b + size_t(r)];
      std::copy(rows[i].begin(), rows[i].end(), ids.begin() + r * seq);
      const auto& cont = requests[i].continuation;
      for (size_t k = 0; k < cont.size(); ++k) targets[size_t(r * seq + first[i] + int64_t(k))] = cont[k];
    }
    lp.assign(size_t(batch * seq), 0.f);
    model_.forward(ids.data(), targets.data(), batch, seq, lp.data());
    for (int64_t r = 0; r < batch; ++r) {
      const size_t i = order[b + size_t(r)];
      double s = 0;
      for (size_t k = 0; k < requests[i].continuation.size(); ++k) s += lp[size_t(r * seq + first[i] + int64_t(k))];
      out[i].logprob = s;
    }
    b += size_t(batch);
    done += size_t(batch);
    if (progress) progress(done, n);
  }
  return out;
}

void ModelScorer::greedy_extend(std::vector<int32_t>& ids, int64_t max_new,
                                const std::function<bool(int32_t)>& on_token) {
  if (ids.empty()) fail("generation needs at least one prompt token");
  const int64_t V = model_.config().vocab_size;
  std::vector<float> logits(static_cast<size_t>(V));
  for (int64_t k = 0; k < max_new; ++k) {
    const int64_t T = std::min<int64_t>(int64_t(ids.size()), max_len_);
    model_.forward_last(ids.data() + ids.size() - size_t(T), T, logits.data());
    const int32_t next = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
    ids.push_back(next);
    if (on_token && !on_token(next)) break;
  }
}

LoglikRequest encode_pair(const Tokenizer& tok, const std::string& context, const std::string& continuation) {
  LoglikRequest r;
  if (context.empty()) {
    const int32_t eot = tok.eos_id();
    if (eot < 0) fail("tokenizer {} has no end-of-text token to stand for an empty context", tok.origin());
    r.context = {eot};
    r.continuation = tok.encode(continuation);
  } else {
    // n_spaces = len(context) - len(context.rstrip()): Python's rstrip removes Unicode whitespace
    // (str.isspace: U+00A0, U+2029, U+3000, ...), not only ASCII.
    const size_t keep = unicode::python_rstrip(context).size();
    const std::string ctx = context.substr(0, keep), cont = context.substr(keep) + continuation;
    const auto whole = tok.encode(ctx + cont);
    r.context = tok.encode(ctx);
    // As the harness: the continuation is whole[len(context ids):], even where a merge crosses the cut.
    const size_t nctx = std::min(r.context.size(), whole.size());
    r.continuation.assign(whole.begin() + nctx, whole.end());
    if (r.context.empty()) r.context = {tok.eos_id() >= 0 ? tok.eos_id() : 0};
  }
  if (r.continuation.empty()) fail("continuation {:?} encodes to no tokens after context", continuation);
  return r;
}

std::vector<LoglikRequest> rolling_windows(const std::vector<int32_t>& tokens, int32_t prefix_token, int64_t max_len,
                                           int64_t context_len) {
  if (max_len < 1 || context_len < 1 || context_len > max_len)
    fail("rolling windows need 1 <= context_len ({}) <= max_len ({})", context_len, max_len);
  std::vector<LoglikRequest> out;
  const int64_t n = int64_t(tokens.size());
  if (n == 0) return out;
  const int64_t pred_len = max_len - context_len + 1;
  const int64_t first_len = std::min(max_len, n);
  LoglikRequest first;
  first.context = {prefix_token};
  first.continuation.assign(tokens.begin(), tokens.begin() + first_len);
  out.push_back(std::move(first));
  int64_t predicted = first_len;
  while (predicted < n) {
    const int64_t wlen = std::min(n - predicted, pred_len);
    const int64_t end = predicted + wlen;
    // The model input is tokens[end−max_len−1, end−1); the last wlen of its targets are new.
    LoglikRequest w;
    w.context.assign(tokens.begin() + (end - max_len - 1), tokens.begin() + (end - wlen));
    w.continuation.assign(tokens.begin() + (end - wlen), tokens.begin() + end);
    out.push_back(std::move(w));
    predicted += wlen;
  }
  return out;
}

}  // namespace txs::eval
