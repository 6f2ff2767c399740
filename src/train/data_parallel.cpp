#include "train/data_parallel.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace txs {

DataParallel::DataParallel(dist::Communicator& comm, const DistOptions& options, ParamStore& store)
    : comm_(comm), options_(options), store_(store), shard_counts_(dist::share_counts(store.size(), comm.size())),
      bucket_elems_(std::max<int64_t>(1, int64_t(options.bucket_mb * 1024 * 1024 / sizeof(float)))) {}

int64_t DataParallel::shard_lo() const { return dist::share_begin(store_.size(), size(), rank()); }
int64_t DataParallel::shard_hi() const { return dist::share_begin(store_.size(), size(), rank() + 1); }

void DataParallel::broadcast_weights() { comm_.broadcast(store_.all_weights(), 0); }

void DataParallel::begin_step() {
  pending_lo_ = pending_hi_ = store_.size();
  inflight_.clear();
  hooked_ = false;
}

void DataParallel::issue(int64_t lo, int64_t hi) {
  inflight_.push_back(comm_.allreduce_sum_async(store_.all_grads().col_slice(lo, hi - lo)));
}

Model::GradsReady DataParallel::grads_ready_hook() {
  if (options_.zero1) return {};
  return [this](int64_t lo, int64_t hi) {
    if (hi != pending_lo_) fail("internal: gradients became final out of order ([{}, {}) after {})", lo, hi, pending_lo_);
    hooked_ = true;
    pending_lo_ = lo;
    // Buckets follow the order in which the backward pass finishes parameters, the same on every process.
    if (pending_hi_ - pending_lo_ >= bucket_elems_) {
      issue(pending_lo_, pending_hi_);
      pending_hi_ = pending_lo_;
    }
    comm_.progress();
  };
}

void DataParallel::finish_gradients() {
  if (options_.zero1) {
    comm_.reduce_scatter_sum(store_.all_grads(), shard_counts_);
    return;
  }
  if (!hooked_) pending_lo_ = 0;  // no hook ran: one all-reduce of everything
  if (pending_lo_ != 0) fail("internal: the backward pass left gradients [0, {}) unreported", pending_lo_);
  if (pending_hi_ > pending_lo_) issue(pending_lo_, pending_hi_);
  for (auto h : inflight_) comm_.wait(h);
  inflight_.clear();
}

void DataParallel::reduce_loss(double& loss_sum, int64_t& counted) {
  double v[2] = {loss_sum, double(counted)};
  comm_.allreduce_sum(vec(v, 2));
  loss_sum = v[0];
  counted = int64_t(std::llround(v[1]));
}

double DataParallel::grad_norm(const AdamW& opt) {
  if (!options_.zero1) return opt.grad_norm();
  double s = opt.shard_sum_squares();
  comm_.allreduce_sum(vec(&s, 1));
  return std::sqrt(s);
}

void DataParallel::after_update() {
  if (options_.zero1) comm_.allgather(store_.all_weights(), shard_counts_);
}

void DataParallel::gather_moments(const AdamW& opt, std::vector<float>& m, std::vector<float>& v) {
  if (!opt.sharded()) return;
  const bool root = rank() == 0;
  if (root) m.resize(size_t(store_.size())), v.resize(size_t(store_.size()));
  comm_.gather(opt.m_tensor(), root ? vec(m.data(), store_.size()) : Tensor{}, shard_counts_, 0);
  comm_.gather(opt.v_tensor(), root ? vec(v.data(), store_.size()) : Tensor{}, shard_counts_, 0);
}

}  // namespace txs
