// RMSNorm: y = g ⊙ x / sqrt(mean(x²) + eps). Statistics in fp32 or better.
// bf16 mode: fp32. The mean of squares over d values and its reciprocal root scale every output: a bf16
// input would put a 0.4% error on each row's scale, and the op is memory-bound, so bf16 would gain little.
#pragma once
#include <cstdint>

namespace txs::cpu {

// x, y: [rows, dim]; rstd: [rows] saved for the backward pass (may be null).
template <class T>
void rmsnorm_forward(const T* x, const T* gain, T* y, T* rstd, int64_t rows, int64_t dim, double eps);

// dx = ∂L/∂x (overwritten), dgain += ∂L/∂g. rstd from the forward pass.
template <class T>
void rmsnorm_backward(const T* dy, const T* x, const T* gain, const T* rstd, T* dx, T* dgain, int64_t rows,
                      int64_t dim);

}  // namespace txs::cpu
