// exp(x) for the fp32 kernels (attention softmax, SSD decays). glibc's expf does not vectorise without
// -ffast-math and would cost more than the tile products, so: x = n·ln2 + r with |r| ≤ ln2/2, e^r by its
// Taylor series to degree 7 (error ~5e-9, below fp32 rounding), 2^n put straight into the exponent bits.
// x is clamped to [−87, 88] so 2^n stays a normal float: exp(−inf) gives ~1e-38, not 0, so callers zero
// masked entries themselves. The fp64 overload (gradient checks) is libm's exp: exactness matters there.
#pragma once
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>

namespace txs::cpu {

inline float exp_fast(float x) {
  x = std::min(std::max(x, -87.0f), 88.0f);
  // Adding 1.5·2^23 rounds x·log2(e) to an integer that lands in the low mantissa bits.
  const float shifter = 12582912.0f;
  const float t = x * 1.44269504088896341f + shifter;
  const float n = t - shifter;
  const int32_t ni = std::bit_cast<int32_t>(t) - std::bit_cast<int32_t>(shifter);
  const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;  // ln2 split in two: n·ln2_hi is exact
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  return p * std::bit_cast<float>((ni + 127) << 23);
}

inline double exp_fast(double x) { return std::exp(x); }

}  // namespace txs::cpu
