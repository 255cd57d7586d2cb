// GGUF v3 writer and reader (src/formats/gguf.h): the bytes of the header, every metadata value
// type, alignment and tensor offsets, GGML's Q8_0 block against hand-computed values, corrupt
// files refused with the byte offset, and both directions checked against the `gguf` Python
// package (llama.cpp's own reader and writer, from PyPI).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <random>

#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "test_util.h"
#include "util/error.h"

using namespace tsumugi;
using namespace tsumugi::formats;
using tsumugi::testing::run_command;
using tsumugi::testing::TempDir;
using tsumugi::testing::write_bytes;

namespace {

const std::string kPython = "/usr/bin/python3";

bool have_gguf_package() {
  std::string out;
  return run_command(kPython + " -c 'import gguf' 2>&1", out) == 0;
}
#define REQUIRE_GGUF_PACKAGE()                                                                            \
  if (!have_gguf_package()) {                                                                             \
    FAIL() << "the `gguf` Python package (llama.cpp's reader) is missing: "                               \
              "/usr/bin/python3 -m pip install --break-system-packages gguf==0.19.0 (make test does it)"; \
  }

std::vector<float> random_floats(size_t n, uint64_t seed, float scale = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

template <typename T>
T read_at(const std::string& bytes, size_t off) {
  T v;
  std::memcpy(&v, bytes.data() + off, sizeof(T));
  return v;
}

GgufTensorToWrite tensor_of(const std::string& name, GgmlType type, std::vector<uint64_t> ne, const std::vector<float>& src) {
  GgufTensorToWrite t;
  t.name = name;
  t.type = type;
  t.ne = std::move(ne);
  t.fill = [type, &src](std::span<std::byte> dst) {
    switch (type) {
      case GgmlType::F32: std::memcpy(dst.data(), src.data(), src.size() * 4); break;
      case GgmlType::F16:
      case GgmlType::BF16:
        for (size_t k = 0; k < src.size(); ++k) {
          uint16_t h = type == GgmlType::F16 ? float_to_f16(src[k]) : float_to_bf16(src[k]);
          std::memcpy(dst.data() + 2 * k, &h, 2);
        }
        break;
      case GgmlType::Q8_0: quantize_q8_0(src.data(), int64_t(src.size()), dst.data()); break;
      default: FAIL();
    }
  };
  return t;
}

// Metadata with every value type, arrays of scalars and strings, and a nested array.
GgufMetadata every_type_metadata(uint32_t alignment) {
  return {
      {"general.architecture", GgufValue::string("gpt2")},
      {"general.alignment", GgufValue::uint32(alignment)},
      {"t.u8", GgufValue::uint8(250)},
      {"t.i8", GgufValue::int8(-100)},
      {"t.u16", GgufValue::uint16(65000)},
      {"t.i16", GgufValue::int16(-30000)},
      {"t.u32", GgufValue::uint32(4000000000u)},
      {"t.i32", GgufValue::int32(-2000000000)},
      {"t.f32", GgufValue::float32(0.1f)},
      {"t.bool", GgufValue::boolean(true)},
      {"t.str", GgufValue::string("吾輩は猫である")},
      {"t.u64", GgufValue::uint64(18000000000000000000ull)},
      {"t.i64", GgufValue::int64(-9000000000000000000ll)},
      {"t.f64", GgufValue::float64(-2.5e-300)},
      {"t.strs", GgufValue::strings({"▁a", "", "<0x0A>"})},
      {"t.f32s", GgufValue::float32s({1.5f, -0.0f, 3e38f})},
      {"t.i32s", GgufValue::int32s({-1, 0, 7})},
      {"t.nested", GgufValue::array_of(GgufType::ARRAY, {GgufValue::int32s({1, 2}), GgufValue::int32s({})})},
  };
}

}  // namespace

TEST(FormatsGguf, Q8_0MatchesHandComputedBlocks) {
  // Block 0: max |x| = 127 gives d = 1 exactly; halves round away from zero (GGML's roundf).
  // Block 1: all zeros: d = 0 and every q = 0.
  // Block 2: the largest magnitude is negative (-254): d = 2, that value becomes -127.
  // Block 3: d = 1/127 is not an fp16 value: the stored scale is its fp16 rounding (0x2008), while
  //          q is computed with the unrounded float scale.
  std::vector<float> x(128, 0.0f);
  const float b0[] = {127, -0.5f, 0.5f, 1.5f, -2.5f, 2.4999f, 126.5f, -3};
  for (int k = 0; k < 8; ++k) x[k] = b0[k];
  const float b2[] = {-254, 3, -3, 1, 253, 0.9999f};
  for (int k = 0; k < 6; ++k) x[64 + k] = b2[k];
  x[96] = 1.0f;
  x[97] = -0.5f;
  x[98] = 0.25f;
  std::vector<std::byte> q(4 * kQ8_0BlockBytes);
  quantize_q8_0(x.data(), 128, q.data());
  auto scale = [&](int b) {
    uint16_t h;
    std::memcpy(&h, q.data() + b * kQ8_0BlockBytes, 2);
    return h;
  };
  auto qv = [&](int b, int k) { return int(static_cast<int8_t>(q[b * kQ8_0BlockBytes + 2 + k])); };
  EXPECT_EQ(scale(0), 0x3c00);  // 1.0
  const int want0[] = {127, -1, 1, 2, -3, 2, 127, -3};
  for (int k = 0; k < 8; ++k) EXPECT_EQ(qv(0, k), want0[k]) << "block 0, value " << k;
  for (int k = 8; k < 32; ++k) EXPECT_EQ(qv(0, k), 0);
  EXPECT_EQ(scale(1), 0x0000);
  for (int k = 0; k < 32; ++k) EXPECT_EQ(qv(1, k), 0);
  EXPECT_EQ(scale(2), 0x4000);  // 2.0
  const int want2[] = {-127, 2, -2, 1, 127, 0};
  for (int k = 0; k < 6; ++k) EXPECT_EQ(qv(2, k), want2[k]) << "block 2, value " << k;
  EXPECT_EQ(scale(3), 0x2008);  // fp16 nearest to 1/127 = 0.0078740...: 0.0078735
  EXPECT_EQ(qv(3, 0), 127);
  EXPECT_EQ(qv(3, 1), -64);  // -63.5 away from zero
  EXPECT_EQ(qv(3, 2), 32);   // 31.75

  std::vector<float> back(128);
  dequantize_q8_0(q.data(), 128, back.data());
  EXPECT_EQ(back[0], 127.0f);
  EXPECT_EQ(back[64], -254.0f);
  EXPECT_EQ(back[33], 0.0f);
  EXPECT_FLOAT_EQ(back[96], 127 * f16_to_float(0x2008));

  EXPECT_THROW(quantize_q8_0(x.data(), 40, q.data()), Error);
}

TEST(FormatsGguf, HeaderMetadataAlignmentAndOffsetsAsWritten) {
  TempDir dir;
  const std::string path = dir.file("m.gguf");
  const auto a = random_floats(3 * 5, 1), b = random_floats(64 * 2, 2), c = random_floats(7, 3), d = random_floats(33, 4);
  GgufMetadata md = every_type_metadata(64);
  std::vector<GgufTensorToWrite> ts;
  ts.push_back(tensor_of("a", GgmlType::F32, {5, 3}, a));
  ts.push_back(tensor_of("b", GgmlType::Q8_0, {64, 2}, b));
  ts.push_back(tensor_of("c", GgmlType::F16, {7}, c));
  ts.push_back(tensor_of("d", GgmlType::BF16, {33}, d));
  write_gguf(path, md, ts);

  const std::string bytes = read_file(path);
  EXPECT_EQ(bytes.substr(0, 4), "GGUF");
  EXPECT_EQ(read_at<uint32_t>(bytes, 4), 3u);
  EXPECT_EQ(read_at<uint64_t>(bytes, 8), 4u);
  EXPECT_EQ(read_at<uint64_t>(bytes, 16), md.size());
  // The first key: uint64 length, the bytes, then its type (string) and value.
  EXPECT_EQ(read_at<uint64_t>(bytes, 24), 20u);
  EXPECT_EQ(bytes.substr(32, 20), "general.architecture");
  EXPECT_EQ(read_at<uint32_t>(bytes, 52), 8u);
  EXPECT_EQ(read_at<uint64_t>(bytes, 56), 4u);
  EXPECT_EQ(bytes.substr(64, 4), "gpt2");

  GgufFile f(path);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 64u);
  EXPECT_EQ(f.data_offset() % 64, 0u);
  ASSERT_EQ(f.metadata().size(), md.size());
  for (size_t k = 0; k < md.size(); ++k) {
    EXPECT_EQ(f.metadata()[k].first, md[k].first);
    EXPECT_TRUE(f.metadata()[k].second == md[k].second) << md[k].first;
  }
  EXPECT_EQ(f.at("t.u64").u, 18000000000000000000ull);
  EXPECT_EQ(f.at("t.f32").f, double(0.1f));
  EXPECT_EQ(f.at("t.str").s, "吾輩は猫である");
  EXPECT_EQ(f.at("t.nested").array[0].array[1].i, 2);
  EXPECT_THROW(f.at("absent"), Error);

  ASSERT_EQ(f.tensors().size(), 4u);
  uint64_t expect_offset = 0;
  const uint64_t sizes[] = {60, 4 * 34, 14, 66};
  const uint32_t types[] = {0, 8, 1, 30};
  for (size_t k = 0; k < 4; ++k) {
    const auto& t = f.tensors()[k];
    EXPECT_EQ(t.offset, expect_offset) << t.name;
    EXPECT_EQ(t.offset % 64, 0u);
    EXPECT_EQ(t.data.size(), sizes[k]);
    EXPECT_EQ(t.type, types[k]);
    expect_offset += (sizes[k] + 63) / 64 * 64;
  }
  EXPECT_EQ(f.find_tensor("a")->ne, (std::vector<uint64_t>{5, 3}));
  EXPECT_EQ(f.to_float("a"), a);
  // Every tensor's bytes are the source converted, at data_offset + offset in the file.
  std::vector<std::byte> qb(4 * 34);
  quantize_q8_0(b.data(), 128, qb.data());
  EXPECT_EQ(0, std::memcmp(bytes.data() + f.data_offset() + f.find_tensor("b")->offset, qb.data(), qb.size()));
  const auto cf = f.to_float("c");
  for (size_t k = 0; k < c.size(); ++k) EXPECT_EQ(cf[k], f16_to_float(float_to_f16(c[k])));
  const auto df = f.to_float("d");
  for (size_t k = 0; k < d.size(); ++k) EXPECT_EQ(df[k], bf16_to_float(float_to_bf16(d[k])));
  EXPECT_EQ(bytes.size(), f.data_offset() + expect_offset);
}

TEST(FormatsGguf, WriterRefusesBadInput) {
  TempDir dir;
  const auto v = random_floats(40, 1);
  auto write = [&](GgufMetadata md, std::vector<GgufTensorToWrite> ts) { write_gguf(dir.file("x.gguf"), md, ts); };
  EXPECT_THROW(write({{"k", GgufValue::uint8(1)}, {"k", GgufValue::uint8(2)}}, {}), Error);
  EXPECT_THROW(write({{"general.alignment", GgufValue::uint32(24)}}, {}), Error);
  EXPECT_THROW(write({{"general.alignment", GgufValue::uint64(32)}}, {}), Error);
  EXPECT_THROW(write({}, {tensor_of("q", GgmlType::Q8_0, {40}, v)}), Error);  // 40 is not whole blocks
  EXPECT_THROW(write({}, {tensor_of("a", GgmlType::F32, {4}, v), tensor_of("a", GgmlType::F32, {4}, v)}), Error);
  EXPECT_THROW(write({{"k", GgufValue::array_of(GgufType::INT32, {GgufValue::uint8(1)})}}, {}), Error);
  EXPECT_FALSE(std::filesystem::exists(dir.file("x.gguf")));  // nothing half-written
}

TEST(FormatsGguf, CorruptFilesFailWithTheirByteOffset) {
  TempDir dir;
  const std::string good = dir.file("good.gguf");
  const auto a = random_floats(64, 1);
  write_gguf(good, every_type_metadata(32), {tensor_of("a", GgmlType::F32, {32, 2}, a)});
  const std::string bytes = read_file(good);
  GgufFile ok(good);
  const uint64_t info = ok.tensors()[0].info_offset;  // "a": 8 + 1 name, 4 dims, 16 ne, 4 type, 8 offset
  const uint64_t offset_field = info + 8 + 1 + 4 + 16 + 4;

  auto expect_error = [&](const std::string& name, const std::string& data, const std::string& needle) {
    const std::string p = dir.file(name);
    write_bytes(p, data);
    try {
      GgufFile f(p);
      ADD_FAILURE() << name << ": opened without error";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(p), std::string::npos) << msg;
      EXPECT_NE(msg.find(needle), std::string::npos) << name << ": " << msg;
    }
  };
  // Every truncation fails cleanly (never reads past the end).
  for (size_t cut = 0; cut < bytes.size(); cut += (cut < 400 ? 1 : 17)) {
    const std::string p = dir.file("cut.gguf");
    write_bytes(p, bytes.substr(0, cut));
    EXPECT_THROW(GgufFile f(p), Error) << "cut at " << cut;
  }
  expect_error("short.gguf", bytes.substr(0, 300), "truncated");
  expect_error("data.gguf", bytes.substr(0, bytes.size() - 1), "outside the data section");

  std::string bad = bytes;
  bad[0] = 'X';
  expect_error("magic.gguf", bad, "byte 0: not a GGUF file");
  bad = bytes;
  bad[4] = 1;
  expect_error("version.gguf", bad, "byte 4: GGUF version 1");
  bad = bytes;
  uint64_t off = 4096;  // far past the end
  std::memcpy(bad.data() + offset_field, &off, 8);
  expect_error("range.gguf", bad, fmt::format("byte {}: tensor 'a' data [4096", info));
  off = 8;
  std::memcpy(bad.data() + offset_field, &off, 8);
  expect_error("misaligned.gguf", bad, "not a multiple of the alignment 32");
  bad = bytes;
  uint32_t type = 77;
  std::memcpy(bad.data() + offset_field - 4, &type, 4);
  expect_error("type.gguf", bad, "unknown type 77");
  bad = bytes;
  uint32_t dims = 5;
  std::memcpy(bad.data() + info + 9, &dims, 4);
  expect_error("dims.gguf", bad, "5 dimensions");
  // The first value's type (after "general.architecture") set to 13: no such type.
  bad = bytes;
  type = 13;
  std::memcpy(bad.data() + 52, &type, 4);
  expect_error("vtype.gguf", bad, "byte 52: metadata 'general.architecture' has unknown value type 13");
  // A string length running past the end of the file.
  bad = bytes;
  uint64_t len = 1ull << 40;
  std::memcpy(bad.data() + 56, &len, 8);
  expect_error("strlen.gguf", bad, "byte 56: a string value has length 1099511627776, past the end");
  // general.alignment that is not a power of two.
  GgufMetadata md = {{"general.alignment", GgufValue::uint32(32)}};
  write_gguf(dir.file("al.gguf"), md, {});
  bad = read_file(dir.file("al.gguf"));
  bad[24 + 8 + 17 + 4] = 48;
  expect_error("al48.gguf", bad, "general.alignment 48 is not a power of two");
  expect_error("empty.gguf", "", "truncated");
  EXPECT_THROW(GgufFile f(dir.file("missing.gguf")), Error);
}

TEST(FormatsGguf, LlamaCppPythonReaderReadsOurFile) {
  REQUIRE_GGUF_PACKAGE();
  TempDir dir;
  const std::string path = dir.file("ours.gguf");
  const auto a = random_floats(3 * 64, 5), b = random_floats(64 * 4, 6, 0.02f), c = random_floats(9, 7);
  write_gguf(path, every_type_metadata(32),
             {tensor_of("a", GgmlType::F32, {64, 3}, a), tensor_of("blk.0.b", GgmlType::Q8_0, {64, 4}, b),
              tensor_of("c", GgmlType::F16, {9}, c), tensor_of("d", GgmlType::BF16, {64, 3}, a)});
  const std::string script = dir.file("read.py");
  write_bytes(script, R"(import gguf, json, sys
r = gguf.GGUFReader(sys.argv[1])
out = {"fields": {}, "tensors": []}
for name, f in r.fields.items():
    if name.startswith("GGUF."):
        continue
    t = f.types[0]
    if t == gguf.GGUFValueType.ARRAY:
        out["fields"][name] = ["array", int(f.types[1]) if len(f.types) > 1 else -1, len(f.data)]
    elif t == gguf.GGUFValueType.STRING:
        out["fields"][name] = ["string", bytes(f.parts[f.data[0]]).decode("utf-8")]
    else:
        out["fields"][name] = [int(t), f.parts[f.data[0]].tolist()[0]]
for t in r.tensors:
    out["tensors"].append({"name": t.name, "type": int(t.tensor_type), "shape": [int(x) for x in t.shape],
                           "offset": int(t.data_offset), "hex": bytes(t.data.tobytes()).hex()})
out["strs"] = [bytes(r.fields["t.strs"].parts[i]).decode() for i in r.fields["t.strs"].data]
print(json.dumps(out))
)");
  std::string out;
  ASSERT_EQ(run_command(kPython + " " + script + " " + path + " 2>&1", out), 0) << out;
  const auto j = nlohmann::json::parse(out);
  GgufFile f(path);
  EXPECT_EQ(j["fields"]["general.architecture"][1], "gpt2");
  EXPECT_EQ(j["fields"]["t.str"][1], "吾輩は猫である");
  EXPECT_EQ(j["fields"]["t.u8"], nlohmann::json({0, 250}));
  EXPECT_EQ(j["fields"]["t.i16"], nlohmann::json({3, -30000}));
  EXPECT_EQ(j["fields"]["t.u64"], nlohmann::json({10, 18000000000000000000ull}));
  EXPECT_EQ(j["fields"]["t.i64"], nlohmann::json({11, -9000000000000000000ll}));
  EXPECT_EQ(j["fields"]["t.f64"][1].get<double>(), -2.5e-300);
  EXPECT_EQ(j["fields"]["t.bool"][1], true);
  EXPECT_EQ(j["fields"]["t.f32s"], nlohmann::json({"array", 6, 3}));
  EXPECT_EQ(j["fields"]["t.nested"][0], "array");
  EXPECT_EQ(j["strs"], nlohmann::json({"▁a", "", "<0x0A>"}));
  EXPECT_EQ(j["fields"].size(), every_type_metadata(32).size());
  ASSERT_EQ(j["tensors"].size(), 4u);
  for (size_t k = 0; k < 4; ++k) {
    const auto& jt = j["tensors"][k];
    const auto& t = f.tensors()[k];
    EXPECT_EQ(jt["name"], t.name);
    EXPECT_EQ(jt["type"].get<uint32_t>(), t.type);
    EXPECT_EQ(jt["shape"].get<std::vector<uint64_t>>(), t.ne) << t.name;
    EXPECT_EQ(jt["offset"].get<uint64_t>(), f.data_offset() + t.offset) << t.name;
    std::string hex;
    for (std::byte x : t.data) hex += fmt::format("{:02x}", unsigned(x));
    EXPECT_EQ(jt["hex"], hex) << t.name;
  }
}

TEST(FormatsGguf, ReadsWhatLlamaCppPythonWriterWritesAndQuantizesAlike) {
  REQUIRE_GGUF_PACKAGE();
  TempDir dir;
  const std::string path = dir.file("theirs.gguf");
  const std::string script = dir.file("write.py");
  // Values with ties at .5 after scaling and random normals, quantized by gguf.quants (the Python
  // port of GGML's quantize_row_q8_0_ref).
  write_bytes(script, R"(import gguf, numpy as np, sys
w = gguf.GGUFWriter(sys.argv[1], "llama")
w.add_uint8("t.u8", 7); w.add_int16("t.i16", -5); w.add_float64("t.f64", 0.125)
w.add_bool("t.b", False); w.add_string("t.s", "テスト"); w.add_array("t.arr", [1, 2, 3])
w.add_array("t.strs", ["x", "yz"]); w.add_uint64("t.u64", 2**63)
rng = np.random.default_rng(3)
x = rng.standard_normal((4, 64)).astype(np.float32)
x[0, :3] = [127, 0.5, -0.5]; x[1, :] = 0; x[2, 5] = -9
np.save(sys.argv[2], x)
w.add_tensor("x.q8", gguf.quants.quantize(x, gguf.GGMLQuantizationType.Q8_0), raw_dtype=gguf.GGMLQuantizationType.Q8_0)
w.add_tensor("x.f16", x.astype(np.float16))
w.add_tensor("x.f32", x)
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
)");
  std::string out;
  ASSERT_EQ(run_command(kPython + " " + script + " " + path + " " + dir.file("x.npy") + " 2>&1", out), 0) << out;
  GgufFile f(path);
  EXPECT_EQ(f.at("general.architecture").s, "llama");
  EXPECT_EQ(f.at("t.u8").u, 7u);
  EXPECT_EQ(f.at("t.u8").type, GgufType::UINT8);
  EXPECT_EQ(f.at("t.i16").i, -5);
  EXPECT_EQ(f.at("t.f64").f, 0.125);
  EXPECT_FALSE(f.at("t.b").b);
  EXPECT_EQ(f.at("t.s").s, "テスト");
  EXPECT_EQ(f.at("t.arr").array.size(), 3u);
  EXPECT_EQ(f.at("t.strs").array[1].s, "yz");
  EXPECT_EQ(f.at("t.u64").u, 1ull << 63);
  const auto x = f.to_float("x.f32");
  ASSERT_EQ(x.size(), 256u);
  EXPECT_EQ(x[0], 127.0f);
  const auto* q = f.find_tensor("x.q8");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->ne, (std::vector<uint64_t>{64, 4}));
  EXPECT_EQ(q->type, 8u);
  std::vector<std::byte> ours(q->data.size());
  quantize_q8_0(x.data(), 256, ours.data());
  EXPECT_EQ(0, std::memcmp(ours.data(), q->data.data(), ours.size())) << "Q8_0 blocks differ from gguf.quants";
  const auto h = f.to_float("x.f16");
  for (size_t k = 0; k < x.size(); ++k) ASSERT_EQ(h[k], f16_to_float(float_to_f16(x[k]))) << k;
}
