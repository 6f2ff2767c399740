// Operand checks shared by the backends: before a kernel sees an operand, its device, dtype and view are
// checked, so that a wrong view is a one-line error instead of an out-of-bounds read (or a host pointer
// handed to a GPU kernel).
#pragma once
#include <cstdint>

#include "core/error.h"
#include "ops/tensor.h"

namespace txs {

// Typed pointer of an operand (null when absent), after checking that it lives on `device` (the backend's)
// and holds T.
template <class T = float>
T* operand_ptr(const Tensor& t, Device device, const char* op) {
  if (!t.data) return nullptr;
  if (t.device != device)
    fail("{}: operand on device {}, the {} backend reads {} memory", op, device_name(t.device), device_name(device),
         device == Device::Cpu ? "host" : "device");
  if (t.dtype != dtype_of<T>())
    fail("{}: operand of dtype {} where {} is needed", op, dtype_name(t.dtype), dtype_name(dtype_of<T>()));
  if (t.rows < 0 || t.cols < 0 || (t.rows > 1 && t.stride < t.cols))
    fail("{}: bad view [{}, {}] stride {}", op, t.rows, t.cols, t.stride);
  return static_cast<T*>(t.data);
}

inline void need(bool ok, const char* op, const char* what) {
  if (!ok) fail("{}: {}", op, what);
}

// An operand that is given must be [rows, cols] (an absent one passes).
inline void need_shape(const Tensor& t, int64_t rows, int64_t cols, const char* op, const char* name) {
  if (t.data && (t.rows != rows || t.cols != cols))
    fail("{}: {} is [{}, {}], expected [{}, {}]", op, name, t.rows, t.cols, rows, cols);
}

}  // namespace txs
