// A read-only memory-mapped file: corpora and token shards are read through the page cache, so a
// gigabyte file costs address space, not resident memory.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

namespace txs {

class MappedFile {
 public:
  MappedFile() = default;
  // Throws txs::Error naming the file when it cannot be opened or mapped.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(MappedFile&& o) noexcept { swap(o); }
  MappedFile& operator=(MappedFile&& o) noexcept {
    swap(o);
    return *this;
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const char* data() const { return data_; }
  size_t size() const { return size_; }
  std::string_view view() const { return {data_, size_}; }
  const std::string& path() const { return path_; }

 private:
  void swap(MappedFile& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(size_, o.size_);
    std::swap(path_, o.path_);
  }
  const char* data_ = nullptr;
  size_t size_ = 0;
  std::string path_;
};

}  // namespace txs
