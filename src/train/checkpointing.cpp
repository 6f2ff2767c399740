#include "train/checkpointing.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "core/json.h"
#include "model/checkpoint.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "train/optimizer.h"
#include "train/train_setup.h"
#include "train/trainer.h"

namespace fs = std::filesystem;

namespace txs {

namespace {
constexpr const char* kStateFile = "train_state.safetensors";
}

std::string run_checkpoint_dir(const std::string& run_dir) { return (fs::path(run_dir) / "checkpoint").string(); }

ResumePoint find_resume_point(const std::string& resume_dir) {
  ResumePoint r;
  if (fs::exists(fs::path(resume_dir) / kStateFile)) {
    r.checkpoint = resume_dir;
  } else {
    const std::string c = run_checkpoint_dir(resume_dir);
    if (!fs::exists(fs::path(c) / kStateFile))
      fail("{}: no training checkpoint to resume from (expected {}/{})", resume_dir, c, kStateFile);
    r.checkpoint = c;
  }
  const std::string where = (fs::path(r.checkpoint) / kStateFile).string();
  SafetensorsReader st(where);
  auto it = st.metadata().find("train_state");
  if (it == st.metadata().end()) fail("{}: no train_state metadata", where);
  r.state = try_parse_json_bounded(it->second);
  if (r.state.is_discarded()) fail("{}: corrupt train_state metadata", where);
  // A tampered state must not resume with a negative step (and so a negative learning rate) or a
  // mismatched optimizer count: every field is checked against the others.
  const nlohmann::json& j = r.state;
  if (!j.is_object()) fail("{}: train_state is not a JSON object", where);
  if (!j.contains("format") || j.at("format") != "transxssm-train-state-1")
    fail("{}: train_state format is {}, expected \"transxssm-train-state-1\"", where,
         j.contains("format") ? j.at("format").dump() : "missing");
  auto integer = [&](const char* key, bool required) -> int64_t {
    if (!j.contains(key)) {
      if (required) fail("{}: train_state has no \"{}\"", where, key);
      return 0;
    }
    if (!j.at(key).is_number_integer())
      fail("{}: train_state \"{}\" must be an integer, got {}", where, key, j.at(key).dump());
    return j.at(key).get<int64_t>();
  };
  r.step = integer("step", true);
  r.optimizer_steps = integer("optimizer_steps", true);
  r.consecutive_skips = integer("consecutive_skips", false);  // absent in checkpoints from before the guard
  if (!j.contains("data") || !j.at("data").is_string()) fail("{}: train_state \"data\" must be a string", where);
  if (!j.contains("options")) fail("{}: train_state has no \"options\"", where);
  TrainOptions saved;
  try {
    saved = TrainOptions::from_json(j.at("options"));
  } catch (const Error& e) {
    fail("{}: train_state options: {}", where, e.what());
  }
  if (r.step < 0 || r.step > saved.steps)
    fail("{}: train_state step {} is outside 0..{} (the run's steps)", where, r.step, saved.steps);
  if (r.optimizer_steps < 0 || r.optimizer_steps > r.step)
    fail("{}: train_state optimizer_steps {} is outside 0..{} (the step)", where, r.optimizer_steps, r.step);
  if (r.consecutive_skips < 0 || r.consecutive_skips > r.step - r.optimizer_steps)
    fail("{}: train_state consecutive_skips {} is outside 0..{} (the skipped steps)", where, r.consecutive_skips,
         r.step - r.optimizer_steps);
  return r;
}

void load_optimizer_state(const ResumePoint& resume, AdamW& opt) {
  const std::string path = (fs::path(resume.checkpoint) / kStateFile).string();
  SafetensorsReader st(path);
  Backend& be = opt.backend();
  // The checkpoint holds the whole moments whatever the number of processes that wrote it; a sharded
  // optimizer takes its part. The CPU backend's moments (host memory) are read in place.
  const int64_t n = opt.params_size();
  const bool in_place = be.device() == Device::Cpu && !opt.sharded();
  std::vector<float> full(in_place ? 0 : static_cast<size_t>(n));
  for (const auto& [name, moment] : {std::pair{"adamw.m", opt.m_tensor()}, std::pair{"adamw.v", opt.v_tensor()}}) {
    if (in_place) {
      st.read_f32_into(name, moment.as<float>(), {n});
    } else {
      st.read_f32_into(name, full.data(), {n});
      be.upload(full.data() + opt.shard_lo(), moment);
    }
  }
  if (!opt.state_finite()) fail("{}: the AdamW moments hold non-finite values (NaN or inf)", path);
  opt.set_steps_done(resume.optimizer_steps);
}

// A kill at any moment leaves one complete checkpoint: the new one is written beside the old and the two
// are swapped in one renameat2(RENAME_EXCHANGE).
void save_run_checkpoint(const std::string& run_dir, const TrainRun& run, int64_t step, const float* m,
                         const float* v) {
  const fs::path final_dir = run_checkpoint_dir(run_dir), tmp_dir = fs::path(run_dir) / "checkpoint.tmp";
  const Model& model = *run.model;
  const AdamW& opt = *run.opt;
  if (!m && opt.sharded()) fail("internal: a sharded optimizer's checkpoint needs the gathered moments");
  const int64_t n_moments = m ? model.params().size() : opt.size();
  Backend& be = model.params().backend();
  // Given moments are host memory (gathered on rank 0): the CPU backend checks them. The optimizer's own are
  // checked where they live, then read in place (CPU backend) or downloaded.
  const bool moments_finite = m ? cpu_backend().all_finite(vec(m, n_moments)) && cpu_backend().all_finite(vec(v, n_moments))
                                : opt.state_finite();
  // The last good checkpoint is worth more than a non-finite one: refuse before anything is written.
  if (!be.all_finite(model.params().all_weights()) || !moments_finite)
    fail("step {}: the weights or optimizer moments are not finite; not saved, {} keeps the last good checkpoint",
         step, final_dir.string());
  try {
    fs::remove_all(tmp_dir);
    save_checkpoint(tmp_dir.string(), model);
    // The tokenizer travels with the model (generate/serve/eval need only --model); unknown for prepared
    // shards named without --tokenizer.
    if (!run.data.tokenizer.empty() || run.data.utf8_bytes)
      save_checkpoint_tokenizer(tmp_dir.string(), run.data.tokenizer);
    std::vector<float> m_host, v_host;
    if (!m) m = host_readable(be, opt.m_tensor(), m_host), v = host_readable(be, opt.v_tensor(), v_host);
    SafetensorsWriter w;
    w.add_f32("adamw.m", {n_moments}, m);
    w.add_f32("adamw.v", {n_moments}, v);
    nlohmann::json state = {{"step", step}, {"optimizer_steps", opt.steps_done()},
                            {"consecutive_skips", run.consecutive_skips}, {"options", run.options.to_json()},
                            {"data", run.data.description}, {"format", "transxssm-train-state-1"}};
    w.set_metadata("train_state", state.dump());
    w.write((tmp_dir / kStateFile).string());
    if (fs::exists(final_dir)) {
      if (::renameat2(AT_FDCWD, tmp_dir.c_str(), AT_FDCWD, final_dir.c_str(), RENAME_EXCHANGE) != 0)
        fail("{}: cannot swap in the new checkpoint ({})", final_dir.string(), std::strerror(errno));
      fs::remove_all(tmp_dir);  // now the previous checkpoint
    } else {
      fs::rename(tmp_dir, final_dir);
    }
  } catch (...) {
    // A failed write (disk full) must not leave a partial checkpoint.tmp filling the disk.
    std::error_code ec;
    fs::remove_all(tmp_dir, ec);
    throw;
  }
}

void remove_stale_temporaries(const std::string& run_dir) {
  std::error_code ec;
  fs::remove_all(fs::path(run_dir) / "checkpoint.tmp", ec);
  fs::remove(fs::path(run_dir) / "metrics.jsonl.tmp", ec);
}

void truncate_metrics(const std::string& path, int64_t step) {
  std::ifstream in(path);
  if (!in) return;
  std::string line, kept;
  while (std::getline(in, line)) {
    const auto j = try_parse_json_bounded(line);
    if (j.is_discarded()) continue;  // a line cut short by the kill
    if (j.is_object() && j.contains("step") && j["step"].is_number() && j["step"].get<double>() > double(step))
      continue;
    kept += line + "\n";
  }
  try {
    write_file_atomic(path, kept);
  } catch (...) {
    std::error_code ec;
    fs::remove(path + ".tmp", ec);  // what the failed write left
    throw;
  }
}

}  // namespace txs
