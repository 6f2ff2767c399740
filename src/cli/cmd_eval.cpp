// `transxssm eval`: perplexity, lm-evaluation-harness-style benchmarks and needle-in-a-haystack on a
// checkpoint; JSON results file, Markdown table on stdout, progress on stderr.
#include <CLI/CLI.hpp>
#include <cstdlib>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <iostream>
#include <sstream>

#include "cli/commands.h"
#include "core/error.h"
#include "core/threads.h"
#include "eval/evaluate.h"
#include "model/checkpoint.h"

namespace txs::cli {

void register_eval_commands(CLI::App& app) {
  auto* cmd = app.add_subcommand("eval", "Evaluate a checkpoint: perplexity, multiple-choice and generation "
                                         "benchmarks (lm-evaluation-harness definitions), needle in a haystack");
  struct Args {
    std::string model, tokenizer, tasks, out, data, scorer = "auto", needle_lengths, svg, precision = "fp32", device = "cpu";
    eval::EvalOptions opt;
    int threads = 0;
    int64_t batch_tokens = 4096;
    bool quiet = false;
  };
  auto a = std::make_shared<Args>();
  const char* env_data = std::getenv("TRANSXSSM_DATA");
  a->data = env_data ? env_data : "../shared/data";
  cmd->add_option("--model", a->model, "checkpoint directory")->required();
  cmd->add_option("--tokenizer", a->tokenizer, "tokenizer.json (default: the checkpoint's tokenizer.json)");
  cmd->add_option("--tasks", a->tasks,
                  "comma-separated: arc_easy arc_challenge piqa hellaswag openbookqa winogrande mmlu "
                  "lambada_openai triviaqa wikitext ptb needle passkey ppl:<file>")
      ->required();
  cmd->add_option("--limit", a->opt.limit, "first N items of each task (WikiText: articles, other corpora: lines); 0 = all");
  cmd->add_option("--num-fewshot", a->opt.num_fewshot, "few-shot exemplars (mmlu: from its dev split)");
  cmd->add_option("--out", a->out, "results JSON file");
  cmd->add_option("--data", a->data, "shared data folder (eval/, corpora/, haystack/); env TRANSXSSM_DATA");
  cmd->add_option("--ppl-context", a->opt.ppl_context, "perplexity window in tokens (default: the model's limit)");
  cmd->add_option("--ppl-stride", a->opt.ppl_stride, "new tokens per perplexity window (default: the window)");
  cmd->add_option("--max-gen-toks", a->opt.max_gen_toks, "generation budget of triviaqa (default 256, the harness's)");
  cmd->add_option("--needle-lengths", a->needle_lengths, "comma-separated context lengths (default 1024, 2048, … up to 2× the model's limit)");
  cmd->add_option("--needle-depths", a->opt.needle_depths, "number of depths from 0% to 100%");
  cmd->add_option("--needle-svg", a->svg, "heatmap SVG path (passkey writes <name>_passkey.svg)");
  cmd->add_option("--seed", a->opt.seed, "passkey seed");
  cmd->add_option("--scorer", a->scorer, "auto | model | engine (engine: prefix reuse through the inference engine)");
  cmd->add_option("--batch-tokens", a->batch_tokens, "tokens per forward batch of the model scorer");
  cmd->add_option("--threads", a->threads, "compute threads (default: all cores)");
  cmd->add_option("--precision", a->precision, kPrecisionHelp);
  cmd->add_option("--device", a->device, kDeviceHelp);
  cmd->add_flag("--quiet", a->quiet, "no progress line");
  cmd->callback([a] {
    set_num_threads(a->threads);
    auto model = load_checkpoint(a->model, device_backend(a->device), inference_options(a->precision));
    const std::string tok_path = resolve_checkpoint_tokenizer(a->model, a->tokenizer);
    if (tok_path.empty()) fail("--tokenizer is needed: {} has no tokenizer.json", a->model);
    const Tokenizer tok = Tokenizer::from_file(tok_path);
    eval::EvalOptions opt = a->opt;
    opt.data_dir = a->data;
    opt.needle_svg = a->svg;
    opt.progress = !a->quiet;
    for (auto& s : split_list(a->needle_lengths)) {
      try {
        opt.needle_lengths.push_back(std::stoll(s));
      } catch (const std::exception&) {
        fail("--needle-lengths: \"{}\" is not a number", s);
      }
      if (opt.needle_lengths.back() < 16) fail("--needle-lengths: {} is too short", s);
    }
    if (!std::filesystem::is_directory(opt.data_dir)) fail("data folder {} not found (use --data)", opt.data_dir);
    std::unique_ptr<eval::LogLikelihoodScorer> scorer;
    if (a->scorer == "engine" || a->scorer == "auto") scorer = eval::make_engine_scorer(*model);
    if (!scorer && a->scorer == "engine") fail("this build has no inference engine");
    if (a->scorer != "engine" && a->scorer != "auto" && a->scorer != "model")
      fail("--scorer must be auto, model or engine, got \"{}\"", a->scorer);
    if (!scorer) scorer = std::make_unique<eval::ModelScorer>(*model, a->batch_tokens);
    const auto tasks = split_list(a->tasks);
    if (tasks.empty()) fail("--tasks is empty");
    std::vector<eval::TaskResult> results;
    for (auto& t : tasks) results.push_back(eval::run_task(t, *model, tok, *scorer, opt));
    nlohmann::json settings = {{"model", a->model}, {"tokenizer", tok_path}, {"tokenizer_hash", tok.hash()},
                               {"data", opt.data_dir}, {"limit", opt.limit}, {"num_fewshot", opt.num_fewshot},
                               {"scorer", scorer->name()}, {"threads", num_threads()}};
    if (!a->out.empty()) {
      std::ofstream f(a->out);
      if (!f) fail("cannot write {}", a->out);
      f << eval::results_json(results, settings).dump(2) << "\n";
      if (!f) fail("cannot write {}", a->out);
    }
    std::cout << eval::markdown_table(results);
  });
}

}  // namespace txs::cli
