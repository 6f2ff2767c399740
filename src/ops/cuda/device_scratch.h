// Grow-only device scratch for kernels that need temporaries (attention's row statistics, the SSD's chunk
// states). One buffer per slot, allocated on first use and grown geometrically, never shrunk, so steady-state
// training allocates nothing. Safe because every op runs on the one default stream: a later op cannot
// overwrite scratch that an earlier op still reads, and cudaFree (on growth) waits for the device.
#pragma once
#include <cstddef>

namespace txs::cuda {

enum class ScratchSlot : int { Attention = 0, AttentionAux, Ssd, SsdAux, SsdAux2, Gemm, LmHead, Reduce, kCount };

// A device pointer to at least `bytes` bytes, 256-byte aligned; contents undefined.
void* scratch(ScratchSlot slot, size_t bytes);
// Frees every slot (process exit, tests).
void release_scratch();

}  // namespace txs::cuda
