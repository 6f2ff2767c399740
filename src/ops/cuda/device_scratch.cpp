#include "ops/cuda/device_scratch.h"

#include <algorithm>
#include <mutex>

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
    // Queued kernels may still read the old buffer: wait for them (cudaFree does in practice, but does not
    // promise it). Growth is rare: steady-state steps never get here.
    if (s.ptr) {
      TXS_CUDA_CHECK(cudaDeviceSynchronize());
      TXS_CUDA_CHECK(cudaFree(s.ptr));
    }
    s.ptr = nullptr;
    const size_t want = std::max(bytes, s.bytes + s.bytes / 2);
    TXS_CUDA_CHECK(cudaMalloc(&s.ptr, want));
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
