// Unified RoPE: one cos/sin table (per rotated dimension D) shared by attention q,k and SSD C,B.
// Rotate-half pairing: element i pairs with i + D/2; ω_i = θ^(−2i/D).
// bf16 mode: fp32. It rotates fp32 activations in place between a GEMM output and the attention/scan; the
// angles reach 10⁴ radians at long context, where a bf16 cos/sin would be wrong in the second digit.
#pragma once
#include <cstdint>
#include <vector>

#include "ops/shapes.h"

namespace txs::cpu {

// A host-memory table for direct kernel calls (the kernel tests); the model uses the backend-resident
// txs::RopeTable of ops/rope_table.h. Both fill their rows with fill_rope_rows.
class RopeTable {
 public:
  RopeTable(int64_t dim, double theta) : dim_(dim), theta_(theta) {}
  // Makes positions [0, max_pos) available. Angles are computed in double, stored as float.
  void ensure(int64_t max_pos);
  int64_t dim() const { return dim_; }
  double theta() const { return theta_; }
  int64_t max_pos() const { return max_pos_; }
  const float* cos_row(int64_t pos) const { return cos_.data() + pos * (dim_ / 2); }
  const float* sin_row(int64_t pos) const { return sin_.data() + pos * (dim_ / 2); }
  RopeCoeffs coeffs() const { return {cos_.data(), sin_.data(), dim_, max_pos_}; }

 private:
  int64_t dim_;
  double theta_;
  int64_t max_pos_ = 0;
  std::vector<float> cos_, sin_;
};

// Rotates, in place, `heads` vectors of size c.dim in each of `rows` rows of x. Row r starts at
// x + r*row_stride and sits at position pos[r]. inverse=true rotates by −pos: the backward pass.
template <class T>
void rope_apply(T* x, int64_t rows, int64_t heads, int64_t row_stride, const int32_t* pos, const RopeCoeffs& c,
                bool inverse);
template <class T>
void rope_apply(T* x, int64_t rows, int64_t heads, int64_t row_stride, const int32_t* pos, const RopeTable& table,
                bool inverse) {
  rope_apply(x, rows, heads, row_stride, pos, table.coeffs(), inverse);
}

}  // namespace txs::cpu
