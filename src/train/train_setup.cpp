#include "train/train_setup.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "core/error.h"
#include "core/threads.h"
#include "model/checkpoint.h"
#include "model/config.h"

namespace fs = std::filesystem;

namespace txs {

// The built-in default corpus: the `fortunes` package's English texts, installed by scripts/setup.sh.
static const char* kDefaultCorpus = "/usr/share/games/fortunes";

static nlohmann::json read_config_object(const std::string& path) {
  nlohmann::json j = read_json_file(path);
  if (!j.is_object()) fail("{}: config must be a JSON object", path);
  return j;
}

TrainOptions resolve_options(const TrainRequest& req, const ResumePoint& resume) {
  TrainOptions o;
  if (!resume.empty()) {
    o = TrainOptions::from_json(resume.state.at("options"));
    // The run directory is where the checkpoint is now, wherever the run was started.
    o.out = fs::path(resume.checkpoint).parent_path().string();
    if (fs::path(resume.checkpoint).filename() != "checkpoint") o.out = resume.checkpoint;
    if (req.given.count("steps") && req.flags.steps > 0) {
      if (req.flags.steps < resume.step)
        fail("train: --steps {} is below the checkpoint's step {} ({})", req.flags.steps, resume.step,
             resume.checkpoint);
      o.steps = req.flags.steps;
    }
    // The policy for non-finite steps does not change what finite steps compute: it may be changed.
    if (req.given.count("nonfinite")) o.nonfinite = req.flags.nonfinite;
    if (req.given.count("max_skips")) o.max_skips = req.flags.max_skips;
    // The checkpoint holds fp32 masters and moments whatever the run computed in: either precision resumes.
    if (req.given.count("precision")) o.precision = req.flags.precision;
  } else {
    o = req.flags;
    if (!req.config_file.empty()) {
      const nlohmann::json j = read_config_object(req.config_file);
      if (j.contains("train")) {
        nlohmann::json merged = TrainOptions::from_json(j["train"]).to_json();  // validates the keys
        const nlohmann::json flags = req.flags.to_json();
        for (auto& [key, value] : flags.items())
          if (req.given.count(key)) merged[key] = value;  // given on the command line: it wins
        o = TrainOptions::from_json(merged);
      }
      o.config_file = req.config_file;
    }
    if (o.data.empty()) {
      if (!fs::exists(kDefaultCorpus))
        fail("no --data given and the default corpus {} is missing (run scripts/setup.sh)", kDefaultCorpus);
      o.data = {kDefaultCorpus};
    }
  }
  o.schedule.total = o.steps;
  o.validate();
  return o;
}

ModelConfig resolve_model_config(const TrainOptions& o, int64_t data_vocab_size) {
  nlohmann::json cfg = o.model_overrides;
  if (!o.config_file.empty()) {
    cfg = read_config_object(o.config_file);
    cfg.erase("train");
    for (auto& [k, v] : o.model_overrides.items()) cfg[k] = v;
  }
  if (!cfg.contains("vocab_size")) cfg["vocab_size"] = (data_vocab_size + 63) / 64 * 64;
  return resolve_config(o.arch, o.size, cfg);
}

// Checked before anything is printed: an unusable corpus is a one-line error.
static TrainingData load_checked_data(const TrainOptions& o) {
  TrainingData data = load_training_data(o.data, o.tokenizer, o.val_fraction);
  if (data.train->size() < o.seq_len + 1)
    fail("training split has {} tokens, too few for --seq-len {}", data.train->size(), o.seq_len);
  if (data.val->size() < o.seq_len + 1)
    fail("validation split has {} tokens, too few for --seq-len {} (more data or a larger --val-fraction)",
         data.val->size(), o.seq_len);
  return data;
}

TrainRun set_up_run(const TrainRequest& req, const RunRole& role) {
  TrainRun run;
  if (!req.resume_dir.empty()) run.resume = find_resume_point(req.resume_dir);
  run.options = resolve_options(req, run.resume);
  const TrainOptions& o = run.options;
  if (o.batch_size < role.world_size)
    fail("train: --batch-size {} is smaller than the {} processes: each needs at least one row of every "
         "micro-batch", o.batch_size, role.world_size);
  // --threads is per process; by default the processes on one machine share its cores.
  int threads = o.threads;
  if (threads <= 0 && role.local_size > 1 && !std::getenv("TRANSXSSM_THREADS") && !std::getenv("OMP_NUM_THREADS"))
    threads = std::max(1, int(std::thread::hardware_concurrency()) / role.local_size);
  set_num_threads(threads);
  Backend& backend = req.backend ? *req.backend : backend_for(parse_device(req.device));
  run.data = load_checked_data(o);
  if (run.resume.empty()) {
    run.model = std::make_unique<Model>(resolve_model_config(o, run.data.vocab_size), backend,
                                        ModelOptions{parse_precision(o.precision), true});
    run.model->init(o.seed);
  } else {
    require_fp32_checkpoint(run.resume.checkpoint);
    run.model = load_checkpoint(run.resume.checkpoint, backend, ModelOptions{parse_precision(o.precision), true});
  }
  if (run.model->config().vocab_size < run.data.vocab_size)
    fail("model vocab_size {} is smaller than the data's vocabulary {}", run.model->config().vocab_size,
         run.data.vocab_size);
  int64_t shard_lo = 0, shard_hi = -1;
  if (req.dist.zero1 && role.world_size > 1) {
    const int64_t n = run.model->params().size();
    shard_lo = dist::share_begin(n, role.world_size, role.rank);
    shard_hi = dist::share_begin(n, role.world_size, role.rank + 1);
  }
  run.opt = std::make_unique<AdamW>(run.model->backend(), run.model->params(), o.adamw, shard_lo, shard_hi);
  if (!run.resume.empty()) {
    load_optimizer_state(run.resume, *run.opt);
    run.consecutive_skips = run.resume.consecutive_skips;
  }
  return run;
}

}  // namespace txs
