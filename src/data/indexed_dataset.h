#pragma once
// Megatron-LM's memory-mapped indexed dataset (`PREFIX.bin` + `PREFIX.idx`, "MMIDIDX"), the
// format Megatron-LM, NeMo and LLM-jp's training read pretraining tokens from.
//
// PREFIX.bin: the tokens of every sequence back to back, one dtype, little-endian, no header.
// PREFIX.idx (all little-endian, no padding; the arrays start at byte 34 and are NOT aligned):
//   offset 0   9 bytes  "MMIDIDX\0\0"
//   offset 9   uint64   version, always 1
//   offset 17  uint8    dtype code (DType below: 1 uint8 ... 4 int32 ... 8 uint16)
//   offset 18  uint64   S = sequence count
//   offset 26  uint64   D = length of the document index array (documents + 1)
//   offset 34  int32[S] sequence lengths, in tokens
//              int64[S] sequence pointers: byte offset of each sequence in .bin
//              int64[D] document indices: 0, then the sequence index where each document ends
//              (int8[S] sequence modes, only in "multimodal" datasets; never written here)
// S and D are written with struct.pack("<Q") (unsigned). A document with no sequences repeats
// the previous index. Megatron's IndexedDataset asserts document_indices[-1] == S.
// Checked against NVIDIA/Megatron-LM megatron/core/datasets/indexed_dataset.py (DType,
// _IndexWriter, _IndexReader, IndexedDatasetBuilder) and tools/preprocess_data.py.
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "util/mapped_file.h"

namespace tsumugi {
class OutputFile;
}

namespace tsumugi::data {

// Megatron's numeric dtype codes (indexed_dataset.py, class DType).
enum class DType : uint8_t { uint8 = 1, int8 = 2, int16 = 3, int32 = 4, int64 = 5, float64 = 6, float32 = 7, uint16 = 8 };

inline constexpr char kIndexMagic[9] = {'M', 'M', 'I', 'D', 'I', 'D', 'X', '\0', '\0'};
inline constexpr uint64_t kIndexVersion = 1;
inline constexpr size_t kIndexHeaderBytes = 34;

bool valid_dtype_code(uint8_t code);
size_t dtype_size(DType t);
std::string_view dtype_name(DType t);
// Megatron's DType.optimal_dtype: uint16 when the vocabulary has fewer than 65,500 entries, else int32.
DType optimal_dtype(int64_t vocab_size);
// Largest token id a dtype can hold (for the integer dtypes this writer produces).
int64_t dtype_max_token(DType t);

inline std::string bin_path(const std::string& prefix) { return prefix + ".bin"; }
inline std::string idx_path(const std::string& prefix) { return prefix + ".idx"; }

// Writes PREFIX.bin and PREFIX.idx. Tokens stream to .bin as they come; the index keeps
// 4 bytes per sequence (its length) and writes pointers and document indices at finish().
// Both files go through temporary names and appear only when finish() succeeds; a writer
// destroyed before that leaves nothing behind.
class IndexedDatasetWriter {
 public:
  IndexedDatasetWriter(std::string prefix, DType dtype);
  ~IndexedDatasetWriter();
  IndexedDatasetWriter(const IndexedDatasetWriter&) = delete;
  IndexedDatasetWriter& operator=(const IndexedDatasetWriter&) = delete;

  // One document made of one sequence (Megatron's add_document with a single length).
  void add_document(std::span<const int32_t> tokens);
  // Several sequences in one document: add_sequence()... then end_document().
  void add_sequence(std::span<const int32_t> tokens);
  void end_document();
  // Sequences already encoded in this writer's dtype (little-endian): `bytes` holds
  // lengths.size() sequences back to back, each its own document. Used by the parallel
  // tokenize job, whose workers convert tokens to the output dtype.
  void add_encoded_documents(std::string_view bytes, std::span<const int32_t> lengths);

  // Writes the index and renames both files into place (.bin first, then .idx).
  void finish();

  DType dtype() const { return dtype_; }
  uint64_t sequences() const { return lengths_.size(); }
  uint64_t documents() const;
  uint64_t tokens() const { return tokens_; }
  const std::string& prefix() const { return prefix_; }

  // Converts tokens to dtype's little-endian bytes, appending to out. Throws Error when a
  // token does not fit the dtype (negative, or >= 65,536 for uint16).
  static void encode_tokens(DType dtype, std::span<const int32_t> tokens, std::string& out);

 private:
  void push_length(size_t n);
  std::string prefix_;
  DType dtype_;
  std::unique_ptr<OutputFile> bin_;
  std::vector<int32_t> lengths_;
  // Document ends; kept only once some document has other than exactly one sequence
  // (until then the document index is 0, 1, ..., sequences and costs no memory).
  bool identity_docs_ = true;
  std::vector<int64_t> doc_ends_;
  uint64_t open_doc_sequences_ = 0;  // sequences added since the last document end
  uint64_t tokens_ = 0;
  bool finished_ = false;
  std::string scratch_;
};

// An array of T read from unaligned little-endian bytes (the .idx arrays start at byte 34).
template <typename T>
class PackedArray {
 public:
  PackedArray() = default;
  PackedArray(const char* p, size_t n) : p_(p), n_(n) {}
  size_t size() const { return n_; }
  bool empty() const { return n_ == 0; }
  T operator[](size_t i) const {
    T v;
    std::memcpy(&v, p_ + i * sizeof(T), sizeof(T));
    return v;
  }
  T back() const { return (*this)[n_ - 1]; }
  std::vector<T> to_vector() const {
    std::vector<T> v(n_);
    if (n_) std::memcpy(v.data(), p_, n_ * sizeof(T));
    return v;
  }
  class iterator {
   public:
    using value_type = T;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    iterator(const PackedArray* a, size_t i) : a_(a), i_(i) {}
    T operator*() const { return (*a_)[i_]; }
    iterator& operator++() {
      ++i_;
      return *this;
    }
    iterator operator++(int) {
      auto t = *this;
      ++i_;
      return t;
    }
    bool operator==(const iterator& o) const { return i_ == o.i_; }

   private:
    const PackedArray* a_ = nullptr;
    size_t i_ = 0;
  };
  iterator begin() const { return iterator(this, 0); }
  iterator end() const { return iterator(this, n_); }

 private:
  const char* p_ = nullptr;
  size_t n_ = 0;
};

// One sequence's tokens inside the mapped .bin, whatever the dtype.
class TokenView {
 public:
  TokenView() = default;
  TokenView(const void* data, size_t size, DType dtype) : data_(data), size_(size), dtype_(dtype) {}
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  DType dtype() const { return dtype_; }
  // Token i as an integer (integer dtypes only).
  int64_t operator[](size_t i) const;
  // The tokens in their stored type; throws Error when T is not the dataset's dtype.
  template <typename T>
  std::span<const T> as() const {
    check_type(dtype_for<T>());
    return {static_cast<const T*>(data_), size_};
  }
  // Appends the tokens as int32 (throws Error for float dtypes or int64 values out of range).
  void append_to(std::vector<int32_t>& out) const;

 private:
  template <typename T>
  static constexpr DType dtype_for() {
    if constexpr (std::is_same_v<T, uint8_t>) return DType::uint8;
    else if constexpr (std::is_same_v<T, int8_t>) return DType::int8;
    else if constexpr (std::is_same_v<T, int16_t>) return DType::int16;
    else if constexpr (std::is_same_v<T, uint16_t>) return DType::uint16;
    else if constexpr (std::is_same_v<T, int32_t>) return DType::int32;
    else if constexpr (std::is_same_v<T, int64_t>) return DType::int64;
    else if constexpr (std::is_same_v<T, float>) return DType::float32;
    else if constexpr (std::is_same_v<T, double>) return DType::float64;
    else static_assert(sizeof(T) == 0, "not a Megatron dtype");
  }
  void check_type(DType want) const;
  const void* data_ = nullptr;
  size_t size_ = 0;
  DType dtype_ = DType::int32;
};

// Memory-maps PREFIX.idx and PREFIX.bin read-only and throws Error naming the file and what
// is wrong, so a truncated or corrupt dataset fails at open rather than as wrong tokens later.
// Verify::full (the default) checks the header, the array sizes, every document index and
// every sequence's place in .bin (one pass over the index). Verify::quick, for very large
// datasets opened often, checks the header, the array sizes, the first and last document
// index and the .bin size implied by the last sequence; sequence() still bounds-checks each
// access.
class IndexedDataset {
 public:
  enum class Verify { full, quick };
  explicit IndexedDataset(const std::string& prefix, Verify verify = Verify::full);
  ~IndexedDataset();
  IndexedDataset(IndexedDataset&&) noexcept;
  IndexedDataset& operator=(IndexedDataset&&) noexcept;
  IndexedDataset(const IndexedDataset&) = delete;
  IndexedDataset& operator=(const IndexedDataset&) = delete;

  static bool exists(const std::string& prefix);

  // Number of sequences (Megatron's len(IndexedDataset)).
  size_t size() const { return lengths_.size(); }
  // Number of documents (document_indices().size() - 1).
  size_t document_count() const { return doc_idx_.size() - 1; }
  DType dtype() const { return dtype_; }
  uint64_t total_tokens() const { return total_tokens_; }
  bool has_modes() const { return modes_ != nullptr; }

  TokenView sequence(size_t i) const;
  // Replaces out with sequence i as int32.
  void get(size_t i, std::vector<int32_t>& out) const;
  template <typename T>
  std::span<const T> sequence_as(size_t i) const {
    return sequence(i).as<T>();
  }

  int32_t sequence_length(size_t i) const { return lengths_[i]; }
  int64_t sequence_pointer(size_t i) const { return pointers_[i]; }
  const PackedArray<int32_t>& sequence_lengths() const { return lengths_; }
  const PackedArray<int64_t>& sequence_pointers() const { return pointers_; }
  // 0, then the index of the sequence after each document's last one (Megatron's document_indices).
  const PackedArray<int64_t>& document_indices() const { return doc_idx_; }
  // Sequences [first, last) of document d.
  std::pair<size_t, size_t> document_sequences(size_t d) const;

  const std::string& prefix() const { return prefix_; }

 private:
  void close();
  std::string prefix_;
  DType dtype_ = DType::int32;
  MappedFile idx_, bin_;
  PackedArray<int32_t> lengths_;
  PackedArray<int64_t> pointers_, doc_idx_;
  const char* modes_ = nullptr;
  uint64_t total_tokens_ = 0;
};

}  // namespace tsumugi::data
