// RMSNorm forward and backward. Row statistics accumulate in double (the spec asks for fp32 or better);
// rows are independent, so the row loops are parallel. The gain gradient is a sum over rows: it is
// computed per column slice so that no two threads write the same element and the result does not
// depend on the thread count.
#include "ops/cpu/rmsnorm.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"

namespace txs::cpu {

template <class T>
void rmsnorm_forward(const T* x, const T* gain, T* y, T* rstd, int64_t rows, int64_t dim, double eps) {
  if (rows < 0 || dim <= 0) fail("rmsnorm: bad shape rows={} dim={}", rows, dim);
  if (!(eps >= 0)) fail("rmsnorm: eps must be >= 0, got {}", eps);
#pragma omp parallel for schedule(static) if (rows * dim > 16384)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * dim;
    T* yr = y + r * dim;
    double ss = 0;
#pragma omp simd reduction(+ : ss)
    for (int64_t i = 0; i < dim; ++i) ss += double(xr[i]) * double(xr[i]);
    const T s = T(1.0 / std::sqrt(ss / double(dim) + eps));
    if (rstd) rstd[r] = s;
#pragma omp simd
    for (int64_t i = 0; i < dim; ++i) yr[i] = gain[i] * (xr[i] * s);
  }
}

template <class T>
void rmsnorm_backward(const T* dy, const T* x, const T* gain, const T* rstd, T* dx, T* dgain, int64_t rows,
                      int64_t dim) {
  if (rows < 0 || dim <= 0) fail("rmsnorm: bad shape rows={} dim={}", rows, dim);
  if (!rstd) fail("rmsnorm_backward: rstd from the forward pass is required");
  // dgain first: it reads dy and x, which the caller may let dx alias.
  if (dgain) {
#pragma omp parallel if (rows * dim > 16384)
    {
      // Column slice of this thread, in multiples of 16 so slices do not share cache lines.
      const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
      const int64_t per = ((dim + nt - 1) / nt + 15) / 16 * 16;
      const int64_t c0 = std::min(dim, t * per), c1 = std::min(dim, c0 + per);
      std::vector<double> acc(size_t(c1 - c0), 0.0);
      for (int64_t r = 0; r < rows; ++r) {
        const T* dyr = dy + r * dim;
        const T* xr = x + r * dim;
        const double s = double(rstd[r]);
        double* a = acc.data() - c0;
#pragma omp simd
        for (int64_t i = c0; i < c1; ++i) a[i] += double(dyr[i]) * double(xr[i]) * s;
      }
      for (int64_t i = c0; i < c1; ++i) dgain[i] += T(acc[size_t(i - c0)]);
    }
  }
  // y_i = g_i x_i s with s = (mean x² + eps)^(-1/2), ∂s/∂x_j = −s³ x_j / dim, so
  // dx_j = s·g_j·dy_j − (s³/dim)·x_j·Σ_i dy_i g_i x_i.
#pragma omp parallel for schedule(static) if (rows * dim > 16384)
  for (int64_t r = 0; r < rows; ++r) {
    const T* dyr = dy + r * dim;
    const T* xr = x + r * dim;
    T* dxr = dx + r * dim;
    const double s = double(rstd[r]);
    double dot = 0;
#pragma omp simd reduction(+ : dot)
    for (int64_t i = 0; i < dim; ++i) dot += double(dyr[i]) * double(gain[i]) * double(xr[i]);
    const T a = T(s), b = T(s * s * s * dot / double(dim));
#pragma omp simd
    for (int64_t i = 0; i < dim; ++i) dxr[i] = a * gain[i] * dyr[i] - b * xr[i];
  }
}

template void rmsnorm_forward<float>(const float*, const float*, float*, float*, int64_t, int64_t, double);
template void rmsnorm_forward<double>(const double*, const double*, double*, double*, int64_t, int64_t, double);
template void rmsnorm_backward<float>(const float*, const float*, const float*, const float*, float*, float*, int64_t,
                                      int64_t);
template void rmsnorm_backward<double>(const double*, const double*, const double*, const double*, double*, double*,
                                       int64_t, int64_t);

}  // namespace txs::cpu
