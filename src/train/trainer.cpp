#include "train/trainer.h"

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <cmath>
#include <optional>
#include <utility>

#include "core/error.h"
#include "train/data_parallel.h"
#include "train/run_outputs.h"
#include "train/train_setup.h"
#include "train/train_step.h"

namespace txs {

nlohmann::json TrainOptions::to_json() const {
  return {{"config_file", config_file}, {"arch", arch}, {"size", size}, {"model_overrides", model_overrides},
          {"data", data}, {"tokenizer", tokenizer}, {"val_fraction", val_fraction}, {"steps", steps},
          {"seq_len", seq_len}, {"batch_size", batch_size}, {"grad_accum", grad_accum},
          {"schedule", schedule.kind}, {"lr", schedule.lr}, {"min_lr", schedule.min_lr},
          {"warmup", schedule.warmup}, {"decay_fraction", schedule.decay_fraction}, {"beta1", adamw.beta1},
          {"beta2", adamw.beta2}, {"adam_eps", adamw.eps}, {"weight_decay", adamw.weight_decay},
          {"clip_norm", adamw.clip_norm}, {"seed", seed}, {"precision", precision}, {"nonfinite", nonfinite}, {"max_skips", max_skips},
          {"out", out}, {"save_every", save_every}, {"val_every", val_every}, {"val_batches", val_batches},
          {"threads", threads}, {"sample_tokens", sample_tokens}, {"sample_prompt", sample_prompt}};
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
      else if (k == "precision") o.precision = v.get<std::string>();
      else if (k == "nonfinite") o.nonfinite = v.get<std::string>();
      else if (k == "max_skips") o.max_skips = v.get<int64_t>();
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
  // CLI11 reads "inf" and "nan" as numbers, and every comparison with NaN is false: name the flag here.
  const std::pair<const char*, double> reals[] = {
      {"--lr", schedule.lr}, {"--min-lr", schedule.min_lr}, {"--decay-fraction", schedule.decay_fraction},
      {"--beta1", adamw.beta1}, {"--beta2", adamw.beta2}, {"adam_eps", adamw.eps},
      {"--weight-decay", adamw.weight_decay}, {"--clip-norm", adamw.clip_norm}, {"--val-fraction", val_fraction}};
  for (auto& [name, value] : reals)
    if (!std::isfinite(value)) fail("train: {} must be a finite number, got {}", name, value);
  if (adamw.weight_decay < 0 || adamw.clip_norm < 0) fail("train: --weight-decay and --clip-norm must be ≥ 0");
  if (nonfinite != "stop" && nonfinite != "skip") fail("train: --nonfinite must be stop or skip, got '{}'", nonfinite);
  if (max_skips < 1) fail("train: --max-skips must be at least 1");
  if (precision != "fp32" && precision != "bf16") fail("train: --precision must be fp32 or bf16, got '{}'", precision);
  if (steps <= 0) fail("train: --steps must be positive");
  if (seq_len < 2) fail("train: --seq-len must be at least 2");
  if (batch_size <= 0 || grad_accum <= 0) fail("train: --batch-size and --grad-accum must be positive");
  if (save_every < 0 || val_every < 0 || val_batches <= 0) fail("train: --save-every, --val-every ≥ 0, --val-batches > 0");
  if (out.empty()) fail("train: --out must name a directory");
  schedule.validate();
  if (!(adamw.beta1 >= 0 && adamw.beta1 < 1 && adamw.beta2 >= 0 && adamw.beta2 < 1 && adamw.eps > 0))
    fail("train: need 0 ≤ beta < 1 and eps > 0");
}

// Fault injection for the data-parallel tests: TRANSXSSM_TEST_FAULT="RANK:STEP:kill|hang|exit" makes process
// RANK, about to compute update STEP (1-based), die by SIGKILL, hang (sleep forever) or exit(1).
static void test_fault(const RunRole& role, int64_t step) {
  static const char* spec = std::getenv("TRANSXSSM_TEST_FAULT");
  if (!spec) return;
  int rank = -1;
  long long at = -1;
  char kind[16] = {};
  if (std::sscanf(spec, "%d:%lld:%15s", &rank, &at, kind) != 3 || rank != role.rank || at != step + 1) return;
  std::fprintf(stderr, "rank %d: TRANSXSSM_TEST_FAULT: %s at step %lld\n", rank, kind, at);
  std::fflush(stderr);
  if (std::strcmp(kind, "kill") == 0) ::raise(SIGKILL);
  if (std::strcmp(kind, "hang") == 0)
    for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
  std::_Exit(1);
}

// Every process sets up, steps and validates; only the first writes anything (RunOutputs, run_role.h).
TrainResult train(const TrainRequest& request, RunRole role, const std::string& progress_label) {
  TrainRun run = set_up_run(request, role);
  run.progress_label = progress_label;
  const TrainOptions& o = run.options;
  std::optional<DataParallel> dp_storage;
  if (role.world_size > 1) {
    if (!role.comm) fail("internal: a {}-process run without a communicator", role.world_size);
    dp_storage.emplace(*role.comm, request.dist, run.model->params());
    dp_storage->broadcast_weights();  // rank 0's weights everywhere, whatever the machines' libm
    run.model->params().refresh_compute();
  }
  DataParallel* dp = dp_storage ? &*dp_storage : nullptr;
  RunOutputs outputs(role, run);
  Batch batch(o.batch_size, o.seq_len);
  auto val_loss = [&] { return validation_loss(*run.model, *run.data.val, o, batch, dp); };
  std::vector<float> gathered_m, gathered_v;  // --zero1: the whole moments on rank 0 for a checkpoint
  if (run.start_step() == 0 && o.val_every > 0) outputs.validation(0, val_loss());
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t step = run.start_step(); step < o.steps; ++step) {
    test_fault(role, step);
    const StepStats s =
        train_step(*run.model, *run.opt, *run.data.train, o, step, batch, run.consecutive_skips, dp);
    const double elapsed_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const int64_t done = step + 1;
    std::optional<double> val;
    if (o.val_every > 0 && (done % o.val_every == 0 || done == o.steps)) val = val_loss();
    outputs.step(done, s, elapsed_s, val);
    const bool save = (o.save_every > 0 && done % o.save_every == 0) || done == o.steps;
    if (save) {
      if (dp) dp->gather_moments(*run.opt, gathered_m, gathered_v);  // every process takes part
      outputs.checkpoint(done, run, gathered_m.empty() ? nullptr : gathered_m.data(),
                         gathered_v.empty() ? nullptr : gathered_v.data());
    }
    if (save || val) outputs.picture();  // redrawn when it gains a point worth seeing
  }
  TrainResult result = outputs.finish();
  result.sample = outputs.sample(*run.model);
  return result;
}

}  // namespace txs
