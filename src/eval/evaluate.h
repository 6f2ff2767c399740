// Runs evaluation tasks on a model and reports them: a JSON results file (per task: metric, value,
// standard error, n, settings), a Markdown table, and a one-line progress display on stderr.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "eval/scorer.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace txs::eval {

struct EvalOptions {
  std::string data_dir;        // shared/data (holds eval/, corpora/, haystack/)
  int64_t limit = 0;           // first N items per task (WikiText: articles; other corpora: lines); 0 = all
  int num_fewshot = 0;         // mmlu only
  int64_t ppl_context = 0;     // perplexity window in tokens; 0 = the model's max_position_embeddings
  int64_t ppl_stride = 0;      // new tokens predicted per window; 0 = the window (the harness's disjoint windows)
  int64_t max_gen_toks = 256;  // triviaqa generation budget (the harness's default max_gen_toks)
  std::vector<int64_t> needle_lengths;  // context lengths; empty = 1K doubling up to 2× the model's limit
  int needle_depths = 11;      // 0%, 10%, …, 100%
  std::string needle_svg;      // heatmap path for needle (and passkey); empty = none
  uint64_t seed = 1234;        // passkey digits
  bool progress = true;
};

struct Metric {
  std::string name;
  double value = 0.0;
  double stderr_ = -1.0;  // < 0: none (written as null)
};

struct TaskResult {
  std::string task;
  std::vector<Metric> metrics;
  int64_t n = 0;  // items (documents for perplexity)
  double seconds = 0.0;
  nlohmann::json settings = nlohmann::json::object();
  nlohmann::json extra = nlohmann::json::object();  // per-task details (needle grid)
};

// Every task name `run_task` knows.
const std::vector<std::string>& task_names();

// name: arc_easy arc_challenge piqa hellaswag openbookqa winogrande mmlu lambada_openai triviaqa
// wikitext ptb needle passkey, or ppl:<text file>.
TaskResult run_task(const std::string& name, Model& model, const Tokenizer& tok, LogLikelihoodScorer& scorer,
                    const EvalOptions& opt);

// Multiple-choice scoring from log-likelihoods (exposed for tests): pred = argmax_k ll[k] (acc) and
// argmax_k ll[k] / len(choice_k) in characters (acc_norm); ties go to the first choice, as numpy's argmax.
int argmax_choice(const std::vector<double>& ll);
int argmax_choice_norm(const std::vector<double>& ll, const std::vector<std::string>& choices);
// Harness mean_stderr: sample standard deviation / sqrt(n).
double mean_stderr(const std::vector<double>& x);

std::string markdown_table(const std::vector<TaskResult>& results);
nlohmann::json results_json(const std::vector<TaskResult>& results, const nlohmann::json& run_settings);

// Heatmap of a needle grid (rows: depth %, columns: context length, cell: score in [0, 1]) as SVG.
std::string heatmap_svg(const std::string& title, const std::vector<int64_t>& lengths, const std::vector<double>& depths,
                        const std::vector<std::vector<double>>& score);

}  // namespace txs::eval
