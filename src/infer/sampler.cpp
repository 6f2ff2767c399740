#include "infer/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "core/error.h"

namespace txs {

int32_t sample_token(const float* logits, int64_t padded_vocab, const SamplingParams& p, Rng& rng) {
  // Padding ids are masked by never looking at their logits.
  const int64_t vocab = p.real_vocab > 0 ? std::min(p.real_vocab, padded_vocab) : padded_vocab;
  if (vocab <= 0) fail("sample_token: empty vocabulary");
  if (p.temperature < 0 || !(p.top_p > 0 && p.top_p <= 1) || p.top_k < 0)
    fail("sampling: need temperature ≥ 0, 0 < top_p ≤ 1, top_k ≥ 0");
  if (p.temperature == 0) return int32_t(std::max_element(logits, logits + vocab) - logits);
  std::vector<int32_t> order(static_cast<size_t>(vocab));
  std::iota(order.begin(), order.end(), 0);
  // Highest logits first; ties broken by id so that the result does not depend on the sort algorithm.
  auto higher = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  int64_t keep = vocab;
  if (p.top_k > 0 && p.top_k < vocab) {
    keep = p.top_k;
    std::partial_sort(order.begin(), order.begin() + keep, order.end(), higher);
  } else {
    std::sort(order.begin(), order.end(), higher);
  }
  std::vector<double> prob(static_cast<size_t>(keep));
  const double top = logits[order[0]];
  double sum = 0;
  for (int64_t i = 0; i < keep; ++i) sum += prob[size_t(i)] = std::exp((logits[order[size_t(i)]] - top) / p.temperature);
  if (p.top_p < 1) {
    double cum = 0;
    int64_t cut = keep;
    for (int64_t i = 0; i < keep; ++i) {
      cum += prob[size_t(i)] / sum;
      if (cum >= p.top_p) {
        cut = i + 1;
        break;
      }
    }
    keep = cut;
    sum = 0;
    for (int64_t i = 0; i < keep; ++i) sum += prob[size_t(i)];
  }
  double u = rng.uniform() * sum;
  for (int64_t i = 0; i < keep; ++i) {
    u -= prob[size_t(i)];
    if (u < 0) return order[size_t(i)];
  }
  return order[size_t(keep - 1)];
}

}  // namespace txs
