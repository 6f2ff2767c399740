// `transxssm study`: the paper's comparison as one command (src/study/study.h).
#include <CLI/CLI.hpp>
#include <cstdlib>
#include <fmt/format.h>
#include <sstream>

#include "cli/commands.h"
#include "core/error.h"
#include "study/study.h"

namespace txs::cli {

void register_study_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("study", "Reproduction study: train every architecture at matched parameter counts "
                                          "on the same tokens, evaluate, measure speed and memory, write report.md");
  auto o = std::make_shared<study::StudyOptions>();
  auto archs = std::make_shared<std::string>();
  auto lengths = std::make_shared<std::string>();
  auto report_only = std::make_shared<bool>(false);
  const char* env_data = std::getenv("TRANSXSSM_DATA");
  if (env_data) o->data_dir = env_data;
  cmd->add_option("--out", o->out, "study directory (results.json, report.md, runs/, data/)")->required();
  cmd->add_option("--size", o->size, "size preset: tiny 320m 1.3b")->capture_default_str();
  cmd->add_option("--tokens", o->tokens, "training tokens per architecture (default: tiny 2M, 320m 6.4B, 1.3b 26B)");
  cmd->add_option("--archs", *archs, "comma-separated subset of: transxssm transformer mamba2 jamba hybrid-conv hybrid-nope");
  cmd->add_option("--seq-len", o->seq_len, "training sequence length")->capture_default_str();
  cmd->add_option("--batch-size", o->batch_size, "sequences per step")->capture_default_str();
  cmd->add_option("--lr", o->lr, "peak learning rate (default: tiny 3e-3, 320m 1e-3, 1.3b 6e-4)");
  cmd->add_option("--threads", o->threads, "compute threads (default: all cores)");
  cmd->add_option("--precision", o->precision, "fp32 | bf16: training, evaluation and speed measurements")
      ->capture_default_str();
  cmd->add_option("--device", o->device, kDeviceHelp)->capture_default_str();
  cmd->add_option("--data", o->data_dir, "shared data folder (corpora/, eval/, haystack/); env TRANSXSSM_DATA")
      ->capture_default_str();
  cmd->add_option("--train-data", o->train_inputs, "training text files/folders (default: DATA/corpora/gutenberg)");
  cmd->add_option("--tokenizer", o->tokenizer, "use this tokenizer.json instead of training a BPE tokenizer");
  cmd->add_option("--vocab-size", o->vocab_size, "vocabulary of the trained BPE tokenizer")->capture_default_str();
  cmd->add_option("--lengths", *lengths, "sequence lengths of the speed/memory measurements (default 512..16384)");
  cmd->add_option("--timing-steps", o->train_timing_steps, "timed training steps per length")->capture_default_str();
  cmd->add_option("--decode-steps", o->decode_steps, "timed decode steps per length")->capture_default_str();
  cmd->add_option("--tasks", o->tasks, "lm-eval tasks (comma-separated; empty: none)")->capture_default_str();
  cmd->add_option("--eval-limit", o->eval_limit, "items per lm-eval task")->capture_default_str();
  cmd->add_option("--ppl-limit", o->ppl_limit, "WikiText-2 articles / PTB lines for perplexity (0: all)")->capture_default_str();
  cmd->add_option("--needle-depths", o->needle_depths, "needle/passkey depths from 0% to 100%")->capture_default_str();
  cmd->add_option("--val-every", o->val_every, "validation every K steps (0: 10 per run)");
  cmd->add_option("--val-batches", o->val_batches, "batches per validation")->capture_default_str();
  cmd->add_option("--budget-minutes", o->budget_minutes,
                  "after the first architecture, warn (and suggest --tokens) when the estimated total exceeds this");
  cmd->add_option("--seed", o->seed)->capture_default_str();
  cmd->add_flag("--report-only", *report_only, "re-render report.md and the charts from DIR/results.json");
  cmd->callback([=, &app] {
    if (*report_only) {
      study::render_report(o->out);
      fmt::print("wrote {}/report.md\n", o->out);
      return;
    }
    o->archs = split_list(*archs);
    if (!lengths->empty()) {
      o->lengths.clear();
      for (auto& s : split_list(*lengths)) {
        try {
          o->lengths.push_back(std::stoll(s));
        } catch (const std::exception&) {
          fail("--lengths: \"{}\" is not a number", s);
        }
        if (o->lengths.back() < 2) fail("--lengths: {} is too short", s);
      }
    }
    std::string line = "transxssm";
    for (const std::string& a : {std::string("study")}) line += " " + a;
    for (auto* opt : cmd->get_options()) {
      if (opt->count() == 0 || opt->get_lnames().empty()) continue;
      line += " --" + opt->get_lnames().front();
      if (opt->get_type_size() != 0)
        for (auto& r : opt->results()) line += " " + r;
    }
    o->command_line = line;
    study::run_study(*o);
    fmt::print("wrote {}/results.json and {}/report.md\n", o->out, o->out);
  });
}

}  // namespace txs::cli
