#include "ops/rope_table.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace txs {

void fill_rope_rows(int64_t dim, double theta, int64_t p0, int64_t p1, float* cos, float* sin) {
  const int64_t half = dim / 2;
  for (int64_t p = p0; p < p1; ++p) {
    for (int64_t i = 0; i < half; ++i) {
      const double omega = std::pow(theta, -2.0 * double(i) / double(dim));
      const double angle = double(p) * omega;
      cos[(p - p0) * half + i] = float(std::cos(angle));
      sin[(p - p0) * half + i] = float(std::sin(angle));
    }
  }
}

RopeTable::RopeTable(Backend& be, int64_t dim, double theta)
    : dim_(dim), theta_(theta), cos_(be, DType::F32), sin_(be, DType::F32) {
  if (dim_ <= 0 || dim_ % 2 != 0) fail("rope: dimension must be positive and even, got {}", dim_);
  if (!(theta_ > 0) || !std::isfinite(theta_)) fail("rope: theta must be positive and finite, got {}", theta_);
}

void RopeTable::ensure(int64_t max_pos) {
  if (max_pos <= positions_) return;
  const int64_t half = dim_ / 2, rows = max_pos - positions_;
  if (max_pos > capacity_) {
    capacity_ = std::max<int64_t>({max_pos, 2 * capacity_, 1024});
    cos_.grow_preserving(capacity_ * half);  // rows already handed out keep their values
    sin_.grow_preserving(capacity_ * half);
  }
  new_cos_.resize(size_t(rows * half));
  new_sin_.resize(size_t(rows * half));
  fill_rope_rows(dim_, theta_, positions_, max_pos, new_cos_.data(), new_sin_.data());
  cos_.backend()->upload(new_cos_.data(), cos_.flat().col_slice(positions_ * half, rows * half));
  sin_.backend()->upload(new_sin_.data(), sin_.flat().col_slice(positions_ * half, rows * half));
  positions_ = max_pos;
}

RopeCoeffs RopeTable::coeffs() const {
  return {cos_.data<float>(), sin_.data<float>(), dim_, positions_};
}

}  // namespace txs
