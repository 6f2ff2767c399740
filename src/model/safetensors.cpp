#include "model/safetensors.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json.h"

namespace txs {

const char* file_dtype_name(FileDType d) {
  switch (d) {
    case FileDType::F32: return "F32";
    case FileDType::BF16: return "BF16";
    case FileDType::F64: return "F64";
    case FileDType::I32: return "I32";
    case FileDType::I64: return "I64";
    case FileDType::U8: return "U8";
  }
  return "?";
}

size_t file_dtype_size(FileDType d) {
  switch (d) {
    case FileDType::F32: return 4;
    case FileDType::BF16: return 2;
    case FileDType::F64: return 8;
    case FileDType::I32: return 4;
    case FileDType::I64: return 8;
    case FileDType::U8: return 1;
  }
  return 0;
}

static bool parse_dtype(const std::string& s, FileDType& d) {
  static const std::pair<const char*, FileDType> table[] = {{"F32", FileDType::F32}, {"BF16", FileDType::BF16},
                                                        {"F64", FileDType::F64}, {"I32", FileDType::I32},
                                                        {"I64", FileDType::I64}, {"U8", FileDType::U8}};
  for (auto& [name, v] : table)
    if (s == name) {
      d = v;
      return true;
    }
  return false;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open ({})", path, std::strerror(errno));
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) fail("{}: read error", path);
  return s;
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) fail("{}: cannot create ({})", tmp, std::strerror(errno));
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      ::close(fd);
      fail("{}: write failed ({})", tmp, std::strerror(e));
    }
    done += size_t(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) fail("{}: fsync/close failed ({})", tmp, std::strerror(errno));
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    fail("{}: rename to {} failed ({})", tmp, path, std::strerror(errno));
}

SafetensorsReader::SafetensorsReader(const std::string& path) : path_(path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open ({})", path, std::strerror(errno));
  in.seekg(0, std::ios::end);
  file_size_ = uint64_t(in.tellg());
  in.seekg(0);
  if (file_size_ < 8) fail("{}: not a safetensors file (only {} bytes)", path, file_size_);
  unsigned char len_bytes[8];
  in.read(reinterpret_cast<char*>(len_bytes), 8);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | len_bytes[i];
  if (header_len == 0 || header_len > file_size_ - 8 || header_len > (100u << 20))
    fail("{}: malformed safetensors header length {} (file has {} bytes)", path, header_len, file_size_);
  std::string header(header_len, '\0');
  in.read(header.data(), std::streamsize(header_len));
  if (!in) fail("{}: truncated safetensors header", path);
  data_offset_ = 8 + header_len;
  const uint64_t data_size = file_size_ - data_offset_;
  const nlohmann::json j = parse_json_bounded(header, path + ": safetensors header");
  if (!j.is_object()) fail("{}: safetensors header is not a JSON object", path);
  for (auto& [name, v] : j.items()) {
    if (name == "__metadata__") {
      if (!v.is_object()) fail("{}: __metadata__ is not an object", path);
      for (auto& [k, mv] : v.items()) {
        if (!mv.is_string()) fail("{}: metadata value for '{}' is not a string", path, k);
        metadata_[k] = mv.get<std::string>();
      }
      continue;
    }
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
      fail("{}: tensor '{}' lacks dtype, shape or data_offsets", path, name);
    TensorInfo t;
    if (!v["dtype"].is_string() || !parse_dtype(v["dtype"].get<std::string>(), t.dtype))
      fail("{}: tensor '{}' has unsupported dtype {}", path, name, json_excerpt(v["dtype"]));
    if (!v["shape"].is_array()) fail("{}: tensor '{}' shape is not an array", path, name);
    for (auto& s : v["shape"]) {
      if (!s.is_number_integer() || s.get<int64_t>() < 0 || s.get<int64_t>() > (int64_t(1) << 40))
        fail("{}: tensor '{}' has an invalid shape {}", path, name, json_excerpt(v["shape"]));
      t.shape.push_back(s.get<int64_t>());
    }
    auto& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      fail("{}: tensor '{}' has invalid data_offsets", path, name);
    t.begin = off[0].get<uint64_t>();
    t.end = off[1].get<uint64_t>();
    if (t.begin > t.end || t.end > data_size)
      fail("{}: tensor '{}' data [{}, {}) lies outside the file's {} data bytes (truncated file?)", path, name,
           t.begin, t.end, data_size);
    int64_t numel = 1;
    uint64_t bytes = 0;
    for (auto s : t.shape)
      if (__builtin_mul_overflow(numel, s, &numel))
        fail("{}: tensor '{}' shape {} has too many elements", path, name, json_excerpt(v["shape"]));
    if (__builtin_mul_overflow(uint64_t(numel), uint64_t(file_dtype_size(t.dtype)), &bytes) ||
        bytes != t.end - t.begin)
      fail("{}: tensor '{}' byte size {} does not match its shape and dtype", path, name, t.end - t.begin);
    tensors_[name] = std::move(t);
  }
  // The format forbids overlapping tensors and holes: sorted by offset, the tensors tile [0, data size).
  std::vector<std::pair<const std::string*, const TensorInfo*>> order;
  for (auto& [name, t] : tensors_) order.emplace_back(&name, &t);
  std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
    return a.second->begin != b.second->begin ? a.second->begin < b.second->begin : a.second->end < b.second->end;
  });
  uint64_t covered = 0;
  const std::string* previous = nullptr;
  for (auto& [name, t] : order) {
    if (t->begin < covered)
      fail("{}: tensor '{}' data [{}, {}) overlaps tensor '{}' (ends at {})", path, *name, t->begin, t->end,
           *previous, covered);
    if (t->begin > covered)
      fail("{}: {} unused data bytes before tensor '{}' at offset {} (tensors must be contiguous)", path,
           t->begin - covered, *name, t->begin);
    covered = t->end;
    previous = name;
  }
  if (covered != data_size)
    fail("{}: {} data bytes after the last tensor (the tensors hold {} of {})", path, data_size - covered, covered,
         data_size);
}

const TensorInfo& SafetensorsReader::info(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) fail("{}: missing tensor '{}'", path_, name);
  return it->second;
}

std::vector<uint8_t> SafetensorsReader::read_raw(const std::string& name) const {
  const TensorInfo& t = info(name);
  std::vector<uint8_t> bytes(t.end - t.begin);
  std::ifstream in(path_, std::ios::binary);
  in.seekg(std::streamoff(data_offset_ + t.begin));
  in.read(reinterpret_cast<char*>(bytes.data()), std::streamsize(bytes.size()));
  if (!in) fail("{}: cannot read tensor '{}' (truncated file?)", path_, name);
  return bytes;
}

static std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

void SafetensorsReader::read_f32_into(const std::string& name, float* dst,
                                      const std::vector<int64_t>& expected_shape) const {
  const TensorInfo& t = info(name);
  if (t.shape != expected_shape)
    fail("{}: tensor '{}' has shape {}, expected {}", path_, name, shape_str(t.shape), shape_str(expected_shape));
  const int64_t n = t.numel();
  if (n == 0) return;  // an empty tensor (a zero dimension): nothing to read, and memcpy of null is undefined
  auto raw = read_raw(name);
  switch (t.dtype) {
    case FileDType::F32: std::memcpy(dst, raw.data(), size_t(n) * 4); break;
    case FileDType::BF16:
      for (int64_t i = 0; i < n; ++i) {
        uint32_t bits = uint32_t(raw[2 * i]) << 16 | uint32_t(raw[2 * i + 1]) << 24;
        std::memcpy(dst + i, &bits, 4);
      }
      break;
    case FileDType::F64:
      for (int64_t i = 0; i < n; ++i) {
        double d;
        std::memcpy(&d, raw.data() + 8 * i, 8);
        dst[i] = float(d);
      }
      break;
    default: fail("{}: tensor '{}' has dtype {}, expected a float type", path_, name, file_dtype_name(t.dtype));
  }
}

std::vector<float> SafetensorsReader::read_f32(const std::string& name) const {
  std::vector<float> v(size_t(info(name).numel()));
  read_f32_into(name, v.data(), info(name).shape);
  return v;
}

std::vector<double> SafetensorsReader::read_f64(const std::string& name) const {
  const TensorInfo& t = info(name);
  if (t.dtype == FileDType::F64) {
    auto raw = read_raw(name);
    std::vector<double> v(size_t(t.numel()));
    if (!raw.empty()) std::memcpy(v.data(), raw.data(), raw.size());
    return v;
  }
  auto f = read_f32(name);
  return std::vector<double>(f.begin(), f.end());
}

void SafetensorsWriter::add(const std::string& name, FileDType dtype, std::vector<int64_t> shape, const void* data) {
  entries_.push_back({name, dtype, std::move(shape), data});
}

void SafetensorsWriter::write(const std::string& path) const {
  nlohmann::ordered_json header;
  if (!metadata_.empty()) header["__metadata__"] = metadata_;
  uint64_t offset = 0;
  for (auto& e : entries_) {
    uint64_t n = 1;
    for (auto s : e.shape) n *= uint64_t(s);
    const uint64_t bytes = n * file_dtype_size(e.dtype);
    header[e.name] = {{"dtype", file_dtype_name(e.dtype)}, {"shape", e.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string h = header.dump();
  while ((h.size() + 8) % 8) h += ' ';  // data section 8-byte aligned
  std::string out;
  out.reserve(8 + h.size() + offset);
  uint64_t len = h.size();
  for (int i = 0; i < 8; ++i) out.push_back(char((len >> (8 * i)) & 0xff));
  out += h;
  for (auto& e : entries_) {
    uint64_t n = 1;
    for (auto s : e.shape) n *= uint64_t(s);
    out.append(static_cast<const char*>(e.data), n * file_dtype_size(e.dtype));
  }
  write_file_atomic(path, out);
}

}  // namespace txs
