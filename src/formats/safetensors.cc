#include "formats/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "util/config_file.h"
#include "util/error.h"
#include "util/io.h"

namespace tsumugi::formats {

static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian; big-endian hosts need byte swapping");

namespace {

// The reference implementation refuses headers above 100 MB (MAX_HEADER_SIZE); a larger
// length is a corrupt file, and refusing early avoids a huge allocation.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

struct DTypeInfo {
  DType type;
  std::string_view name;
  size_t size;
};

constexpr DTypeInfo kDTypes[] = {
    {DType::BOOL, "BOOL", 1}, {DType::U8, "U8", 1},   {DType::I8, "I8", 1},     {DType::F8_E5M2, "F8_E5M2", 1},
    {DType::F8_E4M3, "F8_E4M3", 1}, {DType::I16, "I16", 2}, {DType::U16, "U16", 2}, {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2}, {DType::I32, "I32", 4}, {DType::U32, "U32", 4}, {DType::F32, "F32", 4},
    {DType::F64, "F64", 8},   {DType::I64, "I64", 8}, {DType::U64, "U64", 8},
};

const DTypeInfo& info(DType t) {
  for (const auto& d : kDTypes)
    if (d.type == t) return d;
  fail("safetensors: unknown dtype code {}", int(t));
}

std::string shape_str(std::span<const int64_t> shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// Element count and byte size of a tensor, or false on overflow.
bool checked_bytes(std::span<const uint64_t> dims, size_t elem, uint64_t& bytes) {
  uint64_t n = 1;
  for (uint64_t d : dims)
    if (__builtin_mul_overflow(n, d, &n)) return false;
  return !__builtin_mul_overflow(n, uint64_t(elem), &bytes);
}

}  // namespace

size_t dtype_size(DType t) { return info(t).size; }
std::string_view dtype_name(DType t) { return info(t).name; }

std::optional<DType> parse_dtype(std::string_view name) {
  for (const auto& d : kDTypes)
    if (d.name == name) return d.type;
  return std::nullopt;
}

int64_t shape_numel(std::span<const int64_t> shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

float bf16_to_float(uint16_t h) { return std::bit_cast<float>(uint32_t(h) << 16); }

uint16_t float_to_bf16(float f) {
  uint32_t x = std::bit_cast<uint32_t>(f);
  // Keep NaN a NaN even when its payload lives only in the dropped low bits.
  if ((x & 0x7fffffffu) > 0x7f800000u) return uint16_t((x >> 16) | 0x0040u);
  // Round to nearest, ties to even: add half an ulp of bf16, plus one if the kept part is odd.
  x += 0x7fffu + ((x >> 16) & 1u);
  return uint16_t(x >> 16);
}

float f16_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  if (exp == 0) {
    // Zero or subnormal: mant × 2^-24, exact in float.
    float v = std::ldexp(float(mant), -24);
    return std::bit_cast<float>(std::bit_cast<uint32_t>(v) | sign);
  }
  if (exp == 31) return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13));
  return std::bit_cast<float>(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t float_to_f16(float f) {
  uint32_t x = std::bit_cast<uint32_t>(f);
  const uint16_t sign = uint16_t((x >> 16) & 0x8000u);
  x &= 0x7fffffffu;
  if (x >= 0x7f800000u) return sign | (x > 0x7f800000u ? uint16_t(0x7e00u | ((x >> 13) & 0x3ffu)) : uint16_t(0x7c00u));
  // 65520 and above round (ties to even) past the largest half, 65504.
  if (x >= 0x477ff000u) return sign | 0x7c00u;
  if (x < 0x38800000u) {
    // Below the smallest normal half (2^-14): the result is round(|f| × 2^24) units of 2^-24;
    // nearbyint rounds ties to even in the default rounding mode, and 1024 lands on the
    // smallest normal's encoding, as it should.
    float units = std::nearbyint(std::ldexp(std::bit_cast<float>(x), 24));
    return sign | uint16_t(units);
  }
  // Normal: re-bias the exponent (127 → 15) and round the 13 dropped mantissa bits to even;
  // a carry out of the mantissa correctly bumps the exponent.
  x += 0xc8000fffu + ((x >> 13) & 1u);
  return sign | uint16_t(x >> 13);
}

// ---------------------------------------------------------------------------------------------
// Writing

namespace {

struct Planned {
  uint64_t bytes;
};

std::vector<Planned> plan(const std::string& path, const std::vector<TensorToWrite>& tensors) {
  std::vector<Planned> out;
  std::set<std::string_view> seen;
  for (const auto& t : tensors) {
    if (t.name == "__metadata__") fail("{}: a tensor cannot be named '__metadata__' (the format reserves it)", path);
    if (!seen.insert(t.name).second) fail("{}: tensor name '{}' is given twice", path, t.name);
    std::vector<uint64_t> dims;
    for (int64_t d : t.shape) {
      if (d < 0) fail("{}: tensor '{}' has a negative dimension in shape {}", path, t.name, shape_str(t.shape));
      dims.push_back(uint64_t(d));
    }
    uint64_t bytes;
    if (!checked_bytes(dims, dtype_size(t.dtype), bytes))
      fail("{}: tensor '{}' shape {} is too large", path, t.name, shape_str(t.shape));
    if ((t.data != nullptr) == bool(t.fill))
      fail("{}: tensor '{}' must have exactly one of `data` and `fill`", path, t.name);
    out.push_back({bytes});
  }
  return out;
}

std::string header_for(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::vector<Planned>& sizes, const std::map<std::string, std::string>& metadata) {
  // ordered_json keeps the tensors in the order given, which is also their data order;
  // __metadata__ goes first as the reference writer puts it.
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    auto& m = h["__metadata__"] = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
  }
  uint64_t off = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    nlohmann::ordered_json e = nlohmann::ordered_json::object();
    e["dtype"] = std::string(dtype_name(t.dtype));
    e["shape"] = t.shape;
    e["data_offsets"] = {off, off + sizes[i].bytes};
    off += sizes[i].bytes;
    h[t.name] = std::move(e);
  }
  std::string json;
  try {
    json = h.dump();
  } catch (const nlohmann::json::exception& e) {
    fail("{}: a tensor name or metadata string is not valid UTF-8 ({})", path, e.what());
  }
  // Pad with spaces so the data starts 8-byte aligned (the reference writer does the same).
  json.append((8 - json.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  uint64_t n = json.size();
  std::memcpy(out.data(), &n, 8);
  return out + json;
}

}  // namespace

void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  if (compression_for_path(path) != Compression::none)
    fail("{}: safetensors files are read by memory-mapping and cannot be compressed; drop the .gz/.zst extension", path);
  auto sizes = plan(path, tensors);
  OutputFile out(path);
  out.write(header_for(path, tensors, sizes, metadata));
  std::vector<std::byte> staging;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    if (t.data) {
      out.write(std::string_view(static_cast<const char*>(t.data), sizes[i].bytes));
    } else {
      staging.assign(sizes[i].bytes, std::byte{0});
      t.fill(std::span<std::byte>(staging));
      out.write(std::string_view(reinterpret_cast<const char*>(staging.data()), staging.size()));
    }
  }
  out.commit();
}

// ---------------------------------------------------------------------------------------------
// Reading

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("cannot open safetensors file '{}': {}", path, errno_message(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    fail("{}: cannot stat: {}", path, errno_message(err));
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    fail("{}: is a directory, not a safetensors file", path);
  }
  const uint64_t size = uint64_t(st.st_size);
  if (size < 8) {
    ::close(fd);
    fail("{}: not a safetensors file: it is {} bytes, shorter than the 8-byte header length", path, size);
  }
  void* m = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  int err = errno;
  ::close(fd);
  if (m == MAP_FAILED) fail("{}: cannot memory-map: {}", path, errno_message(err));
  map_ = static_cast<const std::byte*>(m);
  map_size_ = size;
  try {
    uint64_t n;
    std::memcpy(&n, map_, 8);
    if (n > kMaxHeaderBytes)
      fail("header length {} exceeds the format's limit of {} bytes (not a safetensors file, or corrupt)", n, kMaxHeaderBytes);
    if (n > size - 8)
      fail("header length {} runs past the end of the file ({} bytes): truncated or not a safetensors file", n, size);
    data_start_ = 8 + n;
    parse_header(std::string_view(reinterpret_cast<const char*>(map_) + 8, n), size - data_start_);
  } catch (const Error& e) {
    ::munmap(const_cast<std::byte*>(map_), map_size_);
    map_ = nullptr;
    throw Error(fmt::format("{}: {}", path, e.what()));
  } catch (...) {
    ::munmap(const_cast<std::byte*>(map_), map_size_);
    map_ = nullptr;
    throw;
  }
}

void SafetensorsFile::parse_header(std::string_view header, uint64_t data_size) {
  if (header.empty() || header[0] != '{') fail("header does not start with '{{' (not a safetensors file, or corrupt)");
  // nlohmann keeps the last of repeated keys silently; note repeats of top-level keys while parsing.
  std::set<std::string> seen;
  std::string duplicate;
  auto cb = [&](int depth, nlohmann::json::parse_event_t ev, nlohmann::json& parsed) {
    if (ev == nlohmann::json::parse_event_t::key && depth == 1 && parsed.is_string()) {
      auto k = parsed.get<std::string>();
      if (!seen.insert(k).second && duplicate.empty()) duplicate = k;
    }
    return true;
  };
  nlohmann::json h;
  try {
    h = nlohmann::json::parse(header.begin(), header.end(), cb);
  } catch (const nlohmann::json::exception& e) {
    fail("header is not valid JSON: {}", e.what());
  }
  if (!h.is_object()) fail("header is not a JSON object");
  if (!duplicate.empty()) fail("header names '{}' twice", duplicate);

  struct Entry {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    uint64_t begin, end;
  };
  std::vector<Entry> entries;
  for (auto& [name, v] : h.items()) {
    if (name == "__metadata__") {
      if (!v.is_object()) fail("__metadata__ is not an object of strings");
      for (auto& [k, s] : v.items()) {
        if (!s.is_string()) fail("__metadata__ value for '{}' is not a string", k);
        metadata_[k] = s.get<std::string>();
      }
      continue;
    }
    if (!v.is_object()) fail("tensor '{}': entry is not an object", name);
    auto dt = v.find("dtype");
    if (dt == v.end() || !dt->is_string()) fail("tensor '{}': missing or non-string \"dtype\"", name);
    auto dtype = parse_dtype(dt->get<std::string>());
    if (!dtype) fail("tensor '{}': unsupported dtype \"{}\"", name, dt->get<std::string>());
    auto sh = v.find("shape");
    if (sh == v.end() || !sh->is_array()) fail("tensor '{}': missing or non-array \"shape\"", name);
    std::vector<uint64_t> dims;
    std::vector<int64_t> shape;
    for (auto& d : *sh) {
      if (!d.is_number_unsigned()) fail("tensor '{}': shape {} has an entry that is not a non-negative integer", name, sh->dump());
      uint64_t u = d.get<uint64_t>();
      if (u > uint64_t(INT64_MAX)) fail("tensor '{}': dimension {} is too large", name, u);
      dims.push_back(u);
      shape.push_back(int64_t(u));
    }
    auto off = v.find("data_offsets");
    if (off == v.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
        !(*off)[1].is_number_unsigned())
      fail("tensor '{}': \"data_offsets\" must be two non-negative integers [begin, end]", name);
    uint64_t begin = (*off)[0].get<uint64_t>(), end = (*off)[1].get<uint64_t>();
    if (end < begin) fail("tensor '{}': data_offsets [{}, {}] end before they begin", name, begin, end);
    uint64_t bytes;
    if (!checked_bytes(dims, dtype_size(*dtype), bytes))
      fail("tensor '{}': shape {} is too large to address", name, shape_str(shape));
    if (end - begin != bytes)
      fail("tensor '{}' ({}, shape {}) needs {} bytes but data_offsets [{}, {}] hold {}", name, dtype_name(*dtype),
           shape_str(shape), bytes, begin, end, end - begin);
    entries.push_back({name, *dtype, std::move(shape), begin, end});
  }

  // The byte ranges must tile the data section exactly, as the reference reader requires.
  std::sort(entries.begin(), entries.end(),
            [](const Entry& a, const Entry& b) { return a.begin != b.begin ? a.begin < b.begin : a.end < b.end; });
  uint64_t pos = 0;
  const Entry* prev = nullptr;
  for (const auto& e : entries) {
    if (e.begin < pos)
      fail("tensor '{}' at data bytes [{}, {}) overlaps tensor '{}' at [{}, {})", e.name, e.begin, e.end, prev->name,
           prev->begin, prev->end);
    if (e.begin > pos)
      fail("data bytes [{}, {}) before tensor '{}' belong to no tensor (offsets must be contiguous)", pos, e.begin, e.name);
    pos = e.end;
    prev = &e;
  }
  if (pos > data_size)
    fail("truncated: the tensors need {} bytes of data after the header but the file holds {}", pos, data_size);
  if (pos < data_size) fail("{} bytes after the last tensor belong to no tensor", data_size - pos);

  const std::byte* data = map_ + data_start_;
  for (auto& e : entries) {
    index_.emplace(e.name, tensors_.size());
    tensors_.push_back(TensorView{e.name, e.dtype, std::move(e.shape), e.begin,
                                  std::span<const std::byte>(data + e.begin, size_t(e.end - e.begin))});
  }
}

void SafetensorsFile::advise_huge_pages() const {
  if (map_) ::madvise(const_cast<std::byte*>(map_), map_size_, MADV_HUGEPAGE);
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(const_cast<std::byte*>(map_), map_size_);
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&& o) noexcept
    : path_(std::move(o.path_)),
      map_(std::exchange(o.map_, nullptr)),
      map_size_(std::exchange(o.map_size_, 0)),
      data_start_(o.data_start_),
      tensors_(std::move(o.tensors_)),
      index_(std::move(o.index_)),
      metadata_(std::move(o.metadata_)) {}

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& o) noexcept {
  if (this != &o) {
    if (map_) ::munmap(const_cast<std::byte*>(map_), map_size_);
    path_ = std::move(o.path_);
    map_ = std::exchange(o.map_, nullptr);
    map_size_ = std::exchange(o.map_size_, 0);
    data_start_ = o.data_start_;
    tensors_ = std::move(o.tensors_);
    index_ = std::move(o.index_);
    metadata_ = std::move(o.metadata_);
  }
  return *this;
}

const TensorView* SafetensorsFile::find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const TensorView& SafetensorsFile::at(std::string_view name) const {
  if (const auto* t = find(name)) return *t;
  fail("{}: no tensor named '{}' (the file has {} tensors)", path_, name, tensors_.size());
}

std::vector<float> SafetensorsFile::to_float(std::string_view name) const {
  const auto& t = at(name);
  const size_t n = size_t(t.numel());
  std::vector<float> out(n);
  const auto* p = reinterpret_cast<const unsigned char*>(t.data.data());
  // memcpy per element: tensor data need not be aligned to its element size.
  switch (t.dtype) {
    case DType::F32:
      if (n) std::memcpy(out.data(), p, n * 4);
      break;
    case DType::F64:
      for (size_t i = 0; i < n; ++i) {
        double d;
        std::memcpy(&d, p + 8 * i, 8);
        out[i] = float(d);
      }
      break;
    case DType::F16:
    case DType::BF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        out[i] = t.dtype == DType::F16 ? f16_to_float(h) : bf16_to_float(h);
      }
      break;
    default:
      fail("{}: tensor '{}' is {}, which does not convert to float (F32, F16, BF16 and F64 do)", path_, name,
           dtype_name(t.dtype));
  }
  return out;
}

SafetensorsDir::SafetensorsDir(const std::string& dir_s) {
  namespace fs = std::filesystem;
  const fs::path dir(dir_s);
  const fs::path index = dir / "model.safetensors.index.json";
  const fs::path single = dir / "model.safetensors";
  if (fs::exists(index)) {
    described_ = index.string();
    const nlohmann::json j = parse_config_file(described_);
    if (!j.contains("weight_map") || !j["weight_map"].is_object()) fail("{}: no \"weight_map\" object", described_);
    std::map<std::string, std::size_t> shard_of_file;
    for (const auto& [name, file] : j["weight_map"].items()) {
      if (!file.is_string()) fail("{}: weight_map[\"{}\"] is not a file name", described_, name);
      const std::string f = file.get<std::string>();
      if (f.empty() || f.find('/') != std::string::npos || f == "." || f == "..")
        fail("{}: weight_map[\"{}\"] = \"{}\" is not a file in the directory", described_, name, f);
      auto [it, added] = shard_of_file.emplace(f, files_.size());
      if (added) {
        const fs::path p = dir / f;
        if (!fs::exists(p))
          fail("{}: missing shard (model.safetensors.index.json lists it for tensor '{}')", p.string(), name);
        files_.emplace_back(p.string());
      }
      if (!files_[it->second].contains(name))
        fail("{}: lists tensor '{}' in {}, which does not hold it", described_, name, f);
      where_.emplace(name, it->second);
    }
  } else if (fs::exists(single)) {
    described_ = single.string();
    files_.emplace_back(described_);
    for (const auto& t : files_.back().tensors()) where_.emplace(t.name, 0);
  } else {
    fail("{}: no model.safetensors or model.safetensors.index.json", dir_s);
  }
}

std::pair<const TensorView*, const SafetensorsFile*> SafetensorsDir::get(std::string_view name) const {
  auto it = where_.find(name);
  if (it == where_.end()) fail("{}: tensor '{}' is missing", described_, name);
  const SafetensorsFile& f = files_[it->second];
  return {&f.at(name), &f};
}

}  // namespace tsumugi::formats
