// Operand checks shared by the backends: before a kernel sees an operand, its device, dtype and view are
// checked, so that a wrong view is a one-line error instead of an out-of-bounds read (or a host pointer
// handed to a GPU kernel).
#pragma once
#include <cstdint>

#include "core/error.h"
#include "ops/shapes.h"
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

// The op's shape with the operands' row strides filled in, after checking that the views match it: q/k/v/out
// rows and widths (attention), x/dt/B/C/y rows and widths and A/D per head (SSD).
inline AttentionShape operand_shape(AttentionShape s, const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor& out, const char* op) {
  need(k.stride == v.stride, op, "k and v must share a row stride");
  need(q.rows == s.batch * s.q_len && out.rows == q.rows && k.rows == s.batch * s.kv_len && v.rows == k.rows, op,
       "row counts differ from the shape");
  need(q.cols >= s.heads * s.head_dim && out.cols >= s.heads * s.head_dim && k.cols >= s.kv_heads * s.head_dim &&
           v.cols >= s.kv_heads * s.head_dim,
       op, "operand narrower than its heads");
  s.q_stride = q.stride, s.kv_stride = k.stride, s.out_stride = out.stride;
  return s;
}
inline SsdShape operand_shape(SsdShape s, const Tensor& x, const Tensor& dt, const Tensor& A, const Tensor& B,
                              const Tensor& C, const Tensor& D, const Tensor& y, const char* op) {
  const int64_t rows = s.batch * s.seq;
  need(x.rows == rows && dt.rows == rows && B.rows == rows && C.rows == rows && y.rows == rows, op,
       "row counts differ from batch·seq");
  need(x.cols >= s.heads * s.head_dim && y.cols >= s.heads * s.head_dim && dt.cols >= s.heads &&
           B.cols >= s.groups * s.state_dim && C.cols >= s.groups * s.state_dim,
       op, "operand narrower than its heads");
  need(A.numel() == s.heads && (!D || D.numel() == s.heads), op, "A and D need one value per head");
  need(B.stride == C.stride, op, "B and C must share a row stride");
  s.x_stride = x.stride, s.bc_stride = B.stride, s.dt_stride = dt.stride, s.y_stride = y.stride;
  return s;
}
// An SSD state operand, when given, is contiguous [batch, H·P·N].
inline void need_state(const SsdShape& s, const Tensor& st, const char* op) {
  need(!st || (st.contiguous() && st.numel() == s.batch * s.heads * s.head_dim * s.state_dim), op,
       "state must be contiguous [batch, H·P·N]");
}

}  // namespace txs
