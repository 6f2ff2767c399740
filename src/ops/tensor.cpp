#include "ops/tensor.h"

#include <algorithm>

#include "core/error.h"
#include "ops/backend.h"

namespace txs {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::BF16: return 2;
    case DType::F64: return 8;
    case DType::I32: return 4;
  }
  return 0;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::BF16: return "bf16";
    case DType::F64: return "f64";
    case DType::I32: return "i32";
  }
  return "?";
}

const char* device_name(Device d) { return d == Device::Cpu ? "cpu" : "cuda"; }

Tensor Tensor::col_slice(int64_t c0, int64_t n) const {
  if (c0 < 0 || n < 0 || c0 + n > cols) fail("tensor: columns [{}, {}) outside [0, {})", c0, c0 + n, cols);
  Tensor t = *this;
  t.data = static_cast<char*>(data) + size_t(c0) * dtype_size(dtype);
  t.cols = n;
  return t;
}

Tensor Tensor::row_slice(int64_t r0, int64_t n) const {
  if (r0 < 0 || n < 0 || r0 + n > rows) fail("tensor: rows [{}, {}) outside [0, {})", r0, r0 + n, rows);
  Tensor t = *this;
  t.data = static_cast<char*>(data) + size_t(r0 * stride) * dtype_size(dtype);
  t.rows = n;
  return t;
}

template <class T>
T* Tensor::as() const {
  if (data && dtype != dtype_of<T>())
    fail("tensor: expected dtype {}, got {}", dtype_name(dtype_of<T>()), dtype_name(dtype));
  return static_cast<T*>(data);
}
template float* Tensor::as<float>() const;
template double* Tensor::as<double>() const;
template int32_t* Tensor::as<int32_t>() const;
template bf16* Tensor::as<bf16>() const;

DeviceBuffer::DeviceBuffer(const DeviceBuffer& o) : be_(o.be_), dtype_(o.dtype_) {
  resize(o.size_);
  if (size_) be_->copy(o.flat(), flat());
}

DeviceBuffer& DeviceBuffer::operator=(const DeviceBuffer& o) {
  if (this == &o) return *this;
  if (be_ != o.be_ || dtype_ != o.dtype_) release();
  be_ = o.be_, dtype_ = o.dtype_;
  resize(o.size_);
  if (size_) be_->copy(o.flat(), flat());
  return *this;
}

void DeviceBuffer::release() {
  if (ptr_) be_->free(ptr_);
  ptr_ = nullptr, size_ = capacity_ = 0;
}

void DeviceBuffer::resize(int64_t n) {
  if (n < 0) fail("buffer: negative size {}", n);
  if (n > capacity_) {
    if (!be_) fail("buffer: not bound to a backend");
    release();
    ptr_ = be_->alloc(size_t(n) * dtype_size(dtype_));
    capacity_ = n;
  }
  size_ = n;
}

void DeviceBuffer::grow_preserving(int64_t n) {
  if (n <= capacity_) {
    size_ = n;
    return;
  }
  DeviceBuffer bigger(*be_, dtype_);
  bigger.resize(std::max(n, capacity_ * 2));
  if (size_) be_->copy(flat(), bigger.flat().col_slice(0, size_));
  bigger.size_ = n;
  swap(bigger);
}

void DeviceBuffer::zero() {
  if (size_) be_->fill(flat(), 0.0);
}

Tensor DeviceBuffer::mat(int64_t rows, int64_t cols) const {
  if (rows < 0 || cols < 0 || rows * cols > size_)
    fail("buffer: view [{}, {}] exceeds its {} elements", rows, cols, size_);
  Tensor t;
  t.data = ptr_, t.dtype = dtype_, t.device = be_ ? be_->device() : Device::Cpu;
  t.rows = rows, t.cols = cols, t.stride = cols;
  return t;
}

Tensor Arena::take(int64_t rows, int64_t cols, DType dtype) {
  const int64_t bytes = (rows * cols * int64_t(dtype_size(dtype)) + 63) / 64 * 64;
  taken_ += bytes;
  Block* b = blocks_.empty() ? nullptr : &blocks_.back();
  if (!b || b->used + bytes > int64_t(b->buf.bytes())) {
    blocks_.push_back(Block{DeviceBuffer(be_, DType::F32), 0});
    blocks_.back().buf.resize(std::max(bytes, high_water_) / 4);
    b = &blocks_.back();
  }
  Tensor t;
  t.data = static_cast<char*>(b->buf.raw()) + b->used;
  t.dtype = dtype, t.device = be_.device();
  t.rows = rows, t.cols = cols, t.stride = cols;
  b->used += bytes;
  return t;
}

void Arena::reset() {
  high_water_ = std::max(high_water_, taken_);
  taken_ = 0;
  if (blocks_.size() > 1) {  // merge: one block of the high-water size serves the next step alone
    blocks_.clear();
    blocks_.push_back(Block{DeviceBuffer(be_, DType::F32), 0});
    blocks_.back().buf.resize(high_water_ / 4);
  }
  for (auto& b : blocks_) b.used = 0;
}

}  // namespace txs
