#include "ops/cuda/device_scratch.h"

#include <algorithm>
#include <mutex>
#include <new>

#include "ops/cuda/cuda_check.h"

namespace txs::cuda {
namespace {

struct Slot {
  void* ptr = nullptr;
  size_t bytes = 0;
};
std::mutex g_mutex;
Slot g_slots[int(ScratchSlot::kCount)];

}  // namespace

void* scratch(ScratchSlot slot, size_t bytes) {
  std::lock_guard lock(g_mutex);
  Slot& s = g_slots[int(slot)];
  if (bytes > s.bytes) {
    const size_t old_bytes = s.bytes;
    if (s.ptr) {
      TXS_CUDA_CHECK(cudaDeviceSynchronize());
      TXS_CUDA_CHECK(cudaFree(s.ptr));
    }
    s.ptr = nullptr, s.bytes = 0;  // a failed allocation below leaves an empty slot, not a stale size
    // Geometric growth, or the exact size when the device has no room for the margin.
    size_t want = std::max(bytes, old_bytes + old_bytes / 2);
    cudaError_t err = cudaMalloc(&s.ptr, want);
    if (err == cudaErrorMemoryAllocation && want > bytes) {
      (void)cudaGetLastError();
      want = bytes;
      err = cudaMalloc(&s.ptr, want);
    }
    if (err == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      s.ptr = nullptr;
      throw std::bad_alloc();  // as the backend's alloc: callers that measure or evaluate report "out of memory"
    }
    TXS_CUDA_CHECK(err);
    s.bytes = want;
  }
  return s.ptr;
}

void release_scratch() {
  std::lock_guard lock(g_mutex);
  for (Slot& s : g_slots) {
    if (s.ptr) cudaFree(s.ptr);
    s = Slot{};
  }
}

}  // namespace txs::cuda
