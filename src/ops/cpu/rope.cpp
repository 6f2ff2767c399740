// Rotate-half RoPE with one shared cos/sin table (spec section 3).
#include "ops/cpu/rope.h"

#include <cmath>

#include "core/error.h"
#include "ops/rope_table.h"

namespace txs::cpu {

void RopeTable::ensure(int64_t max_pos) {
  if (dim_ <= 0 || dim_ % 2 != 0) fail("rope: dimension must be positive and even, got {}", dim_);
  if (!(theta_ > 0)) fail("rope: theta must be positive, got {}", theta_);
  if (max_pos <= max_pos_) return;
  const int64_t half = dim_ / 2;
  cos_.resize(size_t(max_pos * half));
  sin_.resize(size_t(max_pos * half));
  // Only the new positions are filled: rows already handed out keep their values.
  fill_rope_rows(dim_, theta_, max_pos_, max_pos, cos_.data() + max_pos_ * half, sin_.data() + max_pos_ * half);
  max_pos_ = max_pos;
}

template <class T>
void rope_apply(T* x, int64_t rows, int64_t heads, int64_t row_stride, const int32_t* pos, const RopeCoeffs& table,
                bool inverse) {
  const int64_t D = table.dim, half = D / 2;
  if (D <= 0 || D % 2 != 0) fail("rope: dimension must be positive and even, got {}", D);
  if (rows < 0 || heads < 0) fail("rope: bad shape rows={} heads={}", rows, heads);
  if (rows > 1 && row_stride < heads * D) fail("rope: row stride {} < heads·dim {}", row_stride, heads * D);
  // Positions are checked before the parallel loop: an exception must not leave an OpenMP region.
  for (int64_t r = 0; r < rows; ++r)
    if (pos[r] < 0 || pos[r] >= table.positions)
      fail("rope: position {} outside the table [0, {})", pos[r], table.positions);
  // The inverse rotation R(−t) = R(t)ᵀ: same table, negated sine. Being the exact transpose (also with
  // the float-rounded table) it is the backward pass of the forward rotation.
  const T sign = inverse ? T(-1) : T(1);
#pragma omp parallel for schedule(static) if (rows * heads * D > 16384)
  for (int64_t r = 0; r < rows; ++r) {
    const float* c = table.cos + pos[r] * half;
    const float* s = table.sin + pos[r] * half;
    for (int64_t h = 0; h < heads; ++h) {
      T* lo = x + r * row_stride + h * D;
      T* hi = lo + half;
#pragma omp simd
      for (int64_t i = 0; i < half; ++i) {
        const T a = lo[i], b = hi[i], ci = T(c[i]), si = sign * T(s[i]);
        lo[i] = a * ci - b * si;
        hi[i] = b * ci + a * si;
      }
    }
  }
}

template void rope_apply<float>(float*, int64_t, int64_t, int64_t, const int32_t*, const RopeCoeffs&, bool);
template void rope_apply<double>(double*, int64_t, int64_t, int64_t, const int32_t*, const RopeCoeffs&, bool);

}  // namespace txs::cpu
