// Test helpers shared by the kernel tests: central-difference gradients and small conversions.
#pragma once
#include <functional>
#include <vector>

#include "oracle.h"

namespace txs::test {

// ∂f/∂x by central differences, every element of x perturbed by ±h in turn (x is restored).
// For the smooth kernels here the error is O(h²) + O(ε|f|/h) ≈ 1e-10 relative at h = 1e-5.
inline std::vector<double> numeric_grad(const std::function<double()>& f, std::vector<double>& x, double h = 1e-5) {
  std::vector<double> g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double x0 = x[i];
    x[i] = x0 + h;
    const double fp = f();
    x[i] = x0 - h;
    const double fm = f();
    x[i] = x0;
    g[i] = (fp - fm) / (2 * h);
  }
  return g;
}

inline double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) s += a[i] * b[i];
  return s;
}

template <class T>
std::vector<T> cast(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}

inline OracleTensor tensor(std::vector<int64_t> shape, std::vector<double> data) {
  return {std::move(shape), std::move(data)};
}

}  // namespace txs::test
