// Pointwise kernels of the blocks. Row loops are parallel; sums over rows (parameter gradients,
// embedding gradient) are split by column so that no two threads write the same element and the result
// does not depend on the thread count.
#include "ops/cpu/elementwise.h"
#include "ops/cpu/vec_exp.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "core/error.h"

namespace txs::cpu {

namespace {

constexpr int64_t kParallelMin = 16384;  // below this many elements threads cost more than they save

void check_rows(const char* what, int64_t rows, int64_t n) {
  if (rows < 0 || n < 0) fail("{}: bad shape rows={} n={}", what, rows, n);
}

// This thread's column slice [c0, c1) of [0, n), in multiples of 16 elements (no shared cache lines).
void column_slice(int64_t n, int64_t& c0, int64_t& c1) {
  const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
  const int64_t per = ((n + nt - 1) / nt + 15) / 16 * 16;
  c0 = std::min(n, t * per);
  c1 = std::min(n, c0 + per);
}

template <class T>
inline T sigmoid(T x) {
  return T(1) / (T(1) + exp_fast(-x));  // vectorisable fp32 exp (vec_exp.h); libm for fp64
}

}  // namespace

template <class T>
void silu_mul_forward(const T* gate, int64_t gate_stride, const T* up, int64_t up_stride, T* out, int64_t out_stride,
                      int64_t rows, int64_t n) {
  check_rows("silu_mul", rows, n);
#pragma omp parallel for schedule(static) if (rows * n > kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    const T* g = gate + r * gate_stride;
    const T* u = up + r * up_stride;
    T* o = out + r * out_stride;
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) o[i] = g[i] * sigmoid(g[i]) * u[i];
  }
}

template <class T>
void silu_mul_backward(const T* dout, int64_t out_stride, const T* gate, int64_t gate_stride, const T* up,
                       int64_t up_stride, T* dgate, T* dup, int64_t rows, int64_t n) {
  check_rows("silu_mul", rows, n);
#pragma omp parallel for schedule(static) if (rows * n > kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    const T* d = dout + r * out_stride;
    const T* g = gate + r * gate_stride;
    const T* u = up + r * up_stride;
    T* dg = dgate + r * gate_stride;
    T* du = dup + r * up_stride;
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      // Everything is read before anything is written, so dgate/dup may alias gate/up.
      const T gi = g[i], ui = u[i], di = d[i], s = sigmoid(gi);
      dg[i] = di * ui * s * (T(1) + gi * (T(1) - s));  // d silu(g)/dg = σ(g)(1 + g(1 − σ(g)))
      du[i] = di * gi * s;
    }
  }
}

template <class T>
void residual_forward(const T* skip, const T* w, const T* branch, T* out, int64_t rows, int64_t dim) {
  check_rows("residual", rows, dim);
#pragma omp parallel for schedule(static) if (rows * dim > kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    const T* s = skip + r * dim;
    const T* b = branch + r * dim;
    T* o = out + r * dim;
    if (w) {
#pragma omp simd
      for (int64_t i = 0; i < dim; ++i) o[i] = w[i] * s[i] + b[i];
    } else {
#pragma omp simd
      for (int64_t i = 0; i < dim; ++i) o[i] = s[i] + b[i];
    }
  }
}

template <class T>
void residual_backward(const T* dout, const T* skip, const T* w, T* dskip, T* dw, int64_t rows, int64_t dim) {
  check_rows("residual", rows, dim);
  const bool big = rows * dim > kParallelMin;
  // dw before dskip: dskip may alias dout.
  if (w && dw) {
#pragma omp parallel if (big)
    {
      int64_t c0, c1;
      column_slice(dim, c0, c1);
      std::vector<double> acc(size_t(c1 - c0), 0.0);
      double* a = acc.data() - c0;
      for (int64_t r = 0; r < rows; ++r) {
        const T* d = dout + r * dim;
        const T* s = skip + r * dim;
#pragma omp simd
        for (int64_t i = c0; i < c1; ++i) a[i] += double(d[i]) * double(s[i]);
      }
      for (int64_t i = c0; i < c1; ++i) dw[i] += T(a[i]);
    }
  }
  if (dskip == dout && !w) return;  // dskip = dout already
#pragma omp parallel for schedule(static) if (big)
  for (int64_t r = 0; r < rows; ++r) {
    const T* d = dout + r * dim;
    T* ds = dskip + r * dim;
    if (w) {
#pragma omp simd
      for (int64_t i = 0; i < dim; ++i) ds[i] = w[i] * d[i];
    } else {
#pragma omp simd
      for (int64_t i = 0; i < dim; ++i) ds[i] = d[i];
    }
  }
}

template <class T>
void softplus_forward(const T* raw, int64_t raw_stride, const T* bias, T* dt, int64_t rows, int64_t heads) {
  check_rows("softplus", rows, heads);
#pragma omp parallel for schedule(static) if (rows * heads > kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    const T* x = raw + r * raw_stride;
    T* o = dt + r * heads;
    for (int64_t h = 0; h < heads; ++h) {
      const T v = x[h] + (bias ? bias[h] : T(0));
      // softplus(v) = max(v, 0) + log1p(exp(−|v|)): no overflow for large v, exact tail for small v.
      o[h] = std::max(v, T(0)) + std::log1p(std::exp(-std::abs(v)));
    }
  }
}

template <class T>
void softplus_backward(const T* ddt, const T* raw, int64_t raw_stride, const T* bias, T* draw, T* dbias, int64_t rows,
                       int64_t heads) {
  check_rows("softplus", rows, heads);
#pragma omp parallel for schedule(static) if (rows * heads > kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    const T* x = raw + r * raw_stride;
    const T* d = ddt + r * heads;
    T* o = draw + r * raw_stride;
    for (int64_t h = 0; h < heads; ++h) o[h] = d[h] * sigmoid(x[h] + (bias ? bias[h] : T(0)));
  }
  // heads is small (one Δ per head): a serial column sum is cheap and deterministic.
  if (dbias) {
    std::vector<double> acc(size_t(heads), 0.0);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t h = 0; h < heads; ++h) acc[size_t(h)] += double(draw[r * raw_stride + h]);
    for (int64_t h = 0; h < heads; ++h) dbias[h] += T(acc[size_t(h)]);
  }
}

template <class TT, class T>
void embedding_forward(const int32_t* ids, const TT* table, T* out, int64_t rows, int64_t dim) {
  check_rows("embedding", rows, dim);
  for (int64_t r = 0; r < rows; ++r)
    if (ids[r] < 0) fail("embedding: negative token id {} at row {}", ids[r], r);
#pragma omp parallel for schedule(static) if (rows * dim > kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    if constexpr (std::is_same_v<TT, bf16>)
      to_f32(table + int64_t(ids[r]) * dim, out + r * dim, dim);  // the bf16 mode's table, widened exactly
    else
      std::copy_n(table + int64_t(ids[r]) * dim, dim, out + r * dim);
  }
}
template void embedding_forward<bf16, float>(const int32_t*, const bf16*, float*, int64_t, int64_t);

template <class T>
void embedding_backward(const int32_t* ids, const T* dout, T* dtable, int64_t rows, int64_t dim) {
  check_rows("embedding", rows, dim);
  for (int64_t r = 0; r < rows; ++r)
    if (ids[r] < 0) fail("embedding: negative token id {} at row {}", ids[r], r);
  // Several rows may carry the same id: a parallel loop over rows would race on dtable. Each thread
  // instead owns a slice of the columns and walks all rows in order, so the sums are race-free and
  // identical for every thread count.
#pragma omp parallel if (rows * dim > kParallelMin)
  {
    int64_t c0, c1;
    column_slice(dim, c0, c1);
    for (int64_t r = 0; r < rows; ++r) {
      const T* d = dout + r * dim;
      T* e = dtable + int64_t(ids[r]) * dim;
#pragma omp simd
      for (int64_t i = c0; i < c1; ++i) e[i] += d[i];
    }
  }
}

#define TXS_INSTANTIATE(T)                                                                                     \
  template void silu_mul_forward<T>(const T*, int64_t, const T*, int64_t, T*, int64_t, int64_t, int64_t);      \
  template void silu_mul_backward<T>(const T*, int64_t, const T*, int64_t, const T*, int64_t, T*, T*, int64_t, \
                                     int64_t);                                                                 \
  template void residual_forward<T>(const T*, const T*, const T*, T*, int64_t, int64_t);                       \
  template void residual_backward<T>(const T*, const T*, const T*, T*, T*, int64_t, int64_t);                  \
  template void softplus_forward<T>(const T*, int64_t, const T*, T*, int64_t, int64_t);                        \
  template void softplus_backward<T>(const T*, const T*, int64_t, const T*, T*, T*, int64_t, int64_t);         \
  template void embedding_forward<T, T>(const int32_t*, const T*, T*, int64_t, int64_t);                       \
  template void embedding_backward<T>(const int32_t*, const T*, T*, int64_t, int64_t);
TXS_INSTANTIATE(float)
TXS_INSTANTIATE(double)
#undef TXS_INSTANTIATE

}  // namespace txs::cpu
