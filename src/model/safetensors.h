// Hugging Face safetensors: 8-byte little-endian header length, JSON header, raw little-endian data.
// Reading validates everything (lengths, offsets, dtypes, shapes) and reports the file on error.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/error.h"

namespace txs {

// The dtypes a safetensors file may hold (a superset of what backends compute in, ops/tensor.h).
enum class FileDType { F32, BF16, F64, I32, I64, U8 };
const char* file_dtype_name(FileDType d);
size_t file_dtype_size(FileDType d);

struct TensorInfo {
  FileDType dtype = FileDType::F32;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte offsets inside the data section
  // Product of the shape; throws txs::Error when a dimension is negative or the product overflows int64.
  int64_t numel() const {
    int64_t n = 1;
    for (auto s : shape)
      if (s < 0 || __builtin_mul_overflow(n, s, &n)) fail("tensor shape has too many elements (over 2^63)");
    return n;
  }
};

class SafetensorsReader {
 public:
  explicit SafetensorsReader(const std::string& path);  // throws txs::Error with the path on any defect
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool has(const std::string& name) const { return tensors_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const;
  // Reads a tensor converted to fp32 (F32, BF16 or F64 on disk); the shape must match when given.
  std::vector<float> read_f32(const std::string& name) const;
  void read_f32_into(const std::string& name, float* dst, const std::vector<int64_t>& expected_shape) const;
  std::vector<double> read_f64(const std::string& name) const;
  std::vector<uint8_t> read_raw(const std::string& name) const;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  uint64_t data_offset_ = 0;
  uint64_t file_size_ = 0;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

class SafetensorsWriter {
 public:
  void add(const std::string& name, FileDType dtype, std::vector<int64_t> shape, const void* data);
  void add_f32(const std::string& name, std::vector<int64_t> shape, const float* data) {
    add(name, FileDType::F32, std::move(shape), data);
  }
  void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }
  // Atomic: writes PATH.tmp, fsyncs it and renames it over PATH.
  void write(const std::string& path) const;

 private:
  struct Entry {
    std::string name;
    FileDType dtype;
    std::vector<int64_t> shape;
    const void* data;
  };
  std::vector<Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

// Writes bytes to PATH atomically (temp file in the same directory, fsync, rename).
void write_file_atomic(const std::string& path, const std::string& bytes);
std::string read_file(const std::string& path);  // throws txs::Error naming the path

}  // namespace txs
