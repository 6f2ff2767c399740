// Checkpoints of a training run: the atomic save (model, AdamW moments, train_state metadata), the lookup
// of the checkpoint to resume from, and trimming metrics.jsonl back to the resumed step.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace txs {

class AdamW;
struct TrainRun;

// Where the checkpoint of a run directory lives (DIR/checkpoint).
std::string run_checkpoint_dir(const std::string& run_dir);

// The checkpoint a resumed run starts from; empty() for a fresh run.
struct ResumePoint {
  std::string checkpoint;  // directory holding train_state.safetensors
  nlohmann::json state;    // its "transxssm-train-state-1" metadata: step, optimizer_steps, options, data,
                           // consecutive_skips (absent before the non-finite guard: 0)
  int64_t step = 0;
  int64_t optimizer_steps = 0;    // updates applied: step minus the skipped steps
  int64_t consecutive_skips = 0;  // skipped steps just before `step`
  bool empty() const { return checkpoint.empty(); }
};

// resume_dir is a run directory or a checkpoint directory. Every field of the train state is checked
// (format, types, 0 ≤ optimizer_steps ≤ step ≤ steps, …): a tampered or corrupt state is a one-line error.
ResumePoint find_resume_point(const std::string& resume_dir);
// Reads the AdamW moments (which must be finite; a sharded optimizer takes its shard) and the update count.
void load_optimizer_state(const ResumePoint& resume, AdamW& opt);

// Writes DIR/checkpoint.tmp (model, tokenizer, moments, train state) and swaps it with DIR/checkpoint
// atomically. Weights or moments that are not finite are never saved: that is an error and the previous
// checkpoint stays. A failed write (disk full) removes checkpoint.tmp.
// m, v: the whole AdamW moments when the optimizer holds a shard only (--zero1: gathered on rank 0);
// null: the optimizer's own.
void save_run_checkpoint(const std::string& run_dir, const TrainRun& run, int64_t step, const float* m = nullptr,
                         const float* v = nullptr);

// Removes what an interrupted or failed save left in run_dir (checkpoint.tmp, metrics.jsonl.tmp).
void remove_stale_temporaries(const std::string& run_dir);

// Keeps the metrics lines up to `step` (a killed run may have logged steps after its last checkpoint).
void truncate_metrics(const std::string& path, int64_t step);

}  // namespace txs
