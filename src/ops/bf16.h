// bfloat16: the top 16 bits of an IEEE fp32 (8 exponent bits, 7 mantissa bits). Storage type only: the
// CPU kernels widen it to fp32 (a 16-bit shift) or feed it to AVX512-BF16 dot products that accumulate
// in fp32. Conversions from fp32 round to nearest, ties to even, and keep NaN a (quiet) NaN.
#pragma once
#include <cstdint>
#include <cstring>
#if defined(__AVX512BF16__)
#include <immintrin.h>
#endif

namespace txs {

struct bf16 {
  uint16_t bits = 0;
};

inline uint16_t bf16_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40u);  // NaN stays NaN (quiet)
  u += 0x7fffu + ((u >> 16) & 1u);                                            // round to nearest even
  return uint16_t(u >> 16);
}
inline bf16 to_bf16(float f) { return bf16{bf16_bits(f)}; }
inline float to_f32(bf16 b) {
  const uint32_t u = uint32_t(b.bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
// The value fp32 x takes once stored in bf16 (what a bf16 GEMM input sees).
inline float round_bf16(float x) { return to_f32(to_bf16(x)); }

// Whole arrays (host memory). With AVX512-BF16, 16 at a time by vcvtneps2bf16 (also round to nearest even;
// it flushes fp32 denormals, < 1.2e-38, to zero, where the scalar path keeps the nearest bf16 denormal).
inline void to_bf16(const float* src, bf16* dst, int64_t n) {
  int64_t i = 0;
#if defined(__AVX512BF16__)
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(src + i)));
#endif
  for (; i < n; ++i) dst[i] = to_bf16(src[i]);
}
inline void to_f32(const bf16* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = to_f32(src[i]);
}

}  // namespace txs
