// Typed views of backend memory, and the buffers that own it.
//
// Why a 2-D view and not an N-D tensor: every operand of every op in this engine is a row-major matrix,
// very often a column slice of a wider fused buffer (x/B/C/dt, q/k/v, gate/up share one GEMM output), so
// (rows, cols, row stride) describes all of them; a [batch, seq, heads, dim] operand is the matrix
// [batch·seq, heads·dim] and the op's shape struct (ops/shapes.h) says how columns split into heads.
// A vector is one row. The dtype and the device travel with the pointer, so a backend can refuse an
// operand it cannot read (fp32 kernel given bf16, host pointer given to a GPU kernel) instead of reading
// garbage, and a new dtype is a new case in the backend, not a new op signature.
#pragma once
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

#include "ops/bf16.h"

namespace txs {

enum class DType : uint8_t { F32, BF16, F64, I32 };
enum class Device : uint8_t { Cpu, Cuda };

size_t dtype_size(DType t);
const char* dtype_name(DType t);
const char* device_name(Device d);

template <class T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::F32; }
template <> constexpr DType dtype_of<double>() { return DType::F64; }
template <> constexpr DType dtype_of<int32_t>() { return DType::I32; }
template <> constexpr DType dtype_of<bf16>() { return DType::BF16; }

struct Tensor {
  void* data = nullptr;  // null: an absent optional operand
  DType dtype = DType::F32;
  Device device = Device::Cpu;
  int64_t rows = 0, cols = 0;
  int64_t stride = 0;  // elements between the starts of consecutive rows (≥ cols)

  explicit operator bool() const { return data != nullptr; }
  int64_t numel() const { return rows * cols; }
  bool contiguous() const { return rows <= 1 || stride == cols; }
  // Columns [c0, c0+n) of every row: same rows and stride.
  Tensor col_slice(int64_t c0, int64_t n) const;
  // Rows [r0, r0+n).
  Tensor row_slice(int64_t r0, int64_t n) const;
  // The typed pointer; throws when the dtype is not T.
  template <class T> T* as() const;
};

// Views of memory the caller knows to live on `device` (host pointers: Device::Cpu).
template <class T>
Tensor view(T* p, int64_t rows, int64_t cols, int64_t stride = -1, Device device = Device::Cpu) {
  Tensor t;
  t.data = const_cast<void*>(static_cast<const void*>(p));
  t.dtype = dtype_of<std::remove_const_t<T>>();
  t.device = device;
  t.rows = rows, t.cols = cols, t.stride = stride < 0 ? cols : stride;
  return t;
}
template <class T>
Tensor vec(T* p, int64_t n, Device device = Device::Cpu) {
  return view(p, 1, n, n, device);
}

class Backend;

// Owning, contiguous, typed storage in one backend's memory. resize() grows without preserving the
// contents (work buffers: allocated once, reused every step); grow_preserving() keeps them (KV caches).
// Copying a buffer copies its contents through the backend, so a sequence state is a plain value.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(Backend& be, DType dtype = DType::F32) : be_(&be), dtype_(dtype) {}
  DeviceBuffer(Backend& be, DType dtype, int64_t numel) : be_(&be), dtype_(dtype) { resize(numel); }
  ~DeviceBuffer() { release(); }
  DeviceBuffer(const DeviceBuffer& o);
  DeviceBuffer& operator=(const DeviceBuffer& o);
  DeviceBuffer(DeviceBuffer&& o) noexcept { swap(o); }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    swap(o);
    return *this;
  }

  // Binds an empty buffer to a backend (a default-constructed one has none).
  void bind(Backend& be, DType dtype = DType::F32) {
    release();
    be_ = &be, dtype_ = dtype;
  }
  void resize(int64_t numel);
  void grow_preserving(int64_t numel);  // capacity ≥ numel, first size() elements kept; size() = numel
  void zero();
  void release();

  int64_t size() const { return size_; }
  int64_t capacity() const { return capacity_; }
  size_t bytes() const { return size_t(size_) * dtype_size(dtype_); }
  DType dtype() const { return dtype_; }
  Backend* backend() const { return be_; }
  void* raw() const { return ptr_; }
  template <class T> T* data() const {
    (void)Tensor{ptr_, dtype_}.as<T>();
    return static_cast<T*>(ptr_);
  }
  // The whole buffer as [rows, cols] (rows·cols ≤ size()), or as one row.
  Tensor mat(int64_t rows, int64_t cols) const;
  Tensor flat() const { return mat(1, size_); }

 private:
  void swap(DeviceBuffer& o) noexcept {
    std::swap(be_, o.be_), std::swap(ptr_, o.ptr_), std::swap(dtype_, o.dtype_);
    std::swap(size_, o.size_), std::swap(capacity_, o.capacity_);
  }
  Backend* be_ = nullptr;
  void* ptr_ = nullptr;
  DType dtype_ = DType::F32;
  int64_t size_ = 0, capacity_ = 0;
};

// Scratch for one op sequence (a layer's backward pass): take() hands out buffers that stay valid until
// reset(). Blocks are kept between steps, so after the first step nothing is allocated; if a step needed
// more than one block, reset() merges them into one of the total size for the next step.
class Arena {
 public:
  explicit Arena(Backend& be) : be_(be) {}
  Tensor take(int64_t rows, int64_t cols, DType dtype = DType::F32);
  void reset();

 private:
  Backend& be_;
  struct Block {
    DeviceBuffer buf;
    int64_t used = 0;  // bytes
  };
  std::vector<Block> blocks_;
  int64_t high_water_ = 0;  // bytes taken in the largest step so far
  int64_t taken_ = 0;
};

}  // namespace txs
