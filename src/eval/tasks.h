// Loaders and prompt construction for the evaluation sets in shared/data/eval, following the
// lm-evaluation-harness task definitions (see shared/data/README.md for each file's format).
// A malformed record is a txs::Error naming the file and line.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace txs::eval {

// One multiple-choice item scored by log-likelihood: choice k is the request
// (contexts[k], continuations[k]); acc_norm divides by the length of choices[k] in characters.
struct McItem {
  std::vector<std::string> contexts;       // one per choice (winogrande's partial scoring) or the same one
  std::vector<std::string> continuations;  // target_delimiter + choice (or the text after the blank)
  std::vector<std::string> choices;        // the choice strings the harness measures for acc_norm
  int gold = 0;
};

struct McTask {
  std::string name, file;
  std::vector<McItem> items;
  bool has_acc_norm = true;
};

// Multiple-choice tasks: arc_easy, arc_challenge, piqa, hellaswag, openbookqa, winogrande, mmlu.
// num_fewshot is honoured by mmlu only (its exemplars: the first dev items of the same subject, the item
// itself left out); the other files have no training split to draw exemplars from.
McTask load_mc_task(const std::string& name, const std::string& eval_dir, int num_fewshot = 0);
bool is_mc_task(const std::string& name);

struct LambadaItem {
  std::string context, target;  // text.rsplit(" ", 1): context, " " + last word
};
std::vector<LambadaItem> load_lambada(const std::string& path);

struct TriviaItem {
  std::string context;               // "Question: <q>\nAnswer:"
  std::vector<std::string> aliases;  // every accepted answer
};
std::vector<TriviaItem> load_triviaqa(const std::string& path);

// Harness triviaqa scoring: the generation loses its leading whitespace (remove_whitespace filter), then
// both sides are lower-cased and stripped of ASCII punctuation (exact_match with ignore_case and
// ignore_punctuation) and compared for equality with any alias.
std::string normalize_triviaqa(const std::string& s);
bool triviaqa_match(const std::string& generation, const std::vector<std::string>& aliases);

// Documents of a perplexity corpus: WikiText files split into articles at top-level " = Title = " lines,
// any other file as one document.
std::vector<std::string> load_documents(const std::string& path);

// Harness hellaswag `preprocess`: strip, " [title]" → ". ", drop "[...]" tags, double spaces → one.
std::string hellaswag_preprocess(const std::string& text);

// Number of Unicode code points of UTF-8 text (Python's len()).
int64_t utf8_length(const std::string& s);

std::string read_text_file(const std::string& path);

}  // namespace txs::eval
