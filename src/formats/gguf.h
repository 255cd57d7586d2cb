#pragma once
// GGUF v3, the file format of llama.cpp / GGML, written and read without GGML:
//
//   uint32 magic "GGUF"   uint32 version (3)   uint64 tensor count   uint64 metadata count
//   metadata: string key, uint32 value type, value        (strings: uint64 length + UTF-8 bytes;
//             arrays: uint32 element type, uint64 count, elements; arrays may nest)
//   tensor infos: string name, uint32 n_dims, uint64 ne[n_dims], uint32 ggml type,
//                 uint64 offset (relative to the data section, a multiple of the alignment)
//   padding to the alignment (metadata `general.alignment`, uint32, default 32)
//   data section: each tensor's bytes, each starting at an aligned offset
//
// Everything is little-endian. Dimensions are in GGML order: ne[0] is the contiguous one (a
// row's length), so a row-major [rows, cols] matrix has ne = {cols, rows}.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "util/mapped_file.h"

namespace tsumugi::formats {

// Metadata value types, numbered as in the file.
enum class GgufType : uint32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};
std::string_view gguf_type_name(GgufType t);

// One metadata value. Integers are held widened (`u` for unsigned, `i` for signed), floats as
// double; `type` says what the file stores, so a value read and written again is byte-identical.
struct GgufValue {
  GgufType type = GgufType::UINT32;
  uint64_t u = 0;
  int64_t i = 0;
  double f = 0;
  bool b = false;
  std::string s;
  GgufType elem_type = GgufType::UINT8;  // arrays: the element type
  std::vector<GgufValue> array;

  static GgufValue uint8(uint8_t v) { return unsigned_of(GgufType::UINT8, v); }
  static GgufValue uint16(uint16_t v) { return unsigned_of(GgufType::UINT16, v); }
  static GgufValue uint32(uint32_t v) { return unsigned_of(GgufType::UINT32, v); }
  static GgufValue uint64(uint64_t v) { return unsigned_of(GgufType::UINT64, v); }
  static GgufValue int8(int8_t v) { return signed_of(GgufType::INT8, v); }
  static GgufValue int16(int16_t v) { return signed_of(GgufType::INT16, v); }
  static GgufValue int32(int32_t v) { return signed_of(GgufType::INT32, v); }
  static GgufValue int64(int64_t v) { return signed_of(GgufType::INT64, v); }
  static GgufValue float32(float v);
  static GgufValue float64(double v);
  static GgufValue boolean(bool v);
  static GgufValue string(std::string v);
  static GgufValue array_of(GgufType elem, std::vector<GgufValue> items);
  static GgufValue strings(const std::vector<std::string>& items);
  static GgufValue float32s(const std::vector<float>& items);
  static GgufValue int32s(const std::vector<int32_t>& items);

  bool operator==(const GgufValue&) const = default;

 private:
  static GgufValue unsigned_of(GgufType t, uint64_t v);
  static GgufValue signed_of(GgufType t, int64_t v);
};

// Tensor element types (ggml_type numbers). Only the ones tsumugi writes can be written; the
// reader knows the block sizes of the others so it can validate and skip them.
enum class GgmlType : uint32_t { F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, BF16 = 30 };
std::string ggml_type_name(uint32_t type);
// Elements per block and bytes per block, or false for a type number this code does not know.
bool ggml_type_block(uint32_t type, uint64_t& block_elems, uint64_t& block_bytes);
// Bytes of a tensor of `type` with dimensions `ne`; throws when ne[0] is not a whole number of
// blocks or the size overflows.
uint64_t ggml_nbytes(uint32_t type, std::span<const uint64_t> ne);

// GGML's Q8_0: blocks of 32 weights, each an fp16 scale d = max|x| / 127 followed by 32 int8
// q = round(x / d) (computed, as GGML does, as x times the float reciprocal of d, rounding halves
// away from zero; an all-zero block has d = 0 and q = 0). 34 bytes a block.
constexpr int kQ8_0BlockElems = 32;
constexpr int kQ8_0BlockBytes = 34;
// n must be a multiple of 32; `out` holds n / 32 * 34 bytes.
void quantize_q8_0(const float* x, int64_t n, std::byte* out);
void dequantize_q8_0(const std::byte* in, int64_t n, float* out);

constexpr uint32_t kGgufDefaultAlignment = 32;

using GgufMetadata = std::vector<std::pair<std::string, GgufValue>>;

// One tensor to write: its bytes are produced by `fill` (called once, with a buffer of exactly
// ggml_nbytes(type, ne) bytes) just before they are written, so a model is converted one tensor
// at a time.
struct GgufTensorToWrite {
  std::string name;
  GgmlType type = GgmlType::F32;
  std::vector<uint64_t> ne;  // GGML order
  std::function<void(std::span<std::byte>)> fill;
};

// Writes a GGUF v3 file atomically (temporary name, renamed on success). Keys and tensor names
// must be unique. The alignment is `general.alignment` when the metadata has it (it must then be a
// UINT32 power of two), else 32. `on_tensor(bytes)` is called after each tensor is written.
void write_gguf(const std::string& path, const GgufMetadata& metadata, const std::vector<GgufTensorToWrite>& tensors,
                const std::function<void(uint64_t)>& on_tensor = {});

struct GgufTensorInfo {
  std::string name;
  uint32_t type = 0;           // ggml_type number
  std::vector<uint64_t> ne;    // GGML order
  uint64_t offset = 0;         // relative to the data section
  uint64_t info_offset = 0;    // where its tensor info starts in the file (for error messages)
  std::span<const std::byte> data;
  uint64_t numel() const;
};

// A GGUF file, memory-mapped read-only and validated on open: magic, version, counts, every
// string and array inside the file, known value types, `general.alignment`, tensor dimensions and
// types, and tensor data aligned, inside the file and not overlapping. A problem throws
// tsumugi::Error naming the file and the byte offset where it was found.
class GgufFile {
 public:
  explicit GgufFile(const std::string& path);
  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }  // file offset of the data section
  // Metadata in file order.
  const GgufMetadata& metadata() const { return metadata_; }
  const GgufValue* find(std::string_view key) const;
  const GgufValue& at(std::string_view key) const;  // throws naming the file and key when absent
  // Tensors in file order.
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(std::string_view name) const;
  // A tensor's elements as floats (F32, F16, BF16, Q8_0 dequantized); other types throw.
  std::vector<float> to_float(std::string_view name) const;

 private:
  std::string path_;
  MappedFile file_;
  const std::byte* map_ = nullptr;  // file_'s bytes
  size_t size_ = 0;
  uint32_t version_ = 0, alignment_ = kGgufDefaultAlignment;
  uint64_t data_offset_ = 0;
  GgufMetadata metadata_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
};

}  // namespace tsumugi::formats
