// Communication between the processes of a data-parallel run: the one interface the trainer uses, and the
// only place that knows how it is done. Today: MPI (mpi_communicator.cpp, the only code that calls MPI)
// and a single-process implementation (a world of one: every collective is the identity). A NCCL
// implementation for GPUs slots in behind the same interface: operands are Tensor views (ops/tensor.h),
// which carry their device.
//
// Every collective must be entered by every process in the same order (the trainer issues them in an
// order fixed by the model and the options). A collective that does not complete within the timeout
// given to make_communicator() ends the whole job: "rank R: collective timed out after S s (a peer died or
// hangs)", then an abort of every process. A process that dies ends the job through the launcher
// (mpirun kills the others and exits non-zero).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ops/tensor.h"

namespace txs::dist {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual const char* name() const = 0;  // "single", "mpi"
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Processes of this job on this machine (to divide the cores among them).
  virtual int local_size() const { return 1; }

  // ---- sums ---------------------------------------------------------------------------------------------
  // In-place sum over all processes of a contiguous F32 or F64 view; returns a handle to wait on. The view
  // must stay valid and untouched until wait().
  using Handle = int64_t;
  virtual Handle allreduce_sum_async(const Tensor& x) = 0;
  virtual void wait(Handle h) = 0;
  void allreduce_sum(const Tensor& x) { wait(allreduce_sum_async(x)); }
  // Lets outstanding nonblocking collectives progress (called between compute phases); never blocks.
  virtual void progress() {}

  // ---- sharded collectives (ZeRO-1) ---------------------------------------------------------------------
  // x is the whole contiguous F32 buffer, split into consecutive segments of counts[r] elements (one per
  // rank, Σ counts = numel). reduce_scatter_sum: afterwards segment rank() holds the sum over processes of
  // that segment (the other segments are left undefined). allgather: afterwards every segment holds what
  // its owner had in it.
  virtual void reduce_scatter_sum(const Tensor& x, const std::vector<int64_t>& counts) = 0;
  virtual void allgather(const Tensor& x, const std::vector<int64_t>& counts) = 0;
  // Gathers every rank's `local` (counts[r] elements) into `full` on `root` (ignored elsewhere).
  virtual void gather(const Tensor& local, const Tensor& full, const std::vector<int64_t>& counts, int root) = 0;

  virtual void broadcast(const Tensor& x, int root) = 0;
  virtual void barrier() = 0;
  // Prints "rank R: message" and ends every process of the job with exit status code.
  [[noreturn]] virtual void abort(int code, const std::string& message) = 0;
};

// The communicator of this process: MPI when the build has it and the process was started by an MPI
// launcher (mpirun sets OMPI_COMM_WORLD_SIZE, PMI_SIZE or PMIX_RANK), else a world of one (no MPI call is
// made, so a plain run is today's one-process trainer). timeout_s: how long a collective may wait.
// device: where the trainer's tensors live; a multi-process run on Device::Cuda gets the NCCL communicator
// (nccl_communicator.cpp: one GPU per process, MPI only to start it), or an error in a build without NCCL.
std::unique_ptr<Communicator> make_communicator(double timeout_s, Device device = Device::Cpu);
std::unique_ptr<Communicator> single_process_communicator();

// Whether this build can run across processes ("Open MPI 4.1.4"-style library version), or "" without MPI.
std::string mpi_description();

// Splits n elements (or rows) into `parts` consecutive shares as evenly as possible (share p starts at n·p/parts);
// shares differ by at most one. share_begin(n, parts, p) is where share p starts.
int64_t share_begin(int64_t n, int parts, int p);
std::vector<int64_t> share_counts(int64_t n, int parts);

}  // namespace txs::dist
