// `transxssm study`: the paper's comparison as one command. Trains the chosen architectures at matched
// parameter counts (study/match.h) on the same token shards (a BPE tokenizer and shards made by the
// tokenizer trainer and `prepare` machinery), each as an ordinary resumable training run; then measures
// per architecture validation loss/perplexity, WikiText-2 and PTB perplexity, lm-eval tasks, needle and
// passkey retrieval (src/eval), training / prefill / decode tokens/s and state memory against sequence length
// (study/measure.h); writes DIR/results.json and renders DIR/report.md (+ SVG charts) from it alone
// (study/report.h). Every phase leaves its result on disk, so a rerun continues where the last one stopped.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace txs::study {

struct StudyOptions {
  std::string out;                              // study directory
  std::string size = "tiny";
  std::vector<std::string> archs;               // empty: all six
  std::string data_dir = "../shared/data";      // eval/, corpora/, haystack/
  std::vector<std::string> train_inputs;        // empty: DATA/corpora/gutenberg
  std::string tokenizer;                        // existing tokenizer.json; empty: train a BPE one on the inputs
  int64_t vocab_size = 8192;                    // of the trained tokenizer
  int64_t tokens = 0;                           // training tokens per architecture (0: size default)
  int64_t seq_len = 512, batch_size = 8;
  double lr = 0;                                // 0: size default
  int64_t val_every = 0;                        // 0: 10 validations per run
  int64_t val_batches = 8;
  std::vector<int64_t> lengths = {512, 1024, 2048, 4096, 8192, 16384};  // throughput / state memory
  int train_timing_steps = 2, decode_steps = 8;
  std::string tasks = "arc_easy,arc_challenge,piqa,hellaswag,winogrande,openbookqa,lambada_openai";
  int64_t eval_limit = 200;                     // items per lm-eval task
  int64_t ppl_limit = 0;                        // WikiText-2 articles / PTB lines (0: all)
  int needle_depths = 5;
  double budget_minutes = 0;                    // warn (with a suggested --tokens) when the estimate exceeds it
  int threads = 0;
  std::string precision = "fp32";               // of training, evaluation and the speed measurements
  std::string device = "cpu";                   // where they compute (cpu | cuda)
  uint64_t seed = 1;
  std::string command_line;                     // recorded in results.json
};

// Runs (or continues) the whole study and renders the report.
void run_study(const StudyOptions& options);

// Renders DIR/report.md and its charts from DIR/results.json alone.
void render_report(const std::string& dir);

}  // namespace txs::study
