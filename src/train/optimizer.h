// AdamW over a ParamStore: first and second moments for every parameter in the backend's memory,
// decoupled weight decay only where the parameter was declared with decay (not on norms, residual scales,
// A_log, dt_bias, D, biases), global-norm clipping. Every pass over the buffers is a Backend op.
#pragma once
#include <vector>
#include <cstdint>

#include "model/params.h"
#include "ops/backend.h"

namespace txs {

struct AdamWConfig {
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.1, clip_norm = 1.0;
};

// Optimizer-state sharding (ZeRO-1): an AdamW given the shard [shard_lo, shard_hi) of the parameter buffer
// holds the moments of that range only and updates only those weights (clipping only those gradients);
// the data-parallel trainer reduce-scatters the gradients before and all-gathers the weights after.
class AdamW {
 public:
  AdamW(Backend& backend, ParamStore& store, AdamWConfig config, int64_t shard_lo = 0, int64_t shard_hi = -1);
  // Clips the gradients to clip_norm (when > 0), applies one update with learning rate lr, returns the
  // gradient norm before clipping. Same as apply(lr, grad_norm()).
  double step(double lr);
  // The global gradient norm, so a caller can refuse a non-finite step before anything is updated.
  double grad_norm() const;
  // Σ g² over this optimizer's shard (the whole buffer unless sharded): summed over the shards of all
  // processes, the square of the global norm.
  double shard_sum_squares() const;
  int64_t shard_lo() const { return lo_; }
  int64_t shard_hi() const { return lo_ + m_.size(); }
  bool sharded() const { return m_.size() != store_.size(); }
  // step() with the norm grad_norm() returned for the current gradients.
  void apply(double lr, double grad_norm);
  int64_t steps_done() const { return step_; }
  void set_steps_done(int64_t s) { step_ = s; }
  // The moments, parallel to the shard of the parameter buffer, in the backend's memory.
  Tensor m_tensor() const { return m_.flat(); }
  Tensor v_tensor() const { return v_.flat(); }
  // Direct pointers to the moments: the CPU backend only (tests); elsewhere they fail. Checkpoint I/O goes
  // through m_tensor()/v_tensor() and the backend's upload/download.
  float* m() { return host_pointer(m_); }
  float* v() { return host_pointer(v_); }
  const float* m() const { return host_pointer(m_); }
  const float* v() const { return host_pointer(v_); }
  int64_t size() const { return m_.size(); }  // the shard's size
  int64_t params_size() const { return store_.size(); }
  Backend& backend() const { return be_; }
  // True when both moments are finite (checked before a checkpoint is saved or after one is loaded).
  bool state_finite() const { return be_.all_finite(m_.flat()) && be_.all_finite(v_.flat()); }

 private:
  Backend& be_;
  ParamStore& store_;
  AdamWConfig config_;
  int64_t lo_ = 0;
  DeviceBuffer m_, v_;
  std::vector<AdamWSegment> segments_;  // the parameters' runs in the shard (rebuilt each step, no allocation)
  int64_t step_ = 0;
  float* host_pointer(const DeviceBuffer& b) const;
};

}  // namespace txs
