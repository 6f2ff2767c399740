// Errors of the CUDA runtime and cuBLASLt become the project's one-line failures (core/error.h), naming the
// call that failed; launches are checked right after they are issued (configuration errors) — faults inside
// a kernel surface at the next synchronising call, which names itself.
#pragma once
#include <cuda_runtime_api.h>

#include "core/error.h"

#define TXS_CUDA_CHECK(call)                                                                             \
  do {                                                                                                   \
    const cudaError_t txs_err_ = (call);                                                                 \
    if (txs_err_ != cudaSuccess)                                                                         \
      ::txs::fail("CUDA error in {} ({}:{}): {}", #call, __FILE__, __LINE__, cudaGetErrorString(txs_err_)); \
  } while (0)

// After a <<<...>>> launch: its configuration error (cleared, so it is not blamed on a later launch), naming
// the kernel.
#define TXS_CUDA_LAUNCHED(name)                                                                          \
  do {                                                                                                   \
    const cudaError_t txs_err_ = cudaGetLastError();                                                     \
    if (txs_err_ != cudaSuccess)                                                                         \
      ::txs::fail("CUDA launch of {} failed ({}:{}): {}", name, __FILE__, __LINE__, cudaGetErrorString(txs_err_)); \
  } while (0)
