#pragma once
// The safetensors file format (Hugging Face), used for model weights and checkpoints:
//
//   offset 0   uint64 LE    N = length of the header
//   offset 8   N bytes      JSON object, UTF-8, padded with spaces to a multiple of 8 bytes:
//                             {"__metadata__": {"key": "value", ...},            (optional)
//                              "name": {"dtype": "F32", "shape": [2, 3],
//                                       "data_offsets": [BEGIN, END]}, ...}
//   offset 8+N              the data: each tensor's bytes, row-major, little-endian, at
//                           [BEGIN, END) relative to this point
//
// The tensors' byte ranges must tile the data exactly (no gaps, no overlaps, nothing after
// the last one), and END - BEGIN must equal the element count times the dtype's size; the
// reference reader (safetensors crate) refuses anything else, and so does ours.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace tsumugi::formats {

// Byte-sized element types of the format, spelled as in the header.
enum class DType { BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64 };

size_t dtype_size(DType t);
std::string_view dtype_name(DType t);
// The dtype a header spells `name`, or nullopt when it is not one of the above.
std::optional<DType> parse_dtype(std::string_view name);

// Scalar conversions between float and the 16-bit float formats (round to nearest even;
// NaN stays NaN, overflow becomes infinity).
float bf16_to_float(uint16_t h);
uint16_t float_to_bf16(float f);
float f16_to_float(uint16_t h);
uint16_t float_to_f16(float f);

// Product of the dimensions (1 for a scalar, shape []).
int64_t shape_numel(std::span<const int64_t> shape);

// One tensor to write. Give its bytes either as `data` (host memory holding exactly
// numel × dtype_size bytes, read during write) or as `fill`, called with a buffer of that
// size just before the tensor is written, so large checkpoints can be staged one tensor at a
// time (e.g. copied from a device) instead of all at once.
struct TensorToWrite {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  std::function<void(std::span<std::byte>)> fill;
};

// Writes a safetensors file atomically (a temporary in the same directory, renamed into
// place on success). Tensors are laid out in the order given; names must be unique and not
// "__metadata__". Throws tsumugi::Error naming the file and the offending tensor.
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// A tensor of an open file. `data` points into the mapped file and is valid while the
// SafetensorsFile lives; it has no alignment guarantee beyond 1 byte.
struct TensorView {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t offset = 0;  // of the first byte, relative to the start of the data section
  std::span<const std::byte> data;
  int64_t numel() const { return shape_numel(shape); }
};

// A safetensors file, memory-mapped read-only and validated on open. Any problem with the
// file (truncated, bad JSON, offsets out of range or overlapping, size mismatch, duplicate
// names, unknown dtype) throws tsumugi::Error naming the file and what is wrong.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(SafetensorsFile&& o) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&& o) noexcept;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  // Tensors in the order of their data in the file.
  const std::vector<TensorView>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool contains(std::string_view name) const { return find(name) != nullptr; }
  const TensorView* find(std::string_view name) const;
  // Throws naming the file and the tensor when it is absent.
  const TensorView& at(std::string_view name) const;
  // The tensor's elements as floats, converted from F32, F16, BF16 or F64; other dtypes throw.
  std::vector<float> to_float(std::string_view name) const;
  // Byte offset of the data section within the file (8 + header length).
  uint64_t data_start() const { return data_start_; }
  // Bytes of the file (all of it is mapped).
  uint64_t file_bytes() const { return map_size_; }
  // Asks the kernel to back the mapping with huge pages where the file system allows (fewer TLB
  // misses when a decoder streams every weight each token). Only advice: errors are ignored.
  void advise_huge_pages() const;

 private:
  void parse_header(std::string_view header, uint64_t data_size);
  std::string path_;
  const std::byte* map_ = nullptr;
  size_t map_size_ = 0;
  uint64_t data_start_ = 0;
  std::vector<TensorView> tensors_;
  std::map<std::string, size_t, std::less<>> index_;
  std::map<std::string, std::string> metadata_;
};

// The safetensors of a model directory as transformers writes them: DIR/model.safetensors, or the
// shards that DIR/model.safetensors.index.json maps tensor names to. Opening checks that every
// shard the index names exists, is a file inside DIR and holds the tensors listed for it.
class SafetensorsDir {
 public:
  explicit SafetensorsDir(const std::string& dir);
  bool has(std::string_view name) const { return where_.find(name) != where_.end(); }
  // The tensor and its file; throws naming the index (or file) and the tensor when it is absent.
  std::pair<const TensorView*, const SafetensorsFile*> get(std::string_view name) const;
  const std::vector<SafetensorsFile>& files() const { return files_; }
  // The index, or the single file: what error messages name.
  const std::string& described() const { return described_; }

 private:
  std::vector<SafetensorsFile> files_;
  std::map<std::string, std::size_t, std::less<>> where_;
  std::string described_;
};

}  // namespace tsumugi::formats
