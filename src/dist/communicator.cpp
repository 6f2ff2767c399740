#include "dist/communicator.h"

#include <cstdio>
#include <cstdlib>

#include "core/error.h"

namespace txs::dist {

#ifdef TRANSXSSM_MPI
std::unique_ptr<Communicator> mpi_communicator(double timeout_s);  // mpi_communicator.cpp
std::string mpi_library_version();
#endif
#if TRANSXSSM_NCCL
std::unique_ptr<Communicator> nccl_communicator(std::unique_ptr<Communicator> bootstrap);  // nccl_communicator.cpp
#endif

namespace {
// A world of one: every collective is the identity.
class SingleProcess final : public Communicator {
 public:
  const char* name() const override { return "single"; }
  int rank() const override { return 0; }
  int size() const override { return 1; }
  Handle allreduce_sum_async(const Tensor&) override { return 0; }
  void wait(Handle) override {}
  void reduce_scatter_sum(const Tensor&, const std::vector<int64_t>&) override {}
  void allgather(const Tensor&, const std::vector<int64_t>&) override {}
  void gather(const Tensor& local, const Tensor& full, const std::vector<int64_t>&, int) override {
    if (local.data != full.data) fail("internal: single-process gather into another buffer");
  }
  void broadcast(const Tensor&, int) override {}
  void barrier() override {}
  [[noreturn]] void abort(int code, const std::string& message) override {
    std::fprintf(stderr, "rank 0: %s\n", message.c_str());
    std::fflush(stderr);
    std::_Exit(code);
  }
};

bool launched_by_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"})
    if (std::getenv(v)) return true;
  return false;
}
}  // namespace

std::unique_ptr<Communicator> single_process_communicator() { return std::make_unique<SingleProcess>(); }

std::unique_ptr<Communicator> make_communicator(double timeout_s, Device device) {
#ifdef TRANSXSSM_MPI
  if (launched_by_mpi()) {
    std::unique_ptr<Communicator> mpi = mpi_communicator(timeout_s);
    if (device != Device::Cuda || mpi->size() == 1) return mpi;
#if TRANSXSSM_NCCL
    return nccl_communicator(std::move(mpi));
#else
    mpi->abort(2, "data-parallel training with --device cuda needs NCCL, and this build has none (TRANSXSSM_NCCL)");
#endif
  }
#else
  if (launched_by_mpi() && std::getenv("OMPI_COMM_WORLD_SIZE") && std::atoi(std::getenv("OMPI_COMM_WORLD_SIZE")) > 1)
    fail("this transxssm was built without MPI (TRANSXSSM_MPI=OFF): it cannot run as {} processes",
         std::getenv("OMPI_COMM_WORLD_SIZE"));
#endif
  (void)timeout_s;
  return single_process_communicator();
}

std::string mpi_description() {
#ifdef TRANSXSSM_MPI
  return mpi_library_version();
#else
  return "";
#endif
}

int64_t share_begin(int64_t n, int parts, int p) { return n * p / parts; }

std::vector<int64_t> share_counts(int64_t n, int parts) {
  std::vector<int64_t> c(static_cast<size_t>(parts));
  for (int p = 0; p < parts; ++p) c[size_t(p)] = share_begin(n, parts, p + 1) - share_begin(n, parts, p);
  return c;
}

}  // namespace txs::dist
