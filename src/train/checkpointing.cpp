#include "train/checkpointing.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "model/checkpoint.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "train/optimizer.h"
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
  SafetensorsReader st((fs::path(r.checkpoint) / kStateFile).string());
  auto it = st.metadata().find("train_state");
  if (it == st.metadata().end()) fail("{}/{}: no train_state metadata", r.checkpoint, kStateFile);
  try {
    r.state = nlohmann::json::parse(it->second);
  } catch (const std::exception&) {
    fail("{}/{}: corrupt train_state metadata", r.checkpoint, kStateFile);
  }
  r.step = r.state.at("step").get<int64_t>();
  return r;
}

void load_optimizer_state(const ResumePoint& resume, AdamW& opt) {
  SafetensorsReader st((fs::path(resume.checkpoint) / kStateFile).string());
  st.read_f32_into("adamw.m", opt.m(), {opt.size()});
  st.read_f32_into("adamw.v", opt.v(), {opt.size()});
  opt.set_steps_done(resume.state.at("optimizer_steps").get<int64_t>());
}

// A kill at any moment leaves one complete checkpoint: the new one is written beside the old and the two
// are swapped in one renameat2(RENAME_EXCHANGE).
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

}  // namespace txs
