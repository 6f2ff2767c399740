// Data parallelism: what a process of an N-process run adds to the one-process step (run_role.h).
// Constructed only when the world has more than one process; a one-process run never touches it, so it
// stays bit-identical to a run without MPI.
#pragma once
#include <cstdint>
#include <vector>

#include "dist/communicator.h"
#include "model/model.h"
#include "train/optimizer.h"

namespace txs {

// Options of the process group, not of the run: they are not saved in the train state, so a run may be
// resumed with another number of processes or without --zero1.
struct DistOptions {
  bool zero1 = false;         // shard the AdamW moments over the processes (reduce-scatter + all-gather)
  double timeout_s = 300;     // a collective waiting longer ends the job
  double bucket_mb = 25;      // gradient all-reduce bucket size (plain data parallelism)
};

class DataParallel {
 public:
  DataParallel(dist::Communicator& comm, const DistOptions& options, ParamStore& store);
  int rank() const { return comm_.rank(); }
  int size() const { return comm_.size(); }
  const DistOptions& options() const { return options_; }
  // The rows [row_begin, row_end) of a global micro-batch of `batch` rows that this process computes.
  int64_t row_begin(int64_t batch) const { return dist::share_begin(batch, size(), rank()); }
  int64_t row_end(int64_t batch) const { return dist::share_begin(batch, size(), rank() + 1); }
  // The ZeRO-1 shard of the parameter buffer this process updates: [shard_lo, shard_hi).
  int64_t shard_lo() const;
  int64_t shard_hi() const;

  // Same weights everywhere at the start (rank 0's).
  void broadcast_weights();
  // The hook for the last micro-batch's backward pass: all-reduces gradient buckets as they become final
  // (plain data parallelism; empty with --zero1). Call begin_step() before the step's first backward.
  void begin_step();
  Model::GradsReady grads_ready_hook();
  // After the last backward: every gradient summed over the processes (plain: the buckets not yet started
  // are started, then all are waited for; --zero1: this process's shard only, by a reduce-scatter).
  void finish_gradients();
  void reduce_loss(double& loss_sum, int64_t& counted);
  // The global gradient norm (--zero1: from the shards' sums of squares).
  double grad_norm(const AdamW& opt);
  // After an applied update (--zero1): every process gets every shard's new weights.
  void after_update();
  // The whole moments on rank 0 (--zero1; gathered into m, v), for the checkpoint. Every process calls it.
  void gather_moments(const AdamW& opt, std::vector<float>& m, std::vector<float>& v);

 private:
  void issue(int64_t lo, int64_t hi);
  dist::Communicator& comm_;
  DistOptions options_;
  ParamStore& store_;
  std::vector<int64_t> shard_counts_;
  int64_t bucket_elems_;
  int64_t pending_lo_ = 0, pending_hi_ = 0;  // final gradients not yet in a bucket
  std::vector<dist::Communicator::Handle> inflight_;
  bool hooked_ = false;  // this step's buckets were issued by the hook
};

}  // namespace txs
