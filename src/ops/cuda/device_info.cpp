// Which GPU this process uses (data parallelism binds one per process), and what it is (`transxssm devices`,
// the GPU check's report).
#include <cuda_runtime_api.h>
#include <fmt/format.h>

#include "ops/cuda/cuda_backend.h"
#include "ops/cuda/cuda_check.h"

namespace txs::cuda {

int select_device(int index) {
  int gpus = 0;
  TXS_CUDA_CHECK(cudaGetDeviceCount(&gpus));
  if (gpus <= 0) fail("no CUDA GPU visible to this process");
  TXS_CUDA_CHECK(cudaSetDevice(index % gpus));
  return gpus;
}

std::string device_description() {
  if (const std::string why = unavailable_reason(); !why.empty()) return why;
  int dev = 0, driver = 0, runtime = 0;
  TXS_CUDA_CHECK(cudaGetDevice(&dev));
  cudaDeviceProp p{};
  TXS_CUDA_CHECK(cudaGetDeviceProperties(&p, dev));
  TXS_CUDA_CHECK(cudaDriverGetVersion(&driver));
  TXS_CUDA_CHECK(cudaRuntimeGetVersion(&runtime));
  return fmt::format("{} (compute capability {}.{}, {} SMs, {:.1f} GiB), CUDA driver {}.{}, runtime {}.{}", p.name,
                     p.major, p.minor, p.multiProcessorCount, double(p.totalGlobalMem) / double(1ull << 30),
                     driver / 1000, driver % 1000 / 10, runtime / 1000, runtime % 1000 / 10);
}

}  // namespace txs::cuda
