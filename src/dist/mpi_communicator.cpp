// The MPI communicator: the only code that calls MPI. Every collective is issued nonblocking and completed
// by a polling wait with a deadline, so a peer that died or hangs ends the job with a clear message
// instead of a silent hang.
#ifdef TRANSXSSM_MPI
#include <mpi.h>

#include <chrono>
#include <algorithm>
#include <climits>
#include <cstring>
#include <cstdio>
#include <map>
#include <thread>

#include "core/error.h"
#include "dist/communicator.h"

namespace txs::dist {

namespace {

MPI_Datatype mpi_type(const Tensor& x) {
  switch (x.dtype) {
    case DType::F32: return MPI_FLOAT;
    case DType::F64: return MPI_DOUBLE;
    case DType::I32: return MPI_INT;
    default: fail("internal: MPI collective on a {} tensor", dtype_name(x.dtype));
  }
}

void check_view(const Tensor& x, const char* what) {
  if (!x.contiguous()) fail("internal: MPI {} on a strided view", what);
  if (x.device != Device::Cpu)
    fail("MPI {} on {} memory: the MPI communicator moves host memory only; data-parallel training on --device "
         "{} needs a communicator for device memory (NCCL), which this build does not have",
         what, device_name(x.device), device_name(x.device));
}

int to_int(int64_t n, const char* what) {
  if (n > INT_MAX) fail("MPI {}: {} elements is more than one MPI call carries", what, n);
  return int(n);
}

class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(double timeout_s) : timeout_s_(timeout_s) {
    int provided = 0;
    MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    MPI_Comm local;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &local);
    MPI_Comm_size(local, &local_size_);
    MPI_Comm_free(&local);
  }
  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
  }
  const char* name() const override { return "mpi"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_size() const override { return local_size_; }

  Handle allreduce_sum_async(const Tensor& x) override {
    check_view(x, "allreduce");
    // Views larger than one MPI count are summed in pieces of at most 2^30 elements.
    std::vector<MPI_Request> reqs;
    const int64_t n = x.numel(), piece = int64_t(1) << 30;
    for (int64_t off = 0; off < n; off += piece) {
      MPI_Request r;
      char* p = static_cast<char*>(x.data) + off * int64_t(dtype_size(x.dtype));
      MPI_Iallreduce(MPI_IN_PLACE, p, int(std::min(piece, n - off)), mpi_type(x), MPI_SUM, MPI_COMM_WORLD, &r);
      reqs.push_back(r);
    }
    const Handle h = next_++;
    pending_[h] = std::move(reqs);
    return h;
  }
  void wait(Handle h) override {
    auto it = pending_.find(h);
    if (it == pending_.end()) return;
    complete(it->second, "allreduce");
    pending_.erase(it);
  }
  void progress() override {
    for (auto& [h, reqs] : pending_) {
      int flag = 0;
      MPI_Testall(int(reqs.size()), reqs.data(), &flag, MPI_STATUSES_IGNORE);
    }
  }

  void reduce_scatter_sum(const Tensor& x, const std::vector<int64_t>& counts) override {
    check_view(x, "reduce-scatter");
    std::vector<int> c = ints(counts, "reduce-scatter");
    MPI_Request r;
    MPI_Ireduce_scatter(MPI_IN_PLACE, x.data, c.data(), mpi_type(x), MPI_SUM, MPI_COMM_WORLD, &r);
    complete1(r, "reduce-scatter");
    // MPI_IN_PLACE leaves this rank's block at the start of the buffer: move it to its segment.
    const int64_t off = offset(counts, rank_), es = int64_t(dtype_size(x.dtype));
    if (off > 0) {
      char* base = static_cast<char*>(x.data);
      std::memmove(base + off * es, base, size_t(counts[size_t(rank_)] * es));
    }
  }
  void allgather(const Tensor& x, const std::vector<int64_t>& counts) override {
    check_view(x, "allgather");
    std::vector<int> c = ints(counts, "allgather"), d = displs(counts);
    MPI_Request r;
    MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, x.data, c.data(), d.data(), mpi_type(x), MPI_COMM_WORLD, &r);
    complete1(r, "allgather");
  }
  void gather(const Tensor& local, const Tensor& full, const std::vector<int64_t>& counts, int root) override {
    check_view(local, "gather");
    std::vector<int> c = ints(counts, "gather"), d = displs(counts);
    MPI_Request r;
    if (rank_ == root) {
      check_view(full, "gather");
      // local may be a part of full (its own segment): then MPI_IN_PLACE.
      const char* own = static_cast<const char*>(full.data) + int64_t(d[size_t(root)]) * int64_t(dtype_size(full.dtype));
      const void* send = local.data == own ? MPI_IN_PLACE : local.data;
      MPI_Igatherv(send, c[size_t(rank_)], mpi_type(local), full.data, c.data(), d.data(), mpi_type(full), root,
                   MPI_COMM_WORLD, &r);
    } else {
      MPI_Igatherv(local.data, c[size_t(rank_)], mpi_type(local), nullptr, nullptr, nullptr, mpi_type(local), root,
                   MPI_COMM_WORLD, &r);
    }
    complete1(r, "gather");
  }
  void broadcast(const Tensor& x, int root) override {
    check_view(x, "broadcast");
    MPI_Request r;
    MPI_Ibcast(x.data, to_int(x.numel(), "broadcast"), mpi_type(x), root, MPI_COMM_WORLD, &r);
    complete1(r, "broadcast");
  }
  void barrier() override {
    MPI_Request r;
    MPI_Ibarrier(MPI_COMM_WORLD, &r);
    complete1(r, "barrier");
  }
  [[noreturn]] void abort(int code, const std::string& message) override {
    std::fprintf(stderr, "rank %d: %s\n", rank_, message.c_str());
    std::fflush(stderr);
    std::fflush(stdout);
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);
  }

 private:
  static std::vector<int> ints(const std::vector<int64_t>& v, const char* what) {
    std::vector<int> out;
    for (auto n : v) out.push_back(to_int(n, what));
    return out;
  }
  static int64_t offset(const std::vector<int64_t>& counts, int r) {
    int64_t o = 0;
    for (int k = 0; k < r; ++k) o += counts[size_t(k)];
    return o;
  }
  static std::vector<int> displs(const std::vector<int64_t>& counts) {
    std::vector<int> d;
    int64_t o = 0;
    for (auto n : counts) d.push_back(to_int(o, "displacement")), o += n;
    return d;
  }
  void complete1(MPI_Request r, const char* what) {
    std::vector<MPI_Request> v{r};
    complete(v, what);
  }
  // Polls until done: tight at first (a collective of a balanced step completes at once), then sleeping up
  // to 1 ms between tests so a waiting rank leaves the cores to the ones still computing.
  void complete(std::vector<MPI_Request>& reqs, const char* what) {
    const auto t0 = std::chrono::steady_clock::now();
    int flag = 0;
    for (int polls = 0;; ++polls) {
      MPI_Testall(int(reqs.size()), reqs.data(), &flag, MPI_STATUSES_IGNORE);
      if (flag) return;
      if (polls > 200) std::this_thread::sleep_for(std::chrono::microseconds(polls > 2000 ? 1000 : 50));
      if ((polls & 63) == 0) {
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (s > timeout_s_)
          abort(3, fmt::format("collective timed out after {:g} s (a peer died or hangs); {} aborted, the last "
                               "checkpoint is kept",
                               timeout_s_, what));
      }
    }
  }

  double timeout_s_;
  int rank_ = 0, size_ = 1, local_size_ = 1;
  Handle next_ = 1;
  std::map<Handle, std::vector<MPI_Request>> pending_;
};

}  // namespace

std::unique_ptr<Communicator> mpi_communicator(double timeout_s) { return std::make_unique<MpiCommunicator>(timeout_s); }

std::string mpi_library_version() {
  char v[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  MPI_Get_library_version(v, &len);
  std::string s(v, size_t(len));
  const size_t cut = s.find_first_of(",\n");
  return cut == std::string::npos ? s : s.substr(0, cut);
}

}  // namespace txs::dist
#endif
