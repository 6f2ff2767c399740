// What the process's GPU is, for `transxssm devices` and the GPU check's report.
#include <cuda_runtime_api.h>
#include <fmt/format.h>

#include "ops/cuda/cuda_backend.h"
#include "ops/cuda/cuda_check.h"

namespace txs::cuda {

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
