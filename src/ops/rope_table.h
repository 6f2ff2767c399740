// Unified RoPE's cos/sin table in a backend's memory: one table per rotated dimension, shared by
// attention q,k and SSD C,B. Angles are computed in double on the host (ω_i = θ^(−2i/D), identical on
// every backend) and only the new rows are uploaded: decoding one token adds one row, not a table.
#pragma once
#include <cstdint>
#include <vector>

#include "ops/backend.h"

namespace txs {

// Rows [p0, p1) of a table of dimension `dim`: cos/sin[(p−p0)·dim/2 + i] of p·θ^(−2i/dim), angles in double.
// The one definition of the angles: the backend table below and the host table of the kernel tests use it.
void fill_rope_rows(int64_t dim, double theta, int64_t p0, int64_t p1, float* cos, float* sin);

class RopeTable {
 public:
  RopeTable(Backend& be, int64_t dim, double theta);
  // Makes positions [0, max_pos) available.
  void ensure(int64_t max_pos);
  RopeCoeffs coeffs() const;
  int64_t dim() const { return dim_; }

 private:
  int64_t dim_;
  double theta_;
  int64_t positions_ = 0, capacity_ = 0;  // rows filled, rows allocated (grown geometrically)
  std::vector<float> new_cos_, new_sin_;   // host staging of the rows being added
  DeviceBuffer cos_, sin_;
};

}  // namespace txs
