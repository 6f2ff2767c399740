// Unified RoPE's cos/sin table in a backend's memory: one table per rotated dimension, shared by
// attention q,k and SSD C,B. Angles are computed in double on the host (ω_i = θ^(−2i/D), identical on
// every backend) and uploaded; the table grows geometrically, so positions are rarely re-uploaded.
#pragma once
#include <cstdint>
#include <vector>

#include "ops/backend.h"

namespace txs {

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
  int64_t positions_ = 0;
  std::vector<float> host_cos_, host_sin_;
  DeviceBuffer cos_, sin_;
};

}  // namespace txs
