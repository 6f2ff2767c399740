// Loaders and prompt construction for the evaluation sets in shared/data/eval, following the
// lm-evaluation-harness task definitions (see shared/data/README.md for each file's format).
// A malformed record is a txs::Error naming the file and line.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
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
// num_fewshot is honoured by mmlu only: its exemplars are the first num_fewshot dev items of the same subject
// after every item equal to the question (itself and any duplicate) is left out, as the harness's first_n
// sampler does when the few-shot split is the evaluated one; fewer than num_fewshot left is an error. The
// other files have no training split to draw exemplars from.
// limit > 0 keeps the first `limit` items (and builds, and checks, the few-shot prompts of those only, as the
// harness does for the documents it evaluates).
McTask load_mc_task(const std::string& name, const std::string& eval_dir, int num_fewshot = 0, int64_t limit = 0);
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

// Harness triviaqa scoring: the generation is stripped on both sides (remove_whitespace filter: Python's
// str.strip, Unicode whitespace), then both it and each alias are lower-cased (str.lower: full Unicode
// mapping, through ICU) and stripped of ASCII punctuation (exact_match with ignore_case and
// ignore_punctuation) and compared for equality; any alias may match.
std::string normalize_triviaqa(const std::string& s);
bool triviaqa_match(const std::string& generation, const std::vector<std::string>& aliases);

// Documents of a perplexity corpus: WikiText files split into pages as EleutherAI/wikitext_document_level
// does (the harness's wikitext data set: a page starts at each top-level " = Title = " line and is its lines
// joined with "\n"), any other file as one document.
std::vector<std::string> load_documents(const std::string& path);
// The page-start rule: line.replace("= = =", "===").replace("= =", "==").strip() starts with "= " and
// ends with " =".
bool is_wikitext_heading(std::string_view line);

// Harness wikitext `wikitext_detokenizer` (lm_eval/tasks/wikitext/preprocess_wikitext.py), applied to each
// page before it is scored.
std::string wikitext_detokenize(const std::string& page);
// len(re.split(r"\s+", s)) in Python: the harness's word count for word_perplexity (taken on the page
// before detokenisation). Leading/trailing whitespace adds an empty word, as in Python.
int64_t python_split_count(std::string_view s);
// Python's s.replace(from, to).
std::string replace_all(std::string_view s, std::string_view from, std::string_view to);

// Harness hellaswag `preprocess`: strip, " [title]" → ". ", drop "[...]" tags, double spaces → one.
std::string hellaswag_preprocess(const std::string& text);

// Number of Unicode code points of UTF-8 text (Python's len()).
int64_t utf8_length(const std::string& s);

std::string read_text_file(const std::string& path);

}  // namespace txs::eval
