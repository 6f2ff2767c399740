#include "train/run_outputs.h"

#include <filesystem>

#include "core/error.h"
#include "core/threads.h"
#include "infer/recompute_generate.h"
#include "tokenizer/tokenizer.h"
#include "train/checkpointing.h"

namespace fs = std::filesystem;

namespace txs {

RunOutputs::RunOutputs(RunRole role, const TrainRun& run)
    : on_(role.writes_outputs()), world_(role.world_size), o_(run.options), start_(run.start_step()), arch_(run.model->config().arch) {
  if (!on_) return;
  const TrainOptions& o = o_;
  fs::create_directories(o.out);
  metrics_path_ = (fs::path(o.out) / "metrics.jsonl").string();
  curve_path_ = (fs::path(o.out) / "loss.svg").string();
  remove_stale_temporaries(o.out);  // a run killed mid-save, or one whose disk filled up
  if (run.resume.empty()) {
    std::ofstream(metrics_path_, std::ios::trunc);
  } else {
    truncate_metrics(metrics_path_, start_);
  }
  const auto& cfg = run.model->config();
  label_ = run.progress_label;
  progress_.emplace(o.steps, start_);
  progress_->message(fmt::format("model: {} ({} layers: {} ssd, {} attention, {} mamba2), d={}, vocab {}, {:.2f}M parameters",
                                 cfg.arch, cfg.num_hidden_layers, cfg.count(LayerType::Ssd),
                                 cfg.count(LayerType::Attention), cfg.count(LayerType::Mamba2), cfg.hidden_size,
                                 cfg.vocab_size, double(run.model->num_params()) / 1e6));
  progress_->message("data: " + run.data.description);
  progress_->message(fmt::format("training: steps {}..{}, {} tokens/step (batch {} × seq {} × accum {}), {} threads, out {}",
                                 start_ + 1, o.steps, o.batch_size * o.seq_len * o.grad_accum, o.batch_size,
                                 o.seq_len, o.grad_accum,
                                 world_ > 1 ? fmt::format("{} processes × {}", world_, num_threads())
                                            : fmt::format("{}", num_threads()),
                                 o.out));
  metrics_.open(metrics_path_, std::ios::app);
  if (!metrics_) fail("{}: cannot open for writing", metrics_path_);
  if (!run.resume.empty()) curve_ = read_metrics(metrics_path_);
}

void RunOutputs::validation(int64_t step, double v) {
  if (!on_) return;
  metrics_ << nlohmann::json{{"step", step}, {"val_loss", v}}.dump() << "\n" << std::flush;
  if (!metrics_) fail("{}: write failed (disk full?)", metrics_path_);
  curve_.val.emplace_back(double(step), v);
  progress_->message(fmt::format("step {}: val_loss {:.4f}", step, v));
  result_.first_val_loss = result_.last_val_loss = v;
}

void RunOutputs::step(int64_t done, const StepStats& s, double elapsed_s, std::optional<double> val) {
  if (!on_) return;
  nlohmann::json line = {{"step", done}, {"loss", s.loss}, {"lr", s.lr}, {"tokens_per_s", s.tokens_per_s},
                         {"grad_norm", s.grad_norm}, {"elapsed_s", elapsed_s}};
  // Once a step was skipped every line carries the running count; a run without skips logs as before.
  if (s.skipped) line["skipped"] = true;
  if (s.skipped_total > 0) line["skipped_steps"] = s.skipped_total;
  if (!s.skipped) curve_.train.emplace_back(double(done), s.loss);  // NaN has no place on the curve
  std::string extra;
  if (val) {
    line["val_loss"] = *val;
    curve_.val.emplace_back(double(done), *val);
    result_.last_val_loss = *val;
    extra = fmt::format("val {:.4f}", *val);
  }
  metrics_ << line.dump() << "\n" << std::flush;
  if (!metrics_) fail("{}: write failed (disk full?)", metrics_path_);
  if (s.skipped) {
    progress_->message(fmt::format("step {}: non-finite loss {} / gradient norm {}; update skipped ({} so far)",
                                   done, s.loss, s.grad_norm, s.skipped_total));
    return;
  }
  result_.last_loss = s.loss;
  if (!label_.empty()) extra = extra.empty() ? label_ : label_ + " | " + extra;
  progress_->update(done, s.loss, s.lr, s.tokens_per_s, extra);
}

void RunOutputs::checkpoint(int64_t done, const TrainRun& run, const float* m, const float* v) {
  if (!on_) return;
  save_run_checkpoint(o_.out, run, done, m, v);
}

void RunOutputs::picture() {
  if (!on_) return;
  const std::string title = fmt::format("{} {} — {}", arch_, o_.size, fs::path(o_.out).filename().string());
  write_loss_svg(curve_path_, curve_, title);
}

std::string RunOutputs::sample(Model& model) {
  if (!on_ || o_.sample_tokens <= 0) return "";
  std::vector<int32_t> prompt;
  std::unique_ptr<Tokenizer> tok;
  if (!o_.tokenizer.empty()) {
    tok = std::make_unique<Tokenizer>(Tokenizer::from_file(o_.tokenizer));
    prompt = tok->encode(o_.sample_prompt);
  } else {
    for (unsigned char ch : o_.sample_prompt) prompt.push_back(ch);
  }
  if (prompt.empty()) prompt.push_back(tok && tok->eos_id() >= 0 ? tok->eos_id() : '\n');
  std::vector<int32_t> all = prompt;
  SamplingParams sp;
  sp.temperature = 0.8, sp.top_k = 40;
  generate_recompute(model, all, o_.sample_tokens, sp, o_.seed);
  std::vector<int32_t> gen(all.begin() + int64_t(prompt.size()), all.end());
  std::string text;
  if (tok) {
    text = tok->decode(gen);
  } else {
    for (int32_t id : gen) text.push_back(char(id));
  }
  return text;
}

TrainResult RunOutputs::finish() {
  result_.steps_done = o_.steps;
  if (!on_) return result_;
  progress_->finish();
  result_.checkpoint_dir = run_checkpoint_dir(o_.out);
  result_.metrics_path = metrics_path_;
  result_.curve_path = curve_path_;
  if (start_ >= o_.steps) write_loss_svg(curve_path_, curve_, arch_);  // nothing trained: redraw the curve
  return result_;
}

}  // namespace txs
