#include "formats/gguf.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <set>

#include "formats/safetensors.h"
#include "util/error.h"
#include "util/io.h"

namespace tsumugi::formats {

static_assert(std::endian::native == std::endian::little, "GGUF is little-endian; big-endian hosts need byte swapping");

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian uint32
// GGML_MAX_DIMS: ggml tensors have at most four dimensions.
constexpr uint32_t kMaxDims = 4;
// Arrays may nest; a file nesting deeper than this is corrupt (and would exhaust the stack).
constexpr int kMaxArrayDepth = 16;

struct TypeBlock {
  uint32_t type;
  const char* name;
  uint64_t elems, bytes;
};

constexpr TypeBlock kGgmlTypes[] = {
    {0, "F32", 1, 4},       {1, "F16", 1, 2},       {2, "Q4_0", 32, 18},    {3, "Q4_1", 32, 20},
    {6, "Q5_0", 32, 22},    {7, "Q5_1", 32, 24},    {8, "Q8_0", 32, 34},    {9, "Q8_1", 32, 36},
    {10, "Q2_K", 256, 84},  {11, "Q3_K", 256, 110}, {12, "Q4_K", 256, 144}, {13, "Q5_K", 256, 176},
    {14, "Q6_K", 256, 210}, {15, "Q8_K", 256, 292}, {24, "I8", 1, 1},       {25, "I16", 1, 2},
    {26, "I32", 1, 4},      {27, "I64", 1, 8},      {28, "F64", 1, 8},      {30, "BF16", 1, 2},
};

// Fixed-size payload of a scalar value type; 0 for STRING and ARRAY; -1 for an unknown type.
int scalar_size(uint32_t t) {
  switch (static_cast<GgufType>(t)) {
    case GgufType::UINT8: case GgufType::INT8: case GgufType::BOOL: return 1;
    case GgufType::UINT16: case GgufType::INT16: return 2;
    case GgufType::UINT32: case GgufType::INT32: case GgufType::FLOAT32: return 4;
    case GgufType::UINT64: case GgufType::INT64: case GgufType::FLOAT64: return 8;
    case GgufType::STRING: case GgufType::ARRAY: return 0;
  }
  return -1;
}

uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

// Serialization into a byte string.
class Out {
 public:
  std::string bytes;
  template <typename T>
  void put(T v) {
    char b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    bytes.append(b, sizeof(T));
  }
  void str(std::string_view s) {
    put<uint64_t>(s.size());
    bytes.append(s);
  }
  void value(const GgufValue& v, const std::string& key) {
    switch (v.type) {
      case GgufType::UINT8: put<uint8_t>(uint8_t(v.u)); break;
      case GgufType::INT8: put<int8_t>(int8_t(v.i)); break;
      case GgufType::UINT16: put<uint16_t>(uint16_t(v.u)); break;
      case GgufType::INT16: put<int16_t>(int16_t(v.i)); break;
      case GgufType::UINT32: put<uint32_t>(uint32_t(v.u)); break;
      case GgufType::INT32: put<int32_t>(int32_t(v.i)); break;
      case GgufType::FLOAT32: put<float>(float(v.f)); break;
      case GgufType::BOOL: put<uint8_t>(v.b ? 1 : 0); break;
      case GgufType::STRING: str(v.s); break;
      case GgufType::UINT64: put<uint64_t>(v.u); break;
      case GgufType::INT64: put<int64_t>(v.i); break;
      case GgufType::FLOAT64: put<double>(v.f); break;
      case GgufType::ARRAY:
        put<uint32_t>(uint32_t(v.elem_type));
        put<uint64_t>(v.array.size());
        for (const auto& e : v.array) {
          if (e.type != v.elem_type)
            fail("GGUF metadata '{}': an array of {} holds a {}", key, gguf_type_name(v.elem_type),
                 gguf_type_name(e.type));
          value(e, key);
        }
        break;
      default: fail("GGUF metadata '{}': unknown value type {}", key, uint32_t(v.type));
    }
  }
};

// Bounds-checked reading from the mapped file; every failure names the file and byte offset.
class Cursor {
 public:
  Cursor(const std::string& path, const std::byte* p, uint64_t size) : path_(path), p_(p), size_(size) {}
  uint64_t pos() const { return pos_; }
  [[noreturn]] void bad(uint64_t at, const std::string& what) const {
    fail("{}: byte {}: {}", path_, at, what);
  }
  void need(uint64_t n, const char* what) const {
    if (n > size_ - pos_)
      bad(pos_, fmt::format("truncated file: {} needs {} bytes, {} remain", what, n, size_ - pos_));
  }
  template <typename T>
  T get(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string str(const char* what) {
    const uint64_t at = pos_;
    const uint64_t n = get<uint64_t>(what);
    if (n > size_ - pos_)
      bad(at, fmt::format("{} has length {}, past the end of the file ({} bytes remain): truncated or corrupt", what, n,
                          size_ - pos_));
    std::string s(reinterpret_cast<const char*>(p_ + pos_), n);
    pos_ += n;
    return s;
  }
  // `at`: where the value's type was read, for messages.
  GgufValue value(uint32_t type, const std::string& key, int depth, uint64_t at) {
    GgufValue v;
    if (scalar_size(type) < 0) bad(at, fmt::format("metadata '{}' has unknown value type {}", key, type));
    v.type = static_cast<GgufType>(type);
    switch (v.type) {
      case GgufType::UINT8: v.u = get<uint8_t>("a uint8 value"); break;
      case GgufType::INT8: v.i = get<int8_t>("an int8 value"); break;
      case GgufType::UINT16: v.u = get<uint16_t>("a uint16 value"); break;
      case GgufType::INT16: v.i = get<int16_t>("an int16 value"); break;
      case GgufType::UINT32: v.u = get<uint32_t>("a uint32 value"); break;
      case GgufType::INT32: v.i = get<int32_t>("an int32 value"); break;
      case GgufType::FLOAT32: v.f = get<float>("a float32 value"); break;
      case GgufType::UINT64: v.u = get<uint64_t>("a uint64 value"); break;
      case GgufType::INT64: v.i = get<int64_t>("an int64 value"); break;
      case GgufType::FLOAT64: v.f = get<double>("a float64 value"); break;
      case GgufType::BOOL: {
        const uint8_t b = get<uint8_t>("a bool value");
        if (b > 1) bad(at, fmt::format("metadata '{}': bool value {} is neither 0 nor 1", key, b));
        v.b = b == 1;
        break;
      }
      case GgufType::STRING: v.s = str("a string value"); break;
      case GgufType::ARRAY: {
        if (depth >= kMaxArrayDepth) bad(at, fmt::format("metadata '{}': arrays nested too deeply", key));
        const uint32_t elem = get<uint32_t>("an array's element type");
        if (scalar_size(elem) < 0) bad(at, fmt::format("metadata '{}': array of unknown value type {}", key, elem));
        v.elem_type = static_cast<GgufType>(elem);
        const uint64_t n = get<uint64_t>("an array's length");
        // Every element takes at least one byte, so a count beyond the bytes left is corrupt;
        // checking first keeps a bad count from reserving a huge vector.
        const uint64_t min_each = scalar_size(elem) > 0 ? uint64_t(scalar_size(elem)) : 8;
        if (n > (size_ - pos_) / min_each)
          bad(at, fmt::format("metadata '{}': array of {} {} does not fit in the {} bytes left", key, n,
                              gguf_type_name(v.elem_type), size_ - pos_));
        v.array.reserve(n);
        for (uint64_t k = 0; k < n; ++k) v.array.push_back(value(elem, key, depth + 1, at));
        break;
      }
    }
    return v;
  }

 private:
  const std::string& path_;
  const std::byte* p_;
  uint64_t size_, pos_ = 0;
};

}  // namespace

std::string_view gguf_type_name(GgufType t) {
  static constexpr std::string_view names[] = {"uint8",  "int8",   "uint16", "int16",  "uint32", "int32",  "float32",
                                               "bool",   "string", "array",  "uint64", "int64",  "float64"};
  const auto i = static_cast<uint32_t>(t);
  return i < std::size(names) ? names[i] : std::string_view("unknown");
}

GgufValue GgufValue::unsigned_of(GgufType t, uint64_t v) {
  GgufValue x;
  x.type = t;
  x.u = v;
  return x;
}
GgufValue GgufValue::signed_of(GgufType t, int64_t v) {
  GgufValue x;
  x.type = t;
  x.i = v;
  return x;
}
GgufValue GgufValue::float32(float v) {
  GgufValue x;
  x.type = GgufType::FLOAT32;
  x.f = v;
  return x;
}
GgufValue GgufValue::float64(double v) {
  GgufValue x;
  x.type = GgufType::FLOAT64;
  x.f = v;
  return x;
}
GgufValue GgufValue::boolean(bool v) {
  GgufValue x;
  x.type = GgufType::BOOL;
  x.b = v;
  return x;
}
GgufValue GgufValue::string(std::string v) {
  GgufValue x;
  x.type = GgufType::STRING;
  x.s = std::move(v);
  return x;
}
GgufValue GgufValue::array_of(GgufType elem, std::vector<GgufValue> items) {
  GgufValue x;
  x.type = GgufType::ARRAY;
  x.elem_type = elem;
  x.array = std::move(items);
  return x;
}
GgufValue GgufValue::strings(const std::vector<std::string>& items) {
  std::vector<GgufValue> v;
  v.reserve(items.size());
  for (const auto& s : items) v.push_back(string(s));
  return array_of(GgufType::STRING, std::move(v));
}
GgufValue GgufValue::float32s(const std::vector<float>& items) {
  std::vector<GgufValue> v;
  v.reserve(items.size());
  for (float f : items) v.push_back(float32(f));
  return array_of(GgufType::FLOAT32, std::move(v));
}
GgufValue GgufValue::int32s(const std::vector<int32_t>& items) {
  std::vector<GgufValue> v;
  v.reserve(items.size());
  for (int32_t i : items) v.push_back(int32(i));
  return array_of(GgufType::INT32, std::move(v));
}

std::string ggml_type_name(uint32_t type) {
  for (const auto& t : kGgmlTypes)
    if (t.type == type) return t.name;
  return fmt::format("type {}", type);
}

bool ggml_type_block(uint32_t type, uint64_t& block_elems, uint64_t& block_bytes) {
  for (const auto& t : kGgmlTypes)
    if (t.type == type) {
      block_elems = t.elems;
      block_bytes = t.bytes;
      return true;
    }
  return false;
}

uint64_t ggml_nbytes(uint32_t type, std::span<const uint64_t> ne) {
  uint64_t be = 0, bb = 0;
  if (!ggml_type_block(type, be, bb)) fail("unknown ggml tensor type {}", type);
  if (ne.empty()) return bb;  // a scalar
  if (ne[0] % be != 0)
    fail("a {} tensor's first dimension ({}) must be a multiple of its block size {}", ggml_type_name(type), ne[0], be);
  uint64_t n = ne[0] / be * bb;
  for (size_t d = 1; d < ne.size(); ++d)
    if (__builtin_mul_overflow(n, ne[d], &n)) fail("tensor size overflows 64 bits");
  return n;
}

void quantize_q8_0(const float* x, int64_t n, std::byte* out) {
  if (n % kQ8_0BlockElems != 0) fail("Q8_0 needs a multiple of {} values (got {})", kQ8_0BlockElems, n);
  for (int64_t b = 0; b < n / kQ8_0BlockElems; ++b) {
    const float* xb = x + b * kQ8_0BlockElems;
    std::byte* ob = out + b * kQ8_0BlockBytes;
    float amax = 0;
    for (int k = 0; k < kQ8_0BlockElems; ++k) amax = std::max(amax, std::fabs(xb[k]));
    const float d = amax / 127.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    const uint16_t dh = float_to_f16(d);
    std::memcpy(ob, &dh, 2);
    for (int k = 0; k < kQ8_0BlockElems; ++k) {
      const auto q = static_cast<int8_t>(std::round(xb[k] * id));  // std::round: halves away from zero
      std::memcpy(ob + 2 + k, &q, 1);
    }
  }
}

void dequantize_q8_0(const std::byte* in, int64_t n, float* out) {
  if (n % kQ8_0BlockElems != 0) fail("Q8_0 needs a multiple of {} values (got {})", kQ8_0BlockElems, n);
  for (int64_t b = 0; b < n / kQ8_0BlockElems; ++b) {
    const std::byte* ib = in + b * kQ8_0BlockBytes;
    uint16_t dh;
    std::memcpy(&dh, ib, 2);
    const float d = f16_to_float(dh);
    for (int k = 0; k < kQ8_0BlockElems; ++k) out[b * kQ8_0BlockElems + k] = d * float(static_cast<int8_t>(ib[2 + k]));
  }
}

void write_gguf(const std::string& path, const GgufMetadata& metadata, const std::vector<GgufTensorToWrite>& tensors,
                const std::function<void(uint64_t)>& on_tensor) {
  uint32_t alignment = kGgufDefaultAlignment;
  std::set<std::string_view> keys;
  for (const auto& [key, v] : metadata) {
    if (!keys.insert(key).second) fail("{}: metadata key '{}' given twice", path, key);
    if (key == "general.alignment") {
      if (v.type != GgufType::UINT32 || v.u == 0 || (v.u & (v.u - 1)) != 0)
        fail("{}: general.alignment must be a uint32 power of two", path);
      alignment = uint32_t(v.u);
    }
  }
  Out h;
  h.put<uint32_t>(kMagic);
  h.put<uint32_t>(3);
  h.put<uint64_t>(tensors.size());
  h.put<uint64_t>(metadata.size());
  for (const auto& [key, v] : metadata) {
    h.str(key);
    h.put<uint32_t>(uint32_t(v.type));
    h.value(v, key);
  }
  std::vector<uint64_t> sizes;
  std::set<std::string_view> names;
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    if (!names.insert(t.name).second) fail("{}: tensor '{}' given twice", path, t.name);
    if (t.ne.empty() || t.ne.size() > kMaxDims) fail("{}: tensor '{}' has {} dimensions (1 to 4)", path, t.name, t.ne.size());
    uint64_t nbytes;
    try {
      nbytes = ggml_nbytes(uint32_t(t.type), t.ne);
    } catch (const Error& e) {
      fail("{}: tensor '{}': {}", path, t.name, e.what());
    }
    h.str(t.name);
    h.put<uint32_t>(uint32_t(t.ne.size()));
    for (uint64_t d : t.ne) h.put<uint64_t>(d);
    h.put<uint32_t>(uint32_t(t.type));
    h.put<uint64_t>(offset);
    sizes.push_back(nbytes);
    offset = align_up(offset + nbytes, alignment);
  }
  h.bytes.resize(align_up(h.bytes.size(), alignment), '\0');

  OutputFile out(path);
  out.write(h.bytes);
  std::vector<std::byte> buf;
  for (size_t k = 0; k < tensors.size(); ++k) {
    buf.assign(align_up(sizes[k], alignment), std::byte{0});
    tensors[k].fill(std::span<std::byte>(buf.data(), sizes[k]));
    out.write(std::string_view(reinterpret_cast<const char*>(buf.data()), buf.size()));
    if (on_tensor) on_tensor(sizes[k]);
  }
  out.commit();
}

uint64_t GgufTensorInfo::numel() const {
  uint64_t n = 1;
  for (uint64_t d : ne) n *= d;
  return n;
}

GgufFile::GgufFile(const std::string& path) : path_(path), file_(path) {
  map_ = reinterpret_cast<const std::byte*>(file_.data());
  size_ = file_.size();
  Cursor c(path_, map_, size_);
  const uint32_t magic = c.get<uint32_t>("the magic number");
  if (magic != kMagic) c.bad(0, "not a GGUF file (the magic number is not \"GGUF\")");
  version_ = c.get<uint32_t>("the version");
  // Version 1 used 32-bit counts and lengths; 2 and 3 share this layout.
  if (version_ != 2 && version_ != 3) c.bad(4, fmt::format("GGUF version {} is not supported (2 or 3)", version_));
  const uint64_t n_tensors = c.get<uint64_t>("the tensor count");
  const uint64_t n_kv = c.get<uint64_t>("the metadata count");
  // A key-value takes at least 12 bytes and a tensor info at least 24; larger counts are corrupt.
  if (n_kv > size_ / 12)
    c.bad(16, fmt::format("metadata count {} cannot fit in a {}-byte file: truncated or corrupt", n_kv, size_));
  if (n_tensors > size_ / 24)
    c.bad(8, fmt::format("tensor count {} cannot fit in a {}-byte file: truncated or corrupt", n_tensors, size_));
  std::set<std::string, std::less<>> keys;
  for (uint64_t k = 0; k < n_kv; ++k) {
    const uint64_t at = c.pos();
    std::string key = c.str("a metadata key");
    if (!keys.insert(key).second) c.bad(at, fmt::format("metadata key '{}' appears twice", key));
    const uint64_t type_at = c.pos();
    const uint32_t type = c.get<uint32_t>("a metadata value type");
    GgufValue v = c.value(type, key, 0, type_at);
    if (key == "general.alignment") {
      if (v.type != GgufType::UINT32) c.bad(at, fmt::format("general.alignment is a {}, not a uint32", gguf_type_name(v.type)));
      if (v.u == 0 || (v.u & (v.u - 1)) != 0) c.bad(at, fmt::format("general.alignment {} is not a power of two", v.u));
      alignment_ = uint32_t(v.u);
    }
    metadata_.emplace_back(std::move(key), std::move(v));
  }
  for (uint64_t k = 0; k < n_tensors; ++k) {
    GgufTensorInfo t;
    t.info_offset = c.pos();
    t.name = c.str("a tensor name");
    const uint32_t n_dims = c.get<uint32_t>("a tensor's dimension count");
    if (n_dims == 0 || n_dims > kMaxDims)
      c.bad(t.info_offset, fmt::format("tensor '{}' has {} dimensions (1 to {})", t.name, n_dims, kMaxDims));
    for (uint32_t d = 0; d < n_dims; ++d) {
      t.ne.push_back(c.get<uint64_t>("a tensor dimension"));
      if (t.ne.back() == 0 || t.ne.back() > (uint64_t(1) << 62))
        c.bad(t.info_offset, fmt::format("tensor '{}' has dimension {} = {}", t.name, d, t.ne.back()));
    }
    t.type = c.get<uint32_t>("a tensor type");
    uint64_t be, bb;
    if (!ggml_type_block(t.type, be, bb)) c.bad(t.info_offset, fmt::format("tensor '{}' has unknown type {}", t.name, t.type));
    t.offset = c.get<uint64_t>("a tensor offset");
    if (!tensor_index_.emplace(t.name, tensors_.size()).second)
      c.bad(t.info_offset, fmt::format("tensor '{}' appears twice", t.name));
    tensors_.push_back(std::move(t));
  }
  data_offset_ = align_up(c.pos(), alignment_);
  if (n_tensors > 0 && data_offset_ > size_)
    c.bad(c.pos(), fmt::format("truncated file: the data section would start at byte {}, past the end", data_offset_));
  const uint64_t data_size = n_tensors > 0 ? size_ - data_offset_ : 0;
  std::vector<std::pair<uint64_t, size_t>> by_offset;
  for (size_t k = 0; k < tensors_.size(); ++k) {
    auto& t = tensors_[k];
    uint64_t nbytes;
    try {
      nbytes = ggml_nbytes(t.type, t.ne);
    } catch (const Error& e) {
      c.bad(t.info_offset, fmt::format("tensor '{}': {}", t.name, e.what()));
    }
    if (t.offset % alignment_ != 0)
      c.bad(t.info_offset, fmt::format("tensor '{}' data offset {} is not a multiple of the alignment {}", t.name,
                                       t.offset, alignment_));
    if (t.offset > data_size || nbytes > data_size - t.offset)
      c.bad(t.info_offset,
            fmt::format("tensor '{}' data [{}, {}) lies outside the data section ({} bytes from byte {}): truncated file?",
                        t.name, t.offset, t.offset + nbytes, data_size, data_offset_));
    t.data = std::span<const std::byte>(map_ + data_offset_ + t.offset, nbytes);
    by_offset.emplace_back(t.offset, k);
  }
  std::sort(by_offset.begin(), by_offset.end());
  for (size_t k = 1; k < by_offset.size(); ++k) {
    const auto& prev = tensors_[by_offset[k - 1].second];
    const auto& cur = tensors_[by_offset[k].second];
    if (prev.offset + prev.data.size() > cur.offset)
      c.bad(cur.info_offset, fmt::format("tensor '{}' data overlaps tensor '{}'", cur.name, prev.name));
  }
}

GgufFile::~GgufFile() = default;

const GgufValue* GgufFile::find(std::string_view key) const {
  for (const auto& [k, v] : metadata_)
    if (k == key) return &v;
  return nullptr;
}

const GgufValue& GgufFile::at(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) fail("{}: metadata key '{}' is missing", path_, key);
  return *v;
}

const GgufTensorInfo* GgufFile::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

std::vector<float> GgufFile::to_float(std::string_view name) const {
  const GgufTensorInfo* t = find_tensor(name);
  if (!t) fail("{}: tensor '{}' is missing", path_, name);
  const uint64_t n = t->numel();
  std::vector<float> out(n);
  const std::byte* p = t->data.data();
  switch (static_cast<GgmlType>(t->type)) {
    case GgmlType::F32: std::memcpy(out.data(), p, n * 4); break;
    case GgmlType::F16:
    case GgmlType::BF16:
      for (uint64_t k = 0; k < n; ++k) {
        uint16_t h;
        std::memcpy(&h, p + 2 * k, 2);
        out[k] = t->type == uint32_t(GgmlType::F16) ? f16_to_float(h) : bf16_to_float(h);
      }
      break;
    case GgmlType::Q8_0: dequantize_q8_0(p, int64_t(n), out.data()); break;
    default: fail("{}: tensor '{}' is {}; only F32, F16, BF16 and Q8_0 convert to float", path_, name, ggml_type_name(t->type));
  }
  return out;
}

}  // namespace tsumugi::formats
