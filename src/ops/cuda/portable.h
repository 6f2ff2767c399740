// Kernel bodies that compile for both sides: the CUDA kernels call them per thread (or per thread-block
// phase), and tests/test_cuda_bodies.cpp calls the same functions on the host, over the same index space, and
// checks them against the float64 CPU templates — so the indexing, strides and formulas of those kernels are
// tested on machines without a GPU. Bodies touch only plain pointers and use no CUDA-only features
// (no shared memory, no warp intrinsics); the reductions between phases are the kernels' own business.
// bf16 values are carried as their raw 16 bits (uint16_t) on both sides: widening is a shift, and rounding
// to nearest even (NaN kept quiet) is the same integer arithmetic as ops/bf16.h.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define TXS_HD __host__ __device__ __forceinline__
#else
#define TXS_HD inline
#endif

namespace txs::cuda {

TXS_HD float bf16_to_f32(uint16_t b) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(uint32_t(b) << 16);
#else
  const uint32_t u = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

TXS_HD uint16_t f32_to_bf16(float f) {
#if defined(__CUDA_ARCH__)
  uint32_t u = __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
#endif
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

// A weight element as fp32, whichever of the two storage types holds it.
TXS_HD float load_f32(const float* p, int64_t i) { return p[i]; }
TXS_HD float load_f32(const uint16_t* p, int64_t i) { return bf16_to_f32(p[i]); }

TXS_HD float sigmoid_f32(float x) { return 1.0f / (1.0f + expf(-x)); }

}  // namespace txs::cuda
