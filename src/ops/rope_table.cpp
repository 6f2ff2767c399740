#include "ops/rope_table.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace txs {

RopeTable::RopeTable(Backend& be, int64_t dim, double theta)
    : dim_(dim), theta_(theta), cos_(be, DType::F32), sin_(be, DType::F32) {
  if (dim_ <= 0 || dim_ % 2 != 0) fail("rope: dimension must be positive and even, got {}", dim_);
  if (!(theta_ > 0) || !std::isfinite(theta_)) fail("rope: theta must be positive and finite, got {}", theta_);
}

void RopeTable::ensure(int64_t max_pos) {
  if (max_pos <= positions_) return;
  const int64_t half = dim_ / 2;
  const int64_t want = std::max<int64_t>({max_pos, 2 * positions_, 1024});
  host_cos_.resize(size_t(want * half));
  host_sin_.resize(size_t(want * half));
  for (int64_t p = positions_; p < want; ++p) {
    for (int64_t i = 0; i < half; ++i) {
      const double omega = std::pow(theta_, -2.0 * double(i) / double(dim_));
      const double angle = double(p) * omega;
      host_cos_[size_t(p * half + i)] = float(std::cos(angle));
      host_sin_[size_t(p * half + i)] = float(std::sin(angle));
    }
  }
  cos_.resize(want * half);
  sin_.resize(want * half);
  cos_.backend()->upload(host_cos_.data(), cos_.flat());
  sin_.backend()->upload(host_sin_.data(), sin_.flat());
  positions_ = want;
}

RopeCoeffs RopeTable::coeffs() const {
  return {cos_.data<float>(), sin_.data<float>(), dim_, positions_};
}

}  // namespace txs
