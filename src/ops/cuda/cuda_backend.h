// The CUDA backend: the op table of ops/backend.h on one NVIDIA GPU (the current device of the process).
// Memory is device memory (cudaMalloc); every op is issued on the legacy default stream, so ops, copies,
// cuBLASLt calls and NCCL collectives are ordered without events, and synchronize() waits for all of them.
// Precision: fp32 operands, with the bf16 mixed-precision mode of the CPU backend (bf16 weight operands of
// the products, which then run on tensor cores with bf16 inputs and fp32 accumulation).
#pragma once
#include <string>

#include "ops/backend.h"

namespace txs::cuda {

// Why the CUDA backend cannot run in this process ("" when it can): no GPU, or the driver's error.
std::string unavailable_reason();
// "NVIDIA H200 (compute capability 9.0, 132 SMs, 139.8 GiB), CUDA driver 13.0, runtime 13.0", or why not.
std::string device_description();
// cudaSetDevice(index % GPUs) before the backend is first used; returns the number of GPUs.
int select_device(int index);
// The process-wide instance; fails with unavailable_reason() when there is no usable GPU.
Backend& cuda_backend();

}  // namespace txs::cuda
