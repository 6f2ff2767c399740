#include "train/trainer.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "core/threads.h"
#include "infer/recompute_generate.h"
#include "model/checkpoint.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "tokenizer/tokenizer.h"
#include "train/plot.h"
#include "train/progress.h"
#include "train/training_data.h"

namespace fs = std::filesystem;

namespace txs {

nlohmann::json TrainOptions::to_json() const {
  return {{"config_file", config_file}, {"arch", arch}, {"size", size}, {"model_overrides", model_overrides},
          {"data", data}, {"tokenizer", tokenizer}, {"val_fraction", val_fraction}, {"steps", steps},
          {"seq_len", seq_len}, {"batch_size", batch_size}, {"grad_accum", grad_accum},
          {"schedule", schedule.kind}, {"lr", schedule.lr}, {"min_lr", schedule.min_lr},
          {"warmup", schedule.warmup}, {"decay_fraction", schedule.decay_fraction}, {"beta1", adamw.beta1},
          {"beta2", adamw.beta2}, {"adam_eps", adamw.eps}, {"weight_decay", adamw.weight_decay},
          {"clip_norm", adamw.clip_norm}, {"seed", seed}, {"out", out}, {"save_every", save_every},
          {"val_every", val_every}, {"val_batches", val_batches}, {"threads", threads},
          {"sample_tokens", sample_tokens}, {"sample_prompt", sample_prompt}};
}

TrainOptions TrainOptions::from_json(const nlohmann::json& j) {
  if (!j.is_object()) fail("train options must be a JSON object");
  TrainOptions o;
  for (auto& [k, v] : j.items()) {
    try {
      if (k == "config_file") o.config_file = v.get<std::string>();
      else if (k == "arch") o.arch = v.get<std::string>();
      else if (k == "size") o.size = v.get<std::string>();
      else if (k == "model_overrides") o.model_overrides = v;
      else if (k == "data") o.data = v.is_string() ? std::vector<std::string>{v.get<std::string>()} : v.get<std::vector<std::string>>();
      else if (k == "tokenizer") o.tokenizer = v.get<std::string>();
      else if (k == "val_fraction") o.val_fraction = v.get<double>();
      else if (k == "steps") o.steps = v.get<int64_t>();
      else if (k == "seq_len") o.seq_len = v.get<int64_t>();
      else if (k == "batch_size") o.batch_size = v.get<int64_t>();
      else if (k == "grad_accum") o.grad_accum = v.get<int64_t>();
      else if (k == "schedule") o.schedule.kind = v.get<std::string>();
      else if (k == "lr") o.schedule.lr = v.get<double>();
      else if (k == "min_lr") o.schedule.min_lr = v.get<double>();
      else if (k == "warmup") o.schedule.warmup = v.get<int64_t>();
      else if (k == "decay_fraction") o.schedule.decay_fraction = v.get<double>();
      else if (k == "beta1") o.adamw.beta1 = v.get<double>();
      else if (k == "beta2") o.adamw.beta2 = v.get<double>();
      else if (k == "adam_eps") o.adamw.eps = v.get<double>();
      else if (k == "weight_decay") o.adamw.weight_decay = v.get<double>();
      else if (k == "clip_norm") o.adamw.clip_norm = v.get<double>();
      else if (k == "seed") o.seed = v.get<uint64_t>();
      else if (k == "out") o.out = v.get<std::string>();
      else if (k == "save_every") o.save_every = v.get<int64_t>();
      else if (k == "val_every") o.val_every = v.get<int64_t>();
      else if (k == "val_batches") o.val_batches = v.get<int64_t>();
      else if (k == "threads") o.threads = v.get<int>();
      else if (k == "sample_tokens") o.sample_tokens = v.get<int64_t>();
      else if (k == "sample_prompt") o.sample_prompt = v.get<std::string>();
      else fail("unknown training option '{}'", k);
    } catch (const nlohmann::json::exception&) {
      fail("training option '{}' has the wrong type ({})", k, v.dump());
    }
  }
  o.schedule.total = o.steps;
  return o;
}

void TrainOptions::validate() const {
  if (steps <= 0) fail("train: --steps must be positive");
  if (seq_len < 2) fail("train: --seq-len must be at least 2");
  if (batch_size <= 0 || grad_accum <= 0) fail("train: --batch-size and --grad-accum must be positive");
  if (save_every < 0 || val_every < 0 || val_batches <= 0) fail("train: --save-every, --val-every ≥ 0, --val-batches > 0");
  if (out.empty()) fail("train: --out must name a directory");
  schedule.validate();
  if (!(adamw.beta1 >= 0 && adamw.beta1 < 1 && adamw.beta2 >= 0 && adamw.beta2 < 1 && adamw.eps > 0))
    fail("train: need 0 ≤ beta < 1 and eps > 0");
}

std::string run_checkpoint_dir(const std::string& run_dir) { return (fs::path(run_dir) / "checkpoint").string(); }

namespace {

constexpr const char* kStateFile = "train_state.safetensors";

// Writes the checkpoint into DIR/checkpoint.tmp and swaps it with DIR/checkpoint in one atomic
// renameat2(RENAME_EXCHANGE): a kill at any moment leaves one complete checkpoint.
void save_run_checkpoint(const std::string& run_dir, const Model& model, const AdamW& opt, int64_t step,
                         const TrainOptions& o, const std::string& data_description) {
  const fs::path final_dir = run_checkpoint_dir(run_dir), tmp_dir = fs::path(run_dir) / "checkpoint.tmp";
  fs::remove_all(tmp_dir);
  save_checkpoint(tmp_dir.string(), model);
  SafetensorsWriter w;
  w.add_f32("adamw.m", {opt.size()}, opt.m());
  w.add_f32("adamw.v", {opt.size()}, opt.v());
  nlohmann::json state = {{"step", step}, {"optimizer_steps", opt.steps_done()}, {"options", o.to_json()},
                          {"data", data_description}, {"format", "transxssm-train-state-1"}};
  w.set_metadata("train_state", state.dump());
  w.write((tmp_dir / kStateFile).string());
  if (fs::exists(final_dir)) {
    if (::renameat2(AT_FDCWD, tmp_dir.c_str(), AT_FDCWD, final_dir.c_str(), RENAME_EXCHANGE) != 0)
      fail("{}: cannot swap in the new checkpoint ({})", final_dir.string(), std::strerror(errno));
    fs::remove_all(tmp_dir);  // now the previous checkpoint
  } else {
    fs::rename(tmp_dir, final_dir);
  }
}

std::string find_checkpoint(const std::string& resume_dir) {
  if (fs::exists(fs::path(resume_dir) / kStateFile)) return resume_dir;
  const std::string c = run_checkpoint_dir(resume_dir);
  if (fs::exists(fs::path(c) / kStateFile)) return c;
  fail("{}: no training checkpoint to resume from (expected {}/{})", resume_dir, c, kStateFile);
}

// Keeps the metrics lines up to `step` (a killed run may have logged steps after its last checkpoint).
void truncate_metrics(const std::string& path, int64_t step) {
  std::ifstream in(path);
  if (!in) return;
  std::string line, kept;
  while (std::getline(in, line)) {
    try {
      auto j = nlohmann::json::parse(line);
      if (j.value("step", int64_t(0)) > step) continue;
    } catch (const std::exception&) {
      continue;  // a line cut short by the kill
    }
    kept += line + "\n";
  }
  write_file_atomic(path, kept);
}

double validation_loss(Model& model, const TokenSource& val, const TrainOptions& o, std::vector<int32_t>& ids,
                       std::vector<int32_t>& targets) {
  double sum = 0;
  int64_t n = 0;
  for (int64_t b = 0; b < o.val_batches; ++b) {
    validation_batch(val, b, o.val_batches, o.batch_size, o.seq_len, ids.data(), targets.data());
    auto r = model.forward(ids.data(), targets.data(), o.batch_size, o.seq_len, nullptr);
    sum += r.loss_sum;
    n += r.counted;
  }
  return sum / double(std::max<int64_t>(n, 1));
}

}  // namespace

TrainResult train(TrainOptions o, const std::string& resume_dir, int64_t steps_override) {
  std::string ckpt;
  nlohmann::json saved_state;
  if (!resume_dir.empty()) {
    ckpt = find_checkpoint(resume_dir);
    SafetensorsReader st((fs::path(ckpt) / kStateFile).string());
    auto it = st.metadata().find("train_state");
    if (it == st.metadata().end()) fail("{}/{}: no train_state metadata", ckpt, kStateFile);
    try {
      saved_state = nlohmann::json::parse(it->second);
    } catch (const std::exception& e) {
      fail("{}/{}: corrupt train_state metadata", ckpt, kStateFile);
    }
    o = TrainOptions::from_json(saved_state.at("options"));
    o.out = fs::path(ckpt).parent_path().string();
    if (fs::path(ckpt).filename() != "checkpoint") o.out = ckpt;
    if (steps_override > 0) o.steps = o.schedule.total = steps_override;
  }
  o.schedule.total = o.steps;
  o.validate();
  set_num_threads(o.threads);

  TrainingData data = load_training_data(o.data, o.tokenizer, o.val_fraction);
  // Checked before anything is printed: an unusable corpus is a one-line error.
  if (data.train->size() < o.seq_len + 1)
    fail("training split has {} tokens, too few for --seq-len {}", data.train->size(), o.seq_len);
  if (data.val->size() < o.seq_len + 1)
    fail("validation split has {} tokens, too few for --seq-len {} (more data or a larger --val-fraction)",
         data.val->size(), o.seq_len);
  std::unique_ptr<Model> model;
  int64_t start = 0;
  if (!ckpt.empty()) {
    model = load_checkpoint(ckpt);
    start = saved_state.at("step").get<int64_t>();
  } else {
    nlohmann::json cfg = o.model_overrides;
    if (!o.config_file.empty()) {
      cfg = read_json_file(o.config_file);
      if (!cfg.is_object()) fail("{}: config must be a JSON object", o.config_file);
      cfg.erase("train");
      for (auto& [k, v] : o.model_overrides.items()) cfg[k] = v;
    }
    if (!cfg.contains("vocab_size")) cfg["vocab_size"] = (data.vocab_size + 63) / 64 * 64;  // padded to 64
    ModelConfig config = resolve_config(o.arch, o.size, cfg);
    model = std::make_unique<Model>(config);
    model->init(o.seed);
  }
  if (model->config().vocab_size < data.vocab_size)
    fail("model vocab_size {} is smaller than the data's vocabulary {}", model->config().vocab_size, data.vocab_size);

  fs::create_directories(o.out);
  const std::string metrics_path = (fs::path(o.out) / "metrics.jsonl").string();
  const std::string curve_path = (fs::path(o.out) / "loss.svg").string();
  if (ckpt.empty()) {
    std::ofstream(metrics_path, std::ios::trunc);
  } else {
    truncate_metrics(metrics_path, start);
  }

  AdamW opt(model->backend(), model->params(), o.adamw);
  if (!ckpt.empty()) {
    SafetensorsReader st((fs::path(ckpt) / kStateFile).string());
    st.read_f32_into("adamw.m", opt.m(), {opt.size()});
    st.read_f32_into("adamw.v", opt.v(), {opt.size()});
    opt.set_steps_done(saved_state.at("optimizer_steps").get<int64_t>());
  }

  const auto& cfg = model->config();
  const int64_t tokens_per_step = o.batch_size * o.seq_len * o.grad_accum;
  Progress progress(o.steps, start);
  progress.message(fmt::format("model: {} ({} layers: {} ssd, {} attention, {} mamba2), d={}, vocab {}, {:.2f}M parameters",
                               cfg.arch, cfg.num_hidden_layers, cfg.count(LayerType::Ssd),
                               cfg.count(LayerType::Attention), cfg.count(LayerType::Mamba2), cfg.hidden_size,
                               cfg.vocab_size, double(model->num_params()) / 1e6));
  progress.message("data: " + data.description);
  progress.message(fmt::format("training: steps {}..{}, {} tokens/step (batch {} × seq {} × accum {}), {} threads, out {}",
                               start + 1, o.steps, tokens_per_step, o.batch_size, o.seq_len, o.grad_accum,
                               num_threads(), o.out));

  std::ofstream metrics(metrics_path, std::ios::app);
  if (!metrics) fail("{}: cannot open for writing", metrics_path);
  std::vector<int32_t> ids(size_t(o.batch_size * o.seq_len)), targets(ids.size());
  TrainResult result;
  LossCurve curve;
  if (!ckpt.empty()) curve = read_metrics(metrics_path);
  if (start == 0 && o.val_every > 0) {
    const double v = validation_loss(*model, *data.val, o, ids, targets);
    metrics << nlohmann::json{{"step", 0}, {"val_loss", v}}.dump() << "\n" << std::flush;
    curve.val.emplace_back(0, v);
    progress.message(fmt::format("step 0: val_loss {:.4f}", v));
    result.first_val_loss = result.last_val_loss = v;
  }
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t step = start; step < o.steps; ++step) {
    const auto ts = std::chrono::steady_clock::now();
    model->params().zero_grads();
    double loss_sum = 0;
    int64_t counted = 0;
    for (int64_t micro = 0; micro < o.grad_accum; ++micro) {
      sample_batch(*data.train, o.seed, step * o.grad_accum + micro, o.batch_size, o.seq_len, ids.data(),
                   targets.data());
      auto r = model->forward_backward(ids.data(), targets.data(), o.batch_size, o.seq_len,
                                       1.0f / float(tokens_per_step));
      loss_sum += r.loss_sum;
      counted += r.counted;
    }
    const double lr = o.schedule.at(step);
    const double grad_norm = opt.step(lr);
    const double loss = loss_sum / double(std::max<int64_t>(counted, 1));
    if (!std::isfinite(loss)) fail("training diverged at step {} (loss {}); try a lower --lr", step + 1, loss);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - ts).count();
    const double tps = double(tokens_per_step) / secs;
    const int64_t done = step + 1;
    nlohmann::json line = {{"step", done}, {"loss", loss}, {"lr", lr}, {"tokens_per_s", tps},
                           {"grad_norm", grad_norm},
                           {"elapsed_s", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()}};
    curve.train.emplace_back(double(done), loss);
    std::string extra;
    if (o.val_every > 0 && (done % o.val_every == 0 || done == o.steps)) {
      const double v = validation_loss(*model, *data.val, o, ids, targets);
      line["val_loss"] = v;
      curve.val.emplace_back(double(done), v);
      result.last_val_loss = v;
      extra = fmt::format("val {:.4f}", v);
    }
    metrics << line.dump() << "\n" << std::flush;
    result.last_loss = loss;
    progress.update(done, loss, lr, tps, extra);
    if ((o.save_every > 0 && done % o.save_every == 0) || done == o.steps) {
      save_run_checkpoint(o.out, *model, opt, done, o, data.description);
      write_loss_svg(curve_path, curve, fmt::format("{} {} — {}", cfg.arch, o.size, fs::path(o.out).filename().string()));
    }
    if (!extra.empty() && !(o.save_every > 0 && done % o.save_every == 0))
      write_loss_svg(curve_path, curve, fmt::format("{} {} — {}", cfg.arch, o.size, fs::path(o.out).filename().string()));
  }
  progress.finish();
  result.steps_done = o.steps;
  result.checkpoint_dir = run_checkpoint_dir(o.out);
  result.metrics_path = metrics_path;
  result.curve_path = curve_path;
  if (start >= o.steps) write_loss_svg(curve_path, curve, cfg.arch);

  if (o.sample_tokens > 0) {
    std::vector<int32_t> prompt;
    std::unique_ptr<Tokenizer> tok;
    if (!o.tokenizer.empty()) {
      tok = std::make_unique<Tokenizer>(Tokenizer::from_file(o.tokenizer));
      prompt = tok->encode(o.sample_prompt);
    } else {
      for (unsigned char ch : o.sample_prompt) prompt.push_back(ch);
    }
    if (prompt.empty()) prompt.push_back(tok && tok->eos_id() >= 0 ? tok->eos_id() : '\n');
    std::vector<int32_t> all = prompt;
    SamplingParams sp;
    sp.temperature = 0.8, sp.top_k = 40;
    generate_recompute(*model, all, o.sample_tokens, sp, o.seed);
    std::vector<int32_t> gen(all.begin() + int64_t(prompt.size()), all.end());
    if (tok) {
      result.sample = tok->decode(gen);
    } else {
      for (int32_t id : gen) result.sample.push_back(char(id));
    }
  }
  return result;
}

}  // namespace txs
