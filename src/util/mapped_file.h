#pragma once
// A whole file memory-mapped read-only: the suffix index and the Megatron dataset reader both
// keep large files open this way instead of reading them into memory.
#include <cstddef>
#include <cstdint>
#include <string>

namespace tsumugi {

class MappedFile {
 public:
  MappedFile() = default;
  // Throws Error naming the path when it cannot be opened, stat'ed or mapped. An empty file maps
  // to nothing (data() is nullptr, size() 0): mmap refuses a zero length.
  explicit MappedFile(const std::string& path);
  ~MappedFile() { reset(); }
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  const char* chars() const { return reinterpret_cast<const char*>(data_); }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  // Unmaps now; the object is then empty.
  void reset();

 private:
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string path_;
};

}  // namespace tsumugi
