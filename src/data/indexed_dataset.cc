#include "data/indexed_dataset.h"

#include <sys/stat.h>

#include <bit>
#include <limits>

#include "util/error.h"
#include "util/io.h"
#include "util/mapped_file.h"

namespace tsumugi::data {

static_assert(std::endian::native == std::endian::little,
              "the Megatron format is little-endian; this build writes native integers");

bool valid_dtype_code(uint8_t code) { return code >= 1 && code <= 8; }

size_t dtype_size(DType t) {
  switch (t) {
    case DType::uint8:
    case DType::int8: return 1;
    case DType::int16:
    case DType::uint16: return 2;
    case DType::int32:
    case DType::float32: return 4;
    case DType::int64:
    case DType::float64: return 8;
  }
  fail("unknown dtype code {}", int(t));
}

std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::uint8: return "uint8";
    case DType::int8: return "int8";
    case DType::int16: return "int16";
    case DType::int32: return "int32";
    case DType::int64: return "int64";
    case DType::float64: return "float64";
    case DType::float32: return "float32";
    case DType::uint16: return "uint16";
  }
  return "unknown";
}

DType optimal_dtype(int64_t vocab_size) { return vocab_size < 65500 ? DType::uint16 : DType::int32; }

int64_t dtype_max_token(DType t) {
  switch (t) {
    case DType::uint8: return 255;
    case DType::int8: return 127;
    case DType::int16: return 32767;
    case DType::uint16: return 65535;
    case DType::int32: return std::numeric_limits<int32_t>::max();
    case DType::int64: return std::numeric_limits<int32_t>::max();  // tokens come in as int32
    default: fail("dtype {} cannot hold token ids", dtype_name(t));
  }
}

// ---------------------------------------------------------------------------------------
// Writer

IndexedDatasetWriter::IndexedDatasetWriter(std::string prefix, DType dtype) : prefix_(std::move(prefix)), dtype_(dtype) {
  if (!valid_dtype_code(uint8_t(dtype)) || dtype == DType::float32 || dtype == DType::float64)
    fail("indexed dataset tokens need an integer dtype (got {})", dtype_name(dtype));
  bin_ = std::make_unique<OutputFile>(bin_path(prefix_));
}

IndexedDatasetWriter::~IndexedDatasetWriter() = default;

uint64_t IndexedDatasetWriter::documents() const { return identity_docs_ ? lengths_.size() : doc_ends_.size(); }

void IndexedDatasetWriter::encode_tokens(DType dtype, std::span<const int32_t> tokens, std::string& out) {
  if (tokens.empty()) return;
  size_t w = dtype_size(dtype);
  size_t base = out.size();
  out.resize(base + tokens.size() * w);
  char* p = out.data() + base;
  const int64_t maxv = dtype_max_token(dtype);
  for (size_t i = 0; i < tokens.size(); ++i) {
    int32_t t = tokens[i];
    if (t < 0 || t > maxv)
      fail("token id {} does not fit the dataset dtype {} (0..{})", t, dtype_name(dtype), maxv);
  }
  switch (dtype) {
    case DType::int32: std::memcpy(p, tokens.data(), tokens.size() * 4); break;
    case DType::uint16:
      for (size_t i = 0; i < tokens.size(); ++i) {
        uint16_t v = uint16_t(tokens[i]);
        std::memcpy(p + 2 * i, &v, 2);
      }
      break;
    case DType::int16:
      for (size_t i = 0; i < tokens.size(); ++i) {
        int16_t v = int16_t(tokens[i]);
        std::memcpy(p + 2 * i, &v, 2);
      }
      break;
    case DType::uint8:
    case DType::int8:
      for (size_t i = 0; i < tokens.size(); ++i) p[i] = char(uint8_t(tokens[i]));
      break;
    case DType::int64:
      for (size_t i = 0; i < tokens.size(); ++i) {
        int64_t v = tokens[i];
        std::memcpy(p + 8 * i, &v, 8);
      }
      break;
    default: fail("dtype {} cannot hold token ids", dtype_name(dtype));
  }
}

void IndexedDatasetWriter::push_length(size_t n) {
  if (finished_) fail("{}: writer already finished", prefix_);
  if (n > size_t(std::numeric_limits<int32_t>::max()))
    fail("{}: a sequence of {} tokens exceeds the format's int32 length", prefix_, n);
  lengths_.push_back(int32_t(n));
  tokens_ += n;
  open_doc_sequences_++;
}

void IndexedDatasetWriter::add_sequence(std::span<const int32_t> tokens) {
  push_length(tokens.size());
  scratch_.clear();
  encode_tokens(dtype_, tokens, scratch_);
  bin_->write(scratch_);
}

void IndexedDatasetWriter::end_document() {
  if (identity_docs_ && open_doc_sequences_ == 1) {
    open_doc_sequences_ = 0;
    return;
  }
  if (identity_docs_) {
    // First document that is not exactly one sequence: materialize the ends so far.
    identity_docs_ = false;
    uint64_t closed = lengths_.size() - open_doc_sequences_;
    doc_ends_.reserve(closed + 1);
    for (uint64_t i = 1; i <= closed; ++i) doc_ends_.push_back(int64_t(i));
  }
  doc_ends_.push_back(int64_t(lengths_.size()));
  open_doc_sequences_ = 0;
}

void IndexedDatasetWriter::add_document(std::span<const int32_t> tokens) {
  if (open_doc_sequences_ != 0) fail("{}: add_document inside an unfinished document", prefix_);
  add_sequence(tokens);
  end_document();
}

void IndexedDatasetWriter::add_encoded_documents(std::string_view bytes, std::span<const int32_t> lengths) {
  if (open_doc_sequences_ != 0) fail("{}: add_encoded_documents inside an unfinished document", prefix_);
  uint64_t n = 0;
  for (int32_t l : lengths) {
    if (l < 0) fail("{}: negative sequence length", prefix_);
    n += uint64_t(l);
  }
  if (n * dtype_size(dtype_) != bytes.size())
    fail("internal: {} encoded bytes for {} tokens of {}", bytes.size(), n, dtype_name(dtype_));
  for (int32_t l : lengths) {
    push_length(size_t(l));
    end_document();
  }
  bin_->write(bytes);
}

void IndexedDatasetWriter::finish() {
  if (finished_) return;
  if (open_doc_sequences_ != 0) end_document();
  const uint64_t S = lengths_.size();
  const uint64_t D = documents() + 1;
  OutputFile idx(idx_path(prefix_));
  std::string buf;
  buf.append(kIndexMagic, sizeof kIndexMagic);
  auto put_u64 = [&](uint64_t v) { buf.append(reinterpret_cast<const char*>(&v), 8); };
  put_u64(kIndexVersion);
  buf.push_back(char(uint8_t(dtype_)));
  put_u64(S);
  put_u64(D);
  idx.write(buf);
  if (S) idx.write({reinterpret_cast<const char*>(lengths_.data()), S * 4});

  // Pointers and document indices, in chunks so the index never doubles in memory.
  constexpr size_t kChunk = 1 << 16;
  std::vector<int64_t> chunk;
  chunk.reserve(kChunk);
  auto flush = [&] {
    idx.write({reinterpret_cast<const char*>(chunk.data()), chunk.size() * 8});
    chunk.clear();
  };
  const int64_t w = int64_t(dtype_size(dtype_));
  int64_t ptr = 0;
  for (uint64_t i = 0; i < S; ++i) {
    chunk.push_back(ptr);
    ptr += int64_t(lengths_[i]) * w;
    if (chunk.size() == kChunk) flush();
  }
  flush();
  chunk.push_back(0);
  if (identity_docs_) {
    for (uint64_t i = 1; i < D; ++i) {
      chunk.push_back(int64_t(i));
      if (chunk.size() == kChunk) flush();
    }
  } else {
    for (int64_t e : doc_ends_) {
      chunk.push_back(e);
      if (chunk.size() == kChunk) flush();
    }
  }
  flush();
  if (uint64_t(ptr) != bin_->bytes_written())
    fail("internal: {} has {} bytes but the index accounts for {}", bin_path(prefix_), bin_->bytes_written(), ptr);
  // .bin first: an .idx under its final name always has its complete .bin beside it.
  bin_->commit();
  idx.commit();
  finished_ = true;
}

// ---------------------------------------------------------------------------------------
// Reader

void TokenView::check_type(DType want) const {
  if (want != dtype_)
    fail("indexed dataset holds {} tokens; requested a view as {}", dtype_name(dtype_), dtype_name(want));
}

int64_t TokenView::operator[](size_t i) const {
  const char* p = static_cast<const char*>(data_);
  switch (dtype_) {
    case DType::uint8: return uint8_t(p[i]);
    case DType::int8: return int8_t(p[i]);
    case DType::int16: return static_cast<const int16_t*>(data_)[i];
    case DType::uint16: return static_cast<const uint16_t*>(data_)[i];
    case DType::int32: return static_cast<const int32_t*>(data_)[i];
    case DType::int64: return static_cast<const int64_t*>(data_)[i];
    default: fail("indexed dataset holds {} values, not token ids", dtype_name(dtype_));
  }
}

void TokenView::append_to(std::vector<int32_t>& out) const {
  size_t base = out.size();
  out.resize(base + size_);
  int32_t* o = out.data() + base;
  switch (dtype_) {
    case DType::uint16: {
      auto* s = static_cast<const uint16_t*>(data_);
      for (size_t i = 0; i < size_; ++i) o[i] = s[i];
      return;
    }
    case DType::int32:
      if (size_) std::memcpy(o, data_, size_ * 4);
      return;
    case DType::int64: {
      auto* s = static_cast<const int64_t*>(data_);
      for (size_t i = 0; i < size_; ++i) {
        if (s[i] < std::numeric_limits<int32_t>::min() || s[i] > std::numeric_limits<int32_t>::max())
          fail("token {} does not fit int32", s[i]);
        o[i] = int32_t(s[i]);
      }
      return;
    }
    default:
      for (size_t i = 0; i < size_; ++i) o[i] = int32_t((*this)[i]);
  }
}

namespace {

uint64_t load_u64(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

}  // namespace

bool IndexedDataset::exists(const std::string& prefix) {
  struct stat st;
  return ::stat(idx_path(prefix).c_str(), &st) == 0 && ::stat(bin_path(prefix).c_str(), &st) == 0;
}

IndexedDataset::IndexedDataset(const std::string& prefix, Verify verify) : prefix_(prefix) {
  const std::string ip = idx_path(prefix), bp = bin_path(prefix);
  try {
    idx_ = MappedFile(ip);
    const char* idx = idx_.chars();
    if (idx_.size() < kIndexHeaderBytes)
      fail("{}: truncated index: {} bytes, but the header alone is {}", ip, idx_.size(), kIndexHeaderBytes);
    if (std::memcmp(idx, kIndexMagic, sizeof kIndexMagic) != 0)
      fail("{}: not a Megatron indexed dataset index (missing the \"MMIDIDX\" header)", ip);
    uint64_t version = load_u64(idx + 9);
    if (version != kIndexVersion) fail("{}: index version {} (only version 1 is defined)", ip, version);
    uint8_t code = uint8_t(idx[17]);
    if (!valid_dtype_code(code)) fail("{}: unknown dtype code {} (Megatron defines 1..8)", ip, code);
    dtype_ = DType(code);
    uint64_t S = load_u64(idx + 18), D = load_u64(idx + 26);
    const uint64_t avail = idx_.size() - kIndexHeaderBytes;
    // Sizes in 128 bits so absurd counts in a corrupt header cannot wrap around.
    unsigned __int128 need = (unsigned __int128)S * 12 + (unsigned __int128)D * 8;
    if (D == 0) fail("{}: corrupt index: empty document index (it always starts with 0)", ip);
    if (need > avail) {
      if (need >> 63) fail("{}: corrupt index header: {} sequences, {} documents", ip, S, D - 1);
      fail("{}: truncated index: {} sequences and {} documents need {} bytes, the file has {}", ip, S, D - 1,
           uint64_t(need) + kIndexHeaderBytes, idx_.size());
    }
    uint64_t extra = avail - uint64_t(need);
    const char* p = idx + kIndexHeaderBytes;
    lengths_ = PackedArray<int32_t>(p, S);
    pointers_ = PackedArray<int64_t>(p + S * 4, S);
    doc_idx_ = PackedArray<int64_t>(p + S * 12, D);
    if (extra == S && S > 0) modes_ = p + S * 12 + D * 8;  // multimodal datasets: int8 mode per sequence
    else if (extra != 0)
      fail("{}: corrupt index: {} unexpected bytes after the arrays (for {} sequences and {} documents)", ip, extra, S,
           D - 1);

    if (doc_idx_[0] != 0) fail("{}: corrupt index: document indices start at {}, not 0", ip, doc_idx_[0]);
    if (uint64_t(doc_idx_.back()) != S)
      fail("{}: corrupt index: the last document ends at sequence {}, but there are {}", ip, doc_idx_.back(), S);
    bin_ = MappedFile(bp);
    const uint64_t w = dtype_size(dtype_);
    auto check_sequence = [&](size_t i) -> uint64_t {  // returns the byte after the sequence
      int32_t len = lengths_[i];
      int64_t ptr = pointers_[i];
      if (len < 0) fail("{}: corrupt index: sequence {} has negative length {}", ip, i, len);
      if (ptr < 0 || uint64_t(ptr) % w != 0)
        fail("{}: corrupt index: sequence {} starts at byte {}, not a multiple of {} ({})", ip, i, ptr, w,
             dtype_name(dtype_));
      uint64_t e = uint64_t(ptr) + uint64_t(len) * w;
      if (e > bin_.size())
        fail("{}: truncated data file: sequence {} ends at byte {}, but the file has {} bytes", bp, i, e, bin_.size());
      return e;
    };
    uint64_t end = 0;
    if (verify == Verify::full) {
      int64_t prev = 0;
      for (size_t d = 1; d < D; ++d) {
        int64_t v = doc_idx_[d];
        if (v < prev || uint64_t(v) > S)
          fail("{}: corrupt index: document index {} is {} (previous {}, {} sequences)", ip, d, v, prev, S);
        prev = v;
      }
      for (size_t i = 0; i < S; ++i) {
        end = std::max(end, check_sequence(i));
        total_tokens_ += uint64_t(lengths_[i]);
      }
    } else if (S > 0) {
      end = check_sequence(S - 1);  // Megatron's writer lays sequences out in order
      total_tokens_ = (end - uint64_t(pointers_[0])) / w;
    }
    if (end != bin_.size())
      fail("{}: data file has {} bytes but the index {} accounts for {} (mismatched .bin/.idx pair?)", bp, bin_.size(),
           ip, end);
  } catch (...) {
    close();
    throw;
  }
}

void IndexedDataset::close() {
  idx_.reset();
  bin_.reset();
  lengths_ = {};
  pointers_ = {};
  doc_idx_ = {};
  modes_ = nullptr;
}

IndexedDataset::~IndexedDataset() { close(); }

IndexedDataset::IndexedDataset(IndexedDataset&& o) noexcept { *this = std::move(o); }

IndexedDataset& IndexedDataset::operator=(IndexedDataset&& o) noexcept {
  if (this == &o) return *this;
  close();
  prefix_ = std::move(o.prefix_);
  dtype_ = o.dtype_;
  idx_ = std::move(o.idx_);
  bin_ = std::move(o.bin_);
  lengths_ = o.lengths_;
  pointers_ = o.pointers_;
  doc_idx_ = o.doc_idx_;
  modes_ = o.modes_;
  total_tokens_ = o.total_tokens_;
  o.lengths_ = {};
  o.pointers_ = {};
  o.doc_idx_ = {};
  o.modes_ = nullptr;
  return *this;
}

TokenView IndexedDataset::sequence(size_t i) const {
  if (i >= size()) fail("{}: sequence {} out of range ({} sequences)", prefix_, i, size());
  int64_t ptr = pointers_[i];
  int32_t len = lengths_[i];
  const uint64_t w = dtype_size(dtype_);
  if (len < 0 || ptr < 0 || uint64_t(ptr) % w != 0 || uint64_t(ptr) + uint64_t(len) * w > bin_.size())
    fail("{}: corrupt index: sequence {} (byte {}, {} tokens) lies outside the {}-byte data file", prefix_, i, ptr, len,
         bin_.size());
  return TokenView(bin_.data() ? bin_.chars() + ptr : nullptr, size_t(len), dtype_);
}

void IndexedDataset::get(size_t i, std::vector<int32_t>& out) const {
  out.clear();
  sequence(i).append_to(out);
}

std::pair<size_t, size_t> IndexedDataset::document_sequences(size_t d) const {
  if (d >= document_count()) fail("{}: document {} out of range ({} documents)", prefix_, d, document_count());
  return {size_t(doc_idx_[d]), size_t(doc_idx_[d + 1])};
}

}  // namespace tsumugi::data
