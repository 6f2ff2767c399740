// Checkpoints of a training run: the atomic save (model, AdamW moments, train_state metadata), the lookup
// of the checkpoint to resume from, and trimming metrics.jsonl back to the resumed step.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace txs {

class Model;
class AdamW;
struct TrainOptions;

// Where the checkpoint of a run directory lives (DIR/checkpoint).
std::string run_checkpoint_dir(const std::string& run_dir);

// The checkpoint a resumed run starts from; empty() for a fresh run.
struct ResumePoint {
  std::string checkpoint;  // directory holding train_state.safetensors
  nlohmann::json state;    // its "transxssm-train-state-1" metadata: step, optimizer_steps, options, data
  int64_t step = 0;
  bool empty() const { return checkpoint.empty(); }
};

// resume_dir is a run directory or a checkpoint directory.
ResumePoint find_resume_point(const std::string& resume_dir);
void load_optimizer_state(const ResumePoint& resume, AdamW& opt);

// Writes DIR/checkpoint.tmp and swaps it with DIR/checkpoint atomically.
void save_run_checkpoint(const std::string& run_dir, const Model& model, const AdamW& opt, int64_t step,
                         const TrainOptions& options, const std::string& data_description);

// Keeps the metrics lines up to `step` (a killed run may have logged steps after its last checkpoint).
void truncate_metrics(const std::string& path, int64_t step);

}  // namespace txs
