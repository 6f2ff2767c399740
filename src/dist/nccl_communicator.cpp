// The data-parallel communicator of GPU runs: NCCL collectives on device memory, one process per GPU of one
// machine (mpirun -np N with N ≤ the GPUs it has), MPI only to start (the NCCL id is broadcast through it),
// to wait at barriers and to end the job. Built when MPI, the CUDA backend and NCCL are all there
// (TRANSXSSM_NCCL).
//
// Ordering: the CUDA backend issues every op on the legacy default stream, and so do these collectives, so a
// gradient bucket is summed after the backward pass that wrote it and before the optimizer reads it, without
// events; wait() only has to wait where the host reads the result. The cost: collectives do not overlap the
// backward pass yet (a second stream with events would).
// Uneven shards (ZeRO-1's share_counts) are not what ncclReduceScatter/ncclAllGather take, so reduce_scatter_sum
// is one ncclReduce per segment (root = its owner) and allgather one ncclBroadcast per segment, each set fused
// in an NCCL group.
// Host views (a few scalars per step, the root's host copy of gathered moments) go through MPI or a staging
// buffer. Not covered: NCCL blocks without a timeout, so a dead peer is found by mpirun (which ends the job), not by the
// --dist-timeout of the MPI collectives.
#if TRANSXSSM_NCCL
#include <cuda_runtime_api.h>  // cudaStreamLegacy: NCCL runs on the backend's stream
#include <nccl.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "core/error.h"
#include "dist/communicator.h"
#include "ops/backend.h"

namespace txs::dist {
namespace {

#define TXS_NCCL_CHECK(call)                                                                                   \
  do {                                                                                                         \
    const ncclResult_t r_ = (call);                                                                            \
    if (r_ != ncclSuccess) ::txs::fail("NCCL error in {}: {}", #call, ncclGetErrorString(r_));                 \
  } while (0)

ncclDataType_t nccl_type(const Tensor& x, const char* op) {
  if (x.device != Device::Cuda) fail("{}: the NCCL communicator sums GPU memory; got a {} view", op, device_name(x.device));
  if (!x.contiguous()) fail("{}: needs a contiguous view", op);
  if (x.dtype == DType::F32) return ncclFloat32;
  if (x.dtype == DType::F64) return ncclFloat64;
  fail("{}: dtype {} (only f32 and f64 are summed)", op, dtype_name(x.dtype));
}

char* at(const Tensor& x, int64_t element) {
  return static_cast<char*>(x.data) + element * int64_t(dtype_size(x.dtype));
}

class NcclCommunicator final : public Communicator {
 public:
  explicit NcclCommunicator(std::unique_ptr<Communicator> bootstrap) : mpi_(std::move(bootstrap)) {
    // One GPU per process of this machine, chosen by the launcher's local rank, before the backend is used.
    const char* local = std::getenv("OMPI_COMM_WORLD_LOCAL_RANK");
    if (!local) local = std::getenv("MPI_LOCALRANKID");
    const int gpus = select_cuda_device(local ? std::atoi(local) : mpi_->rank());
    if (mpi_->local_size() > gpus)
      fail("{} processes on this machine but {} GPU(s): data-parallel GPU training runs one process per GPU",
           mpi_->local_size(), gpus);
    // The id travels through MPI's broadcast as host bytes viewed as 32 floats (a bit-exact copy).
    ncclUniqueId id;
    static_assert(sizeof(id) % sizeof(float) == 0);
    if (mpi_->rank() == 0) TXS_NCCL_CHECK(ncclGetUniqueId(&id));
    mpi_->broadcast(vec(reinterpret_cast<float*>(&id), int64_t(sizeof(id) / sizeof(float))), 0);
    TXS_NCCL_CHECK(ncclCommInitRank(&comm_, mpi_->size(), id, mpi_->rank()));
  }
  ~NcclCommunicator() override {
    if (comm_) ncclCommDestroy(comm_);
  }
  const char* name() const override { return "nccl"; }
  int rank() const override { return mpi_->rank(); }
  int size() const override { return mpi_->size(); }
  int local_size() const override { return mpi_->local_size(); }

  Handle allreduce_sum_async(const Tensor& x) override {
    // Host values (the step's loss and token count, summed for the progress line) go through MPI, at once.
    if (x.device == Device::Cpu) {
      mpi_->allreduce_sum(x);
      return next_++;
    }
    const ncclDataType_t t = nccl_type(x, "allreduce");
    TXS_NCCL_CHECK(ncclAllReduce(x.data, x.data, size_t(x.numel()), t, ncclSum, comm_, cudaStreamLegacy));
    return next_++;
  }
  void wait(Handle) override { gpu().synchronize(); }

  void reduce_scatter_sum(const Tensor& x, const std::vector<int64_t>& counts) override {
    const ncclDataType_t t = nccl_type(x, "reduce_scatter");
    check_counts(x, counts, "reduce_scatter");
    TXS_NCCL_CHECK(ncclGroupStart());
    int64_t off = 0;
    for (int r = 0; r < size(); off += counts[size_t(r)], ++r)
      TXS_NCCL_CHECK(ncclReduce(at(x, off), at(x, off), size_t(counts[size_t(r)]), t, ncclSum, r, comm_, cudaStreamLegacy));
    TXS_NCCL_CHECK(ncclGroupEnd());
  }
  void allgather(const Tensor& x, const std::vector<int64_t>& counts) override {
    const ncclDataType_t t = nccl_type(x, "allgather");
    check_counts(x, counts, "allgather");
    TXS_NCCL_CHECK(ncclGroupStart());
    int64_t off = 0;
    for (int r = 0; r < size(); off += counts[size_t(r)], ++r)
      TXS_NCCL_CHECK(ncclBroadcast(at(x, off), at(x, off), size_t(counts[size_t(r)]), t, r, comm_, cudaStreamLegacy));
    TXS_NCCL_CHECK(ncclGroupEnd());
  }
  // The root's `full` may be host memory (the trainer gathers the ZeRO-1 moments into a host vector for the
  // checkpoint): then the pieces meet in a temporary device buffer that is copied down once.
  void gather(const Tensor& local, const Tensor& full, const std::vector<int64_t>& counts, int root) override {
    const ncclDataType_t t = nccl_type(local, "gather");
    const int64_t mine = counts[size_t(rank())];
    if (local.numel() != mine) fail("gather: local view has {} elements, counts say {}", local.numel(), mine);
    const size_t es = dtype_size(local.dtype);
    char* dest = nullptr;
    DeviceBuffer staging;
    if (rank() == root) {
      int64_t total = 0;
      for (int64_t c : counts) total += c;
      if (full.numel() != total || !full.contiguous() || full.dtype != local.dtype)
        fail("gather: the root's full view is not {} contiguous {} elements", total, dtype_name(local.dtype));
      if (full.device == Device::Cuda) {
        dest = static_cast<char*>(full.data);
      } else {
        staging = DeviceBuffer(gpu(), local.dtype, total);
        dest = static_cast<char*>(staging.raw());
      }
    }
    TXS_NCCL_CHECK(ncclGroupStart());
    if (rank() == root) {
      int64_t off = 0;
      for (int r = 0; r < size(); off += counts[size_t(r)], ++r) {
        if (r == root) {
          if (dest + off * int64_t(es) != local.data) {
            Tensor mine_in_full = local;
            mine_in_full.data = dest + off * int64_t(es);
            gpu().copy(local, mine_in_full);
          }
        } else {
          TXS_NCCL_CHECK(ncclRecv(dest + off * int64_t(es), size_t(counts[size_t(r)]), t, r, comm_, cudaStreamLegacy));
        }
      }
    } else {
      TXS_NCCL_CHECK(ncclSend(local.data, size_t(mine), t, root, comm_, cudaStreamLegacy));
    }
    TXS_NCCL_CHECK(ncclGroupEnd());
    if (staging.size() > 0) gpu().download(staging.flat(), full.data);
  }
  void broadcast(const Tensor& x, int root) override {
    if (x.device == Device::Cpu) return mpi_->broadcast(x, root);  // host values (the run's seed, ids)
    const ncclDataType_t t = nccl_type(x, "broadcast");
    TXS_NCCL_CHECK(ncclBroadcast(x.data, x.data, size_t(x.numel()), t, root, comm_, cudaStreamLegacy));
  }
  void barrier() override {
    gpu().synchronize();
    mpi_->barrier();
  }
  [[noreturn]] void abort(int code, const std::string& message) override {
    if (comm_) ncclCommAbort(comm_), comm_ = nullptr;
    mpi_->abort(code, message);
    std::_Exit(code);  // not reached: the bootstrap's abort does not return
  }

 private:
  void check_counts(const Tensor& x, const std::vector<int64_t>& counts, const char* op) const {
    int64_t total = 0;
    for (int64_t c : counts) total += c;
    if (int(counts.size()) != size() || total != x.numel())
      fail("{}: {} counts summing to {} for {} processes and {} elements", op, counts.size(), total, size(), x.numel());
  }
  // The CUDA backend: the communicator's own device work (staging, waiting) goes through the op table.
  static Backend& gpu() { return backend_for(Device::Cuda); }
  std::unique_ptr<Communicator> mpi_;
  ncclComm_t comm_ = nullptr;
  Handle next_ = 1;
};

}  // namespace

std::unique_ptr<Communicator> nccl_communicator(std::unique_ptr<Communicator> bootstrap) {
  return std::make_unique<NcclCommunicator>(std::move(bootstrap));
}

}  // namespace txs::dist
#endif  // TRANSXSSM_NCCL
