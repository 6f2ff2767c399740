#include "study/study.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <sstream>
#include <thread>

#include "core/error.h"
#include "core/threads.h"
#include "data/prepare.h"
#include "eval/evaluate.h"
#include "model/checkpoint.h"
#include "model/config.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "study/match.h"
#include "study/measure.h"
#include "tokenizer/bpe_trainer.h"
#include "tokenizer/tokenizer.h"
#include "train/checkpointing.h"
#include "train/plot.h"
#include "train/progress.h"
#include "train/train_setup.h"
#include "train/trainer.h"

namespace fs = std::filesystem;

namespace txs::study {

namespace {

const std::vector<std::string> kAllArchs = {"transxssm", "transformer", "mamba2", "jamba", "hybrid-conv", "hybrid-nope"};

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

void say(const std::string& line) {
  std::fprintf(stderr, "study: %s\n", line.c_str());
  std::fflush(stderr);
}

nlohmann::json read_json_if(const fs::path& p) {
  if (!fs::exists(p)) return nullptr;
  return read_json_file(p.string());
}

void write_json(const fs::path& p, const nlohmann::json& j) { write_file_atomic(p.string(), j.dump(2) + "\n"); }

struct SizeDefaults {
  int64_t tokens;
  double lr;
};
SizeDefaults size_defaults(const std::string& size) {
  if (size == "tiny") return {2'000'000, 3e-3};
  if (size == "320m") return {6'400'000'000, 1e-3};  // about 20 tokens per parameter
  if (size == "1.3b") return {26'000'000'000, 6e-4};
  fail("study: unknown size '{}' (expected tiny, 320m or 1.3b)", size);
}

// Needle/passkey context lengths: 1×, 2× and 4× the training length (at least 256 tokens, so the needle,
// question and answer fit beside some haystack).
std::vector<int64_t> needle_lengths(int64_t seq_len) {
  std::vector<int64_t> v;
  for (int64_t m : {1, 2, 4}) {
    const int64_t L = std::max<int64_t>(256, m * seq_len);
    if (v.empty() || v.back() != L) v.push_back(L);
  }
  return v;
}

nlohmann::json task_json(const eval::TaskResult& r) {
  nlohmann::json m = nlohmann::json::object();
  for (auto& x : r.metrics)
    m[x.name] = {{"value", std::isfinite(x.value) ? nlohmann::json(x.value) : nlohmann::json(nullptr)},
                 {"stderr", x.stderr_ >= 0 && std::isfinite(x.stderr_) ? nlohmann::json(x.stderr_) : nlohmann::json(nullptr)}};
  return {{"metrics", m}, {"n", r.n}, {"seconds", r.seconds}, {"settings", r.settings}, {"extra", r.extra}};
}

// Loss curve from metrics.jsonl, at most ~300 training points (every k-th) plus every validation point.
nlohmann::json curve_json(const fs::path& metrics) {
  if (!fs::exists(metrics)) return nullptr;
  const LossCurve c = read_metrics(metrics.string());
  const auto ema = smooth_ema(c.train);
  const size_t k = std::max<size_t>(1, ema.size() / 300);
  nlohmann::json tr = nlohmann::json::array(), va = nlohmann::json::array();
  for (size_t i = 0; i < ema.size(); ++i)
    if (i % k == 0 || i + 1 == ema.size()) tr.push_back({ema[i].first, ema[i].second});
  for (auto& [s, l] : c.val) va.push_back({s, l});
  return {{"train_ema", tr}, {"val", va}};
}

// Training compute seconds of a run, from its metrics (each step's tokens / tokens_per_s): survives resumes.
double train_seconds(const fs::path& metrics, int64_t tokens_per_step) {
  std::ifstream in(metrics);
  double s = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_object() && j.contains("tokens_per_s") && j["tokens_per_s"].is_number()) {
      const double tps = j["tokens_per_s"].get<double>();
      if (tps > 0) s += double(tokens_per_step) / tps;
    }
  }
  return s;
}

}  // namespace

void run_study(const StudyOptions& o_in) {
  StudyOptions o = o_in;
  if (o.out.empty()) fail("study: --out must name a directory");
  if (o.archs.empty()) o.archs = kAllArchs;
  for (auto& a : o.archs)
    if (std::find(kAllArchs.begin(), kAllArchs.end(), a) == kAllArchs.end())
      fail("study: unknown architecture '{}'", a);
  const SizeDefaults def = size_defaults(o.size);
  if (o.tokens <= 0) o.tokens = def.tokens;
  if (o.lr <= 0) o.lr = def.lr;
  if (o.seq_len < 16 || o.batch_size < 1) fail("study: --seq-len must be ≥ 16 and --batch-size ≥ 1");
  (void)backend_for(parse_device(o.device));  // an unusable --device fails now, not after the tokenizer is trained
  if (o.train_inputs.empty()) o.train_inputs = {(fs::path(o.data_dir) / "corpora" / "gutenberg").string()};
  set_num_threads(o.threads);
  const double t_start = now_s();
  const fs::path out(o.out);
  fs::create_directories(out / "runs");

  // ---- 1. Tokenizer and token shards (the `tokenizer train` and `prepare` machinery) ----------------------
  const fs::path data_dir = out / "data";
  fs::create_directories(data_dir);
  const std::string tok_path = o.tokenizer.empty() ? (data_dir / "tokenizer.json").string() : o.tokenizer;
  const fs::path shards = data_dir / "shards";
  nlohmann::json data_info = read_json_if(data_dir / "prepared.json");
  if (data_info.is_null()) {
    const auto inputs = expand_inputs(o.train_inputs);
    if (inputs.empty()) fail("study: no training text found in {}", fmt::join(o.train_inputs, ", "));
    if (o.tokenizer.empty()) {
      say(fmt::format("training a {}-token BPE tokenizer on {} files", o.vocab_size, inputs.size()));
      BpeTrainerOptions bo;
      bo.vocab_size = o.vocab_size;
      const BpeTrainerResult r = train_bpe(inputs, bo);
      write_file_atomic(tok_path, r.tokenizer.dump(2) + "\n");
    }
    const Tokenizer tok = Tokenizer::from_file(tok_path);
    say(fmt::format("tokenizing {} files into {}", inputs.size(), shards.string()));
    PrepareOptions po;
    po.inputs = o.train_inputs;
    po.out_dir = shards.string();
    po.tokenizer_path = tok_path;
    const PrepareResult pr = prepare(tok, po);
    data_info = {{"tokenizer", tok_path}, {"tokenizer_hash", tok.hash()}, {"vocab_size", tok.vocab_size()},
                 {"inputs", o.train_inputs}, {"files", inputs.size()}, {"input_bytes", pr.input_bytes},
                 {"train_tokens", pr.train_tokens}, {"val_tokens", pr.val_tokens}, {"shards", shards.string()}};
    write_json(data_dir / "prepared.json", data_info);
  }
  const int64_t vocab = data_info["vocab_size"].get<int64_t>();
  const int64_t padded_vocab = (vocab + 63) / 64 * 64;

  // ---- 2. Matched widths ----------------------------------------------------------------------------------
  const nlohmann::json base = {{"vocab_size", padded_vocab}, {"max_position_embeddings", o.seq_len}};
  const Matching matching = match_widths(o.archs, o.size, base);
  for (auto& m : matching.archs)
    say(fmt::format("{:<12} intermediate_size {:>6} (preset {}), {} parameters ({:+.3f}% vs {})", m.arch,
                    m.intermediate_size, m.preset_intermediate_size, m.params, 100 * m.rel_diff,
                    matching.reference_arch));

  const int64_t tokens_per_step = o.seq_len * o.batch_size;
  const int64_t steps = std::max<int64_t>(1, (o.tokens + tokens_per_step - 1) / tokens_per_step);
  const int64_t val_every = o.val_every > 0 ? o.val_every : std::max<int64_t>(1, steps / 10);
  const int n = int(o.archs.size());
  nlohmann::json commands = nlohmann::json::array();
  commands.push_back(o.command_line);
  commands.push_back(fmt::format("transxssm study --report-only --out {}", o.out));

  // ---- 3. Per architecture: train (resumable), evaluate, measure -------------------------------------------
  bool estimated = false;
  for (int i = 0; i < n; ++i) {
    const MatchedArch& m = matching.archs[size_t(i)];
    const std::string& arch = m.arch;
    const fs::path run_dir = out / "runs" / arch;
    const std::string label = fmt::format("study {}/{} {}", i + 1, n, arch);
    const double t_arch = now_s();
    nlohmann::json timing = read_json_if(run_dir / "study_timing.json");
    if (timing.is_null()) timing = nlohmann::json::object();

    // Training: an ordinary run in runs/<arch>; an existing checkpoint is resumed, a finished one skipped.
    TrainRequest req;
    req.device = o.device;
    bool done = false;
    if (fs::exists(run_dir / "checkpoint" / "train_state.safetensors")) {
      const ResumePoint rp = find_resume_point(run_dir.string());
      if (rp.step >= steps) {
        done = true;
        say(fmt::format("[{}/{}] {}: already trained ({} steps), skipped", i + 1, n, arch, rp.step));
      } else {
        say(fmt::format("[{}/{}] {}: resuming at step {} of {}", i + 1, n, arch, rp.step, steps));
        req.resume_dir = run_dir.string();
        req.flags.steps = steps;
        req.given.insert("steps");
      }
    } else {
      say(fmt::format("[{}/{}] {}: training {} steps ({} tokens)", i + 1, n, arch, steps, steps * tokens_per_step));
      TrainOptions& t = req.flags;
      t.arch = arch;
      t.size = o.size;
      t.model_overrides = m.overrides;
      t.data = {shards.string()};
      t.tokenizer = tok_path;
      t.steps = steps;
      t.seq_len = o.seq_len;
      t.batch_size = o.batch_size;
      t.schedule.lr = o.lr;
      t.schedule.min_lr = o.lr / 10;
      t.schedule.warmup = std::min<int64_t>(100, steps / 10);
      t.seed = o.seed;
      t.out = run_dir.string();
      t.save_every = steps >= 20 ? steps / 10 : 0;
      t.val_every = val_every;
      t.val_batches = o.val_batches;
      t.threads = o.threads;
      t.precision = o.precision;
    }
    if (!done) {
      const double t0 = now_s();
      const TrainResult r = train(req, RunRole{}, label);
      (void)r;
      timing["train_s_last_invocation"] = now_s() - t0;
    }
    {  // the equivalent plain commands of this architecture's run and evaluation
      nlohmann::json cfg = m.overrides;
      cfg["arch"] = arch;
      cfg["size"] = o.size;
      write_json(run_dir / "study_config.json", cfg);
      commands.push_back(fmt::format(
          "transxssm train --config {} --data {} --tokenizer {} --steps {} --seq-len {} --batch-size {} --lr {} "
          "--min-lr {} --warmup {} --val-every {} --val-batches {} --seed {} --precision {} --device {} --out {}",
          (run_dir / "study_config.json").string(), shards.string(), tok_path, steps, o.seq_len, o.batch_size, o.lr,
          o.lr / 10, std::min<int64_t>(100, steps / 10), val_every, o.val_batches, o.seed, o.precision, o.device,
          run_dir.string()));
    }
    const double train_compute_s = train_seconds(run_dir / "metrics.jsonl", tokens_per_step);
    timing["train_s"] = train_compute_s;

    // Evaluation (cached in study_eval.json): the checkpoint's own parameter count must be the matched one.
    nlohmann::json ev = read_json_if(run_dir / "study_eval.json");
    if (ev.is_null()) {
      const double t0 = now_s();
      auto model = load_checkpoint(run_checkpoint_dir(run_dir.string()), backend_for(parse_device(o.device)),
                                   ModelOptions{parse_precision(o.precision), false});
      if (model->num_params() != m.params)
        fail("study: {} checkpoint has {} parameters, the matching rule computed {}", arch, model->num_params(),
             m.params);
      const Tokenizer tok = Tokenizer::from_file(tok_path);
      std::unique_ptr<eval::LogLikelihoodScorer> scorer = eval::make_engine_scorer(*model, o.seq_len);
      if (!scorer) scorer = std::make_unique<eval::ModelScorer>(*model, 4096, o.seq_len);
      eval::EvalOptions eo;
      eo.data_dir = o.data_dir;
      eo.ppl_context = o.seq_len;
      eo.needle_lengths = needle_lengths(o.seq_len);
      eo.needle_depths = o.needle_depths;
      eo.seed = o.seed;
      ev = {{"tasks", nlohmann::json::object()}};
      std::vector<std::pair<std::string, int64_t>> todo = {{"wikitext", o.ppl_limit}, {"ptb", o.ppl_limit},
                                                           {"needle", 0}, {"passkey", 0}};
      std::stringstream ss(o.tasks);
      for (std::string t; std::getline(ss, t, ',');)
        if (!t.empty()) todo.emplace_back(t, o.eval_limit);
      for (auto& [task, limit] : todo) {
        say(fmt::format("[{}/{}] {}: eval {}", i + 1, n, arch, task));
        eo.limit = limit;
        try {
          ev["tasks"][task] = task_json(eval::run_task(task, *model, tok, *scorer, eo));
        } catch (const Error& e) {
          ev["tasks"][task] = {{"error", e.what()}};
          say(fmt::format("{}: {} failed: {}", arch, task, e.what()));
        }
      }
      ev["params"] = model->num_params();
      ev["scorer"] = scorer->name();
      write_json(run_dir / "study_eval.json", ev);
      timing["eval_s"] = now_s() - t0;
    }

    // Throughput and state memory against length (cached in study_throughput.json), random weights.
    nlohmann::json tp = read_json_if(run_dir / "study_throughput.json");
    if (tp.is_null()) {
      const double t0 = now_s();
      tp = nlohmann::json::array();
      const ModelConfig cfg = resolve_config(arch, o.size, m.overrides);
      ThroughputOptions to;
      to.train_steps = o.train_timing_steps;
      to.decode_steps = o.decode_steps;
      to.precision = parse_precision(o.precision);
      to.device = parse_device(o.device);
      for (int64_t len : o.lengths) {
        const Throughput t = measure_throughput(cfg, len, to);
        say(fmt::format("[{}/{}] {}: length {}: train {:.0f} tok/s, prefill {:.0f} tok/s, decode {:.1f} tok/s, state "
                        "{:.2f} MiB{}",
                        i + 1, n, arch, len, t.train_tokens_per_s, t.prefill_tokens_per_s, t.decode_tokens_per_s,
                        double(t.state_bytes) / (1 << 20), t.skipped.empty() ? "" : " (" + t.skipped + ")"));
        tp.push_back(t.to_json());
      }
      write_json(run_dir / "study_throughput.json", tp);
      timing["throughput_s"] = now_s() - t0;
    }
    write_json(run_dir / "study_timing.json", timing);

    // After the first architecture: the estimated wall time of the whole study.
    if (!estimated) {
      estimated = true;
      // Training as this invocation saw it (validation and checkpoints included) when it trained the whole run.
      const double train_s = std::max(timing.value("train_s", 0.0), timing.value("train_s_last_invocation", 0.0));
      const double per_arch = train_s + timing.value("eval_s", 0.0) + timing.value("throughput_s", 0.0);
      const double total = per_arch * n;
      say(fmt::format("estimated total wall time: {} ({} per architecture: train {}, eval {}, throughput {}; "
                      "this invocation so far {})",
                      Progress::format_duration(total), Progress::format_duration(per_arch),
                      Progress::format_duration(train_s),
                      Progress::format_duration(timing.value("eval_s", 0.0)),
                      Progress::format_duration(timing.value("throughput_s", 0.0)),
                      Progress::format_duration(now_s() - t_start)));
      if (o.budget_minutes > 0 && total > 60 * o.budget_minutes) {
        const double other = (per_arch - train_s) * n;
        const double train_budget = 60 * o.budget_minutes - other;
        const double scale = train_budget / std::max(1e-9, train_s * n);
        say(fmt::format("warning: the estimate is over --budget-minutes {}; {}", o.budget_minutes,
                        scale > 0 ? fmt::format("--tokens {} would fit (rerun in a new --out)",
                                                int64_t(double(o.tokens) * scale))
                                  : std::string("even without training the evaluation does not fit; lower "
                                                "--eval-limit, --lengths or --archs")));
      }
    }
    (void)t_arch;
  }

  // ---- 4. results.json, then the report rendered from it alone -------------------------------------------
  nlohmann::json archs = nlohmann::json::object();
  for (auto& m : matching.archs) {
    const fs::path run_dir = out / "runs" / m.arch;
    nlohmann::json a;
    a["params"] = m.params;
    a["intermediate_size"] = m.intermediate_size;
    const LossCurve c = read_metrics((run_dir / "metrics.jsonl").string());
    double val_loss = NAN, train_loss = NAN;
    if (!c.val.empty()) val_loss = c.val.back().second;
    const auto ema = smooth_ema(c.train);
    if (!ema.empty()) train_loss = ema.back().second;
    a["train"] = {{"steps", c.train.empty() ? 0.0 : c.train.back().first},
                  {"tokens", steps * tokens_per_step},
                  {"final_train_loss_ema", std::isfinite(train_loss) ? nlohmann::json(train_loss) : nlohmann::json(nullptr)},
                  {"val_loss", std::isfinite(val_loss) ? nlohmann::json(val_loss) : nlohmann::json(nullptr)},
                  {"val_ppl", std::isfinite(val_loss) ? nlohmann::json(std::exp(val_loss)) : nlohmann::json(nullptr)}};
    a["curve"] = curve_json(run_dir / "metrics.jsonl");
    a["eval"] = read_json_if(run_dir / "study_eval.json");
    a["throughput"] = read_json_if(run_dir / "study_throughput.json");
    a["timing"] = read_json_if(run_dir / "study_timing.json");
    a["run_dir"] = run_dir.string();
    archs[m.arch] = a;
  }
  nlohmann::json results = {
      {"schema", "transxssm-study-1"},
      {"settings",
       {{"size", o.size}, {"archs", o.archs}, {"tokens_per_arch", steps * tokens_per_step}, {"steps", steps},
        {"seq_len", o.seq_len}, {"batch_size", o.batch_size}, {"lr", o.lr}, {"schedule", "cosine"},
        {"val_every", val_every}, {"lengths", o.lengths}, {"needle_lengths", needle_lengths(o.seq_len)},
        {"needle_depths", o.needle_depths}, {"tasks", o.tasks}, {"eval_limit", o.eval_limit},
        {"ppl_limit", o.ppl_limit}, {"train_timing_steps", o.train_timing_steps}, {"decode_steps", o.decode_steps},
        {"threads", num_threads()}, {"hardware_threads", std::thread::hardware_concurrency()},
        {"seed", o.seed}, {"precision", o.precision}, {"device", o.device}, {"data_dir", o.data_dir}, {"wall_s_this_invocation", now_s() - t_start}}},
      {"data", data_info},
      {"matching", matching.to_json()},
      {"archs", archs},
      {"paper_claims",
       {{"source", "arXiv 2506.09507 (TransXSSM)"},
        {"train_speedup_vs_transformer_4k", 0.423},
        {"infer_speedup_vs_transformer_4k", 0.295},
        {"claim_length", 4096},
        {"scales", {"320M", "1.3B"}}}},
      {"commands", commands}};
  write_json(out / "results.json", results);
  render_report(o.out);
  say(fmt::format("done in {}: {}/results.json, {}/report.md", Progress::format_duration(now_s() - t_start), o.out,
                  o.out));
}

}  // namespace txs::study
