// safetensors: round trips, clear errors for broken files, and the Python `safetensors`
// package as the oracle in both directions.
#include "formats/safetensors.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>

#include "test_util.h"
#include "util/error.h"

namespace tsumugi::formats {
namespace {

using tsumugi::testing::run_command;
using tsumugi::testing::TempDir;
using tsumugi::testing::write_bytes;

template <typename T>
std::vector<std::byte> as_bytes_vec(const std::vector<T>& v) {
  std::vector<std::byte> b(v.size() * sizeof(T));
  if (!b.empty()) std::memcpy(b.data(), v.data(), b.size());
  return b;
}

template <typename T>
std::vector<T> from_bytes(std::span<const std::byte> b) {
  std::vector<T> v(b.size() / sizeof(T));
  if (!v.empty()) std::memcpy(v.data(), b.data(), v.size() * sizeof(T));
  return v;
}

// Message of the tsumugi::Error thrown by opening `path`; fails the test if none is thrown.
std::string open_error(const std::string& path) {
  try {
    SafetensorsFile f(path);
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "opening " << path << " did not fail";
  return "";
}

// A file from a raw header string and data bytes.
std::string raw_file(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  return out + header + data;
}

TEST(Safetensors, RoundTripKeepsDtypesShapesBytesAndOrder) {
  TempDir dir;
  const std::string path = dir.file("model.safetensors");
  std::vector<float> w(2 * 3);
  for (size_t i = 0; i < w.size(); ++i) w[i] = float(i) * 0.5f - 1.25f;
  std::vector<uint16_t> bf(5), hf(5);
  const float bf_src[5] = {1.0f, -2.5f, 3.140625f, 0.0f, -0.0078125f};  // exact in bf16 and f16
  for (int i = 0; i < 5; ++i) {
    bf[i] = float_to_bf16(bf_src[i]);
    hf[i] = float_to_f16(bf_src[i]);
  }
  std::vector<int32_t> ids{7, -3, 2147483647};
  std::vector<int64_t> big{int64_t(1) << 40, -1};
  std::vector<uint8_t> bytes{1, 2, 3};  // odd length: the tensor after it starts unaligned
  std::vector<float> scalar{42.0f};
  std::vector<TensorToWrite> ts;
  ts.push_back({"z.first", DType::F32, {2, 3}, w.data(), {}});
  ts.push_back({"bytes", DType::U8, {3}, bytes.data(), {}});
  ts.push_back({"emb.bf16", DType::BF16, {5}, bf.data(), {}});
  ts.push_back({"emb.f16", DType::F16, {5, 1}, hf.data(), {}});
  ts.push_back({"ids", DType::I32, {3}, ids.data(), {}});
  ts.push_back({"big", DType::I64, {2}, big.data(), {}});
  ts.push_back({"empty", DType::F32, {0, 4}, nullptr, [](std::span<std::byte> b) { EXPECT_TRUE(b.empty()); }});
  ts.push_back({"scalar", DType::F32, {}, scalar.data(), {}});
  ts.push_back({"日本語.重み", DType::F32, {2}, nullptr, [](std::span<std::byte> b) {
                  ASSERT_EQ(b.size(), 8u);
                  float v[2] = {3.0f, 4.0f};
                  std::memcpy(b.data(), v, 8);
                }});
  write_safetensors(path, ts, {{"format", "pt"}, {"step", "100"}});

  // Header padded with spaces to a multiple of 8, as the reference writer does.
  std::string raw = read_file(path);
  uint64_t n;
  std::memcpy(&n, raw.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ(raw[8], '{');
  EXPECT_EQ(raw.substr(8, n).find_last_not_of(' '), raw.substr(8, n).rfind('}'));

  SafetensorsFile f(path);
  EXPECT_EQ(f.data_start(), 8 + n);
  ASSERT_EQ(f.tensors().size(), ts.size());
  // Data laid out in the order given (zero-size tensors sort by offset among their neighbours).
  std::vector<std::string> order;
  for (const auto& t : f.tensors()) order.push_back(t.name);
  EXPECT_EQ(order.front(), "z.first");
  EXPECT_EQ(order.back(), "日本語.重み");
  EXPECT_EQ(f.at("bytes").offset, 24u);
  EXPECT_EQ(f.at("emb.bf16").offset, 27u);
  EXPECT_EQ(f.metadata(), (std::map<std::string, std::string>{{"format", "pt"}, {"step", "100"}}));

  EXPECT_EQ(f.at("z.first").shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(f.to_float("z.first"), w);
  EXPECT_EQ(f.at("emb.bf16").dtype, DType::BF16);
  EXPECT_EQ(from_bytes<uint16_t>(f.at("emb.bf16").data), bf);
  EXPECT_EQ(f.to_float("emb.bf16"), std::vector<float>(bf_src, bf_src + 5));
  EXPECT_EQ(f.to_float("emb.f16"), std::vector<float>(bf_src, bf_src + 5));
  EXPECT_EQ(from_bytes<int32_t>(f.at("ids").data), ids);
  EXPECT_EQ(from_bytes<int64_t>(f.at("big").data), big);
  EXPECT_EQ(from_bytes<uint8_t>(f.at("bytes").data), bytes);
  EXPECT_EQ(f.at("empty").numel(), 0);
  EXPECT_TRUE(f.at("empty").data.empty());
  EXPECT_EQ(f.at("scalar").shape.size(), 0u);
  EXPECT_EQ(f.to_float("scalar"), scalar);
  EXPECT_EQ(f.to_float("日本語.重み"), (std::vector<float>{3.0f, 4.0f}));
  EXPECT_FALSE(f.contains("missing"));
  EXPECT_EQ(f.find("missing"), nullptr);

  // Moving keeps the mapping alive.
  SafetensorsFile g = std::move(f);
  EXPECT_EQ(g.to_float("z.first"), w);
}

// A model directory: one file, or shards through model.safetensors.index.json, each tensor found in
// its shard; an index that names a missing shard, a path outside the directory or a shard without
// the tensor is refused naming the file.
TEST(SafetensorsDir, SingleFileAndShardsAndBadIndexes) {
  TempDir dir;
  std::vector<float> a{1, 2, 3}, b{4, 5};
  auto write = [&](const std::string& path, const std::string& name, const std::vector<float>& v) {
    write_safetensors(path, {{name, DType::F32, {static_cast<int64_t>(v.size())}, v.data(), {}}});
  };
  std::filesystem::create_directories(dir.file("one"));
  write(dir.file("one/model.safetensors"), "a", a);
  SafetensorsDir one(dir.file("one"));
  EXPECT_TRUE(one.has("a"));
  EXPECT_FALSE(one.has("b"));
  EXPECT_EQ(one.get("a").first->numel(), 3);
  EXPECT_EQ(one.files().size(), 1u);

  const std::string sh = dir.file("sharded");
  std::filesystem::create_directories(sh);
  write(sh + "/model-00001-of-00002.safetensors", "a", a);
  write(sh + "/model-00002-of-00002.safetensors", "b", b);
  auto index = [&](const nlohmann::json& map) {
    write_bytes(sh + "/model.safetensors.index.json", nlohmann::json({{"metadata", {}}, {"weight_map", map}}).dump());
  };
  index({{"a", "model-00001-of-00002.safetensors"}, {"b", "model-00002-of-00002.safetensors"}});
  SafetensorsDir two(sh);
  ASSERT_EQ(two.files().size(), 2u);
  EXPECT_EQ(two.get("b").second->path(), sh + "/model-00002-of-00002.safetensors");
  EXPECT_EQ(from_bytes<float>(two.get("b").first->data), b);
  auto error = [&](const std::string& d) {
    try {
      SafetensorsDir x(d);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  try {
    two.get("c");
    ADD_FAILURE() << "no error for an absent tensor";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tensor 'c' is missing"), std::string::npos) << e.what();
  }
  index({{"a", "model-00001-of-00002.safetensors"}, {"b", "model-00003-of-00003.safetensors"}});
  EXPECT_NE(error(sh).find("missing shard"), std::string::npos) << error(sh);
  index({{"a", "../one/model.safetensors"}});
  EXPECT_NE(error(sh).find("is not a file in the directory"), std::string::npos) << error(sh);
  index({{"b", "model-00001-of-00002.safetensors"}});
  EXPECT_NE(error(sh).find("which does not hold it"), std::string::npos) << error(sh);
  write_bytes(sh + "/model.safetensors.index.json", "{\"weight_map\": [");
  EXPECT_NE(error(sh).find("model.safetensors.index.json"), std::string::npos) << error(sh);
  EXPECT_NE(error(dir.file("none")).find("no model.safetensors or model.safetensors.index.json"), std::string::npos);
}

TEST(Safetensors, EmptyFileOfNoTensorsRoundTrips) {
  TempDir dir;
  write_safetensors(dir.file("e.safetensors"), {});
  SafetensorsFile f(dir.file("e.safetensors"));
  EXPECT_TRUE(f.tensors().empty());
  EXPECT_EQ(read_file(dir.file("e.safetensors")).size(), 16u);  // "{}" padded to 8
}

TEST(Safetensors, WriterRejectsBadInputAndLeavesNothing) {
  TempDir dir;
  const std::string path = dir.file("bad.safetensors");
  float x[2] = {1, 2};
  auto expect_fail = [&](std::vector<TensorToWrite> ts, const std::string& needle) {
    try {
      write_safetensors(path, ts);
      ADD_FAILURE() << "no error for " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
    EXPECT_FALSE(std::filesystem::exists(path));
  };
  expect_fail({{"a", DType::F32, {2}, x, {}}, {"a", DType::F32, {2}, x, {}}}, "'a' is given twice");
  expect_fail({{"__metadata__", DType::F32, {2}, x, {}}}, "'__metadata__'");
  expect_fail({{"a", DType::F32, {-2}, x, {}}}, "negative dimension");
  expect_fail({{"a", DType::F32, {2}, nullptr, {}}}, "exactly one of");
  expect_fail({{"a", DType::F32, {int64_t(1) << 62, 8}, x, {}}}, "too large");
  // A fill callback that throws leaves no partial file either.
  EXPECT_THROW(write_safetensors(path, {{"a", DType::F32, {2}, nullptr, [](std::span<std::byte>) { fail("device copy failed"); }}}),
               Error);
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_THROW(write_safetensors(dir.file("x.safetensors.zst"), {}), Error);
}

TEST(Safetensors, CorruptFilesGiveClearErrors) {
  TempDir dir;
  auto check = [&](const std::string& name, const std::string& bytes, const std::string& needle) {
    const std::string path = dir.file(name);
    write_bytes(path, bytes);
    std::string msg = open_error(path);
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << "want '" << needle << "' in: " << msg;
  };
  const std::string f8(8, 'x');  // 8 bytes of data: two F32
  check("short", "abc", "shorter than the 8-byte header length");
  check("huge_len", std::string("\xff\xff\xff\xff\xff\xff\xff\x7f", 8) + "{}", "exceeds the format's limit");
  check("past_end", std::string("\x40\x00\x00\x00\x00\x00\x00\x00", 8) + "{}", "runs past the end of the file");
  check("not_json", raw_file("{\"a\": [1,", ""), "not valid JSON");
  check("not_brace", raw_file("[1, 2]  ", ""), "does not start with '{'");
  check("bad_utf8", raw_file("{\"\xff\":{}}", ""), "not valid JSON");
  check("entry_not_obj", raw_file(R"({"a": 3})", ""), "tensor 'a': entry is not an object");
  check("no_dtype", raw_file(R"({"a": {"shape": [2], "data_offsets": [0, 8]}})", f8), "tensor 'a': missing or non-string \"dtype\"");
  check("bad_dtype", raw_file(R"({"a": {"dtype": "F99", "shape": [2], "data_offsets": [0, 8]}})", f8), "unsupported dtype \"F99\"");
  check("neg_shape", raw_file(R"({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}})", f8), "not a non-negative integer");
  check("float_shape", raw_file(R"({"a": {"dtype": "F32", "shape": [2.0], "data_offsets": [0, 8]}})", f8), "not a non-negative integer");
  check("bad_offsets", raw_file(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0]}})", f8), "\"data_offsets\" must be two");
  check("backwards", raw_file(R"({"a": {"dtype": "F32", "shape": [0], "data_offsets": [8, 0]}})", f8), "end before they begin");
  check("size_mismatch", raw_file(R"({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", f8),
        "tensor 'a' (F32, shape [3]) needs 12 bytes but data_offsets [0, 8] hold 8");
  check("overflow", raw_file(R"({"a": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 8]}})", f8),
        "too large");
  check("overlap",
        raw_file(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})", f8),
        "overlaps tensor 'a'");
  check("gap", raw_file(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})", f8), "data bytes [0, 4) before tensor 'a' belong to no tensor");
  check("truncated_data", raw_file(R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})", f8),
        "truncated: the tensors need 16 bytes of data after the header but the file holds 8");
  check("trailing", raw_file(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})", f8), "4 bytes after the last tensor");
  check("duplicate",
        raw_file(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})", f8),
        "names 'a' twice");
  check("meta_not_str", raw_file(R"({"__metadata__": {"k": 1}})", ""), "__metadata__ value for 'k' is not a string");
  EXPECT_NE(open_error(dir.file("does_not_exist")).find("cannot open"), std::string::npos);
  EXPECT_NE(open_error(dir.path().string()).find("directory"), std::string::npos);

  // Unknown fields in an entry are ignored, as the reference reader does.
  write_bytes(dir.file("extra"), raw_file(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8], "x": 1}})", f8));
  EXPECT_NO_THROW(SafetensorsFile{dir.file("extra")});

  // Missing tensors and non-float conversions name the file and tensor.
  write_safetensors(dir.file("ok.safetensors"), {{"ids", DType::I32, {2}, f8.data(), {}}});
  SafetensorsFile ok(dir.file("ok.safetensors"));
  try {
    ok.at("nope");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no tensor named 'nope'"), std::string::npos) << e.what();
  }
  try {
    ok.to_float("ids");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'ids' is I32"), std::string::npos) << e.what();
  }
}

// Every truncation fails with an Error; random corruption either reads or fails with an
// Error — never another exception, never a crash.
TEST(Safetensors, TruncationAndBitFlipsNeverCrash) {
  TempDir dir;
  std::vector<float> a(6, 1.5f);
  std::vector<uint16_t> b(3, 0x3c00);
  const std::string path = dir.file("m.safetensors");
  write_safetensors(path, {{"a", DType::F32, {2, 3}, a.data(), {}}, {"b", DType::F16, {3}, b.data(), {}}}, {{"k", "v"}});
  const std::string good = read_file(path);
  const std::string cut = dir.file("cut.safetensors");
  for (size_t len = 0; len < good.size(); ++len) {
    write_bytes(cut, good.substr(0, len));
    try {
      SafetensorsFile f(cut);
      ADD_FAILURE() << "truncation to " << len << " bytes was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(cut), std::string::npos);
    } catch (const std::exception& e) {
      ADD_FAILURE() << "truncation to " << len << ": non-tsumugi exception " << e.what();
    }
  }
  std::mt19937 rng(7);
  int accepted = 0;
  for (int trial = 0; trial < 2000; ++trial) {
    std::string bad = good;
    int flips = 1 + int(rng() % 3);
    for (int k = 0; k < flips; ++k) bad[rng() % bad.size()] ^= char(1u << (rng() % 8));
    write_bytes(cut, bad);
    try {
      SafetensorsFile f(cut);
      for (const auto& t : f.tensors()) {
        ASSERT_EQ(uint64_t(t.numel()) * dtype_size(t.dtype), t.data.size());
        if (t.dtype == DType::F32 || t.dtype == DType::F16 || t.dtype == DType::BF16 || t.dtype == DType::F64) {
          EXPECT_EQ(f.to_float(t.name).size(), size_t(t.numel()));
        }
      }
      ++accepted;
    } catch (const Error&) {
    } catch (const std::exception& e) {
      ADD_FAILURE() << "trial " << trial << ": non-tsumugi exception " << e.what();
    }
  }
  // Flips inside the data (and some in the header's spacing) keep the file valid.
  EXPECT_GT(accepted, 0);
  EXPECT_LT(accepted, 2000);
}

TEST(Safetensors, HalfAndBfloatConversions) {
  // bf16: known encodings and round-to-nearest-even on ties.
  EXPECT_EQ(float_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(float_to_bf16(-2.0f), 0xc000);
  EXPECT_EQ(float_to_bf16(std::bit_cast<float>(0x3f808000u)), 0x3f80);  // tie, even stays
  EXPECT_EQ(float_to_bf16(std::bit_cast<float>(0x3f818000u)), 0x3f82);  // tie, odd rounds up
  EXPECT_EQ(float_to_bf16(std::bit_cast<float>(0x3f808001u)), 0x3f81);  // above the tie
  EXPECT_EQ(float_to_bf16(std::numeric_limits<float>::max()), 0x7f80);  // rounds to inf
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(std::bit_cast<float>(0x7f800001u)))));
  EXPECT_EQ(bf16_to_float(0x4049), 3.140625f);
  // f16: known encodings, subnormals, overflow.
  EXPECT_EQ(float_to_f16(1.0f), 0x3c00);
  EXPECT_EQ(float_to_f16(-2.0f), 0xc000);
  EXPECT_EQ(float_to_f16(65504.0f), 0x7bff);
  EXPECT_EQ(float_to_f16(65519.0f), 0x7bff);
  EXPECT_EQ(float_to_f16(65520.0f), 0x7c00);
  EXPECT_EQ(float_to_f16(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(float_to_f16(std::ldexp(1.0f, -25)), 0x0000);                          // tie to even (0)
  EXPECT_EQ(float_to_f16(std::ldexp(3.0f, -25)), 0x0002);                          // tie to even (2)
  EXPECT_EQ(float_to_f16(std::ldexp(1.0f, -14)), 0x0400);                          // smallest normal
  EXPECT_EQ(float_to_f16(std::ldexp(1023.5f, -24)), 0x0400);                       // rounds up into normal
  EXPECT_EQ(float_to_f16(-0.0f), 0x8000);
  EXPECT_EQ(float_to_f16(std::numeric_limits<float>::infinity()), 0x7c00);
  EXPECT_TRUE(std::isnan(f16_to_float(float_to_f16(std::nanf("")))));
  EXPECT_EQ(f16_to_float(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(f16_to_float(0x7bff), 65504.0f);
  EXPECT_EQ(f16_to_float(0xfc00), -std::numeric_limits<float>::infinity());
  // Every half and every bf16 survives float and back.
  for (uint32_t h = 0; h < 65536; ++h) {
    if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) continue;  // NaNs: checked above
    ASSERT_EQ(float_to_f16(f16_to_float(uint16_t(h))), h) << h;
    if ((h & 0x7f80) == 0x7f80 && (h & 0x7f)) continue;
    ASSERT_EQ(float_to_bf16(bf16_to_float(uint16_t(h))), h) << h;
  }
}

// ---- the Python `safetensors` package as the oracle ----

std::string missing_python_safetensors() {
  std::string out;
  if (run_command("python3 -c 'import safetensors.numpy, numpy'", out) != 0)
    return "python3 with the safetensors and numpy packages is needed (pip install -r tests/requirements.txt)";
  return "";
}

// Reads our file with safetensors.numpy.load_file and compares every tensor with the
// expected values (F16 bit-for-bit against numpy's own float32→float16 rounding); then
// opens the BF16 file with safe_open, whose header validation covers every entry.
constexpr const char* kPyReader = R"PY(
import json, sys
import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file
path, bf16_path, expected_path = sys.argv[1:4]
exp = json.load(open(expected_path))
got = load_file(path)
assert sorted(got) == sorted(exp["tensors"]), (sorted(got), sorted(exp["tensors"]))
for name, e in exp["tensors"].items():
    a = got[name]
    assert str(a.dtype) == e["np"], (name, a.dtype, e["np"])
    assert list(a.shape) == e["shape"], (name, a.shape, e["shape"])
    want = np.array(e["values"], dtype=np.float32 if e["np"] == "float16" else e["np"]).astype(e["np"]).reshape(e["shape"])
    if e["np"] == "float16":
        assert (a.view(np.uint16) == want.view(np.uint16)).all(), (name, a, want)
    else:
        assert (a == want).all(), (name, a, want)
with safe_open(path, framework="numpy") as f:
    assert f.metadata() == exp["metadata"], f.metadata()
with safe_open(bf16_path, framework="numpy") as f:
    assert list(f.keys()) == ["w"], list(f.keys())
    s = f.get_slice("w")
    assert s.get_dtype() == "BF16" and s.get_shape() == [3, 2], (s.get_dtype(), s.get_shape())
print("SAFETENSORS-READER-OK", len(got))
)PY";

// Writes tensors with safetensors.numpy.save_file and their expected values as JSON.
constexpr const char* kPyWriter = R"PY(
import json, sys
import numpy as np
from safetensors.numpy import save_file
path, expected_path = sys.argv[1:3]
t = {
    "layers.0.w": (np.arange(12, dtype=np.float32) * 0.37 - 2).reshape(3, 4),
    "layers.0.b": np.array([1e-8, 65504, -3.5], dtype=np.float16),
    "ids": np.array([[1, -2], [2**31 - 1, -2**31]], dtype=np.int32),
    "pos": np.array([2**40, -7], dtype=np.int64),
    "mask": np.array([True, False, True]),
    "u8": np.array([0, 255, 7], dtype=np.uint8),
    "d": np.array([0.1, -1e300], dtype=np.float64),
    "scalar": np.array(3.25, dtype=np.float32),
    "empty": np.zeros((0, 5), dtype=np.float32),
}
save_file(t, path, metadata={"format": "np"})
json.dump({k: {"dtype": str(v.dtype), "shape": list(v.shape), "values": [float(x) for x in v.reshape(-1)]}
           for k, v in t.items()}, open(expected_path, "w"))
print("SAFETENSORS-WRITER-OK")
)PY";

TEST(Safetensors, PythonSafetensorsReadsOurFile) {
  if (auto why = missing_python_safetensors(); !why.empty()) GTEST_SKIP() << why;
  TempDir dir;
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(-70000.0f, 70000.0f);
  std::vector<float> w(7 * 5), h_src(200);
  for (auto& x : w) x = u(rng) / 1000.0f;
  // Halves: a wide spread of magnitudes, subnormals, exact ties and overflow.
  for (size_t i = 0; i < h_src.size(); ++i) h_src[i] = std::ldexp(u(rng) / 70000.0f, int(i % 40) - 26);
  h_src[0] = 65520.0f;
  h_src[1] = std::ldexp(3.0f, -25);
  h_src[2] = 1.0f + std::ldexp(1.0f, -11);
  std::vector<uint16_t> h(h_src.size());
  for (size_t i = 0; i < h.size(); ++i) h[i] = float_to_f16(h_src[i]);
  std::vector<int32_t> ids{0, -1, 2147483647, -2147483647 - 1};
  std::vector<int64_t> pos{int64_t(1) << 50, -5, 0};
  std::vector<uint8_t> u8{0, 200, 255};
  std::vector<double> d{0.1, -1e300};
  nlohmann::json exp;
  exp["metadata"] = {{"format", "np"}, {"note", "日本語"}};
  auto add_exp = [&](const std::string& name, const std::string& np, std::vector<int64_t> shape, nlohmann::json values) {
    exp["tensors"][name] = {{"np", np}, {"shape", shape}, {"values", values}};
  };
  add_exp("w", "float32", {7, 5}, w);
  add_exp("h", "float16", {200}, h_src);
  add_exp("ids", "int32", {2, 2}, ids);
  add_exp("pos", "int64", {3}, pos);
  add_exp("u8", "uint8", {3}, u8);
  add_exp("d", "float64", {2}, d);
  add_exp("empty", "float32", {0}, nlohmann::json::array());
  const std::string path = dir.file("ours.safetensors");
  write_safetensors(path,
                    {{"w", DType::F32, {7, 5}, w.data(), {}},
                     {"u8", DType::U8, {3}, u8.data(), {}},  // leaves the next tensor unaligned
                     {"h", DType::F16, {200}, h.data(), {}},
                     {"ids", DType::I32, {2, 2}, ids.data(), {}},
                     {"empty", DType::F32, {0}, nullptr, [](std::span<std::byte>) {}},
                     {"pos", DType::I64, {3}, pos.data(), {}},
                     {"d", DType::F64, {2}, d.data(), {}}},
                    {{"format", "np"}, {"note", "日本語"}});
  std::vector<uint16_t> bf(6);
  for (size_t i = 0; i < bf.size(); ++i) bf[i] = float_to_bf16(float(i) - 2.5f);
  write_safetensors(dir.file("bf16.safetensors"), {{"w", DType::BF16, {3, 2}, bf.data(), {}}});
  write_bytes(dir.file("expected.json"), exp.dump());
  write_bytes(dir.file("reader.py"), kPyReader);
  std::string out;
  int rc = run_command("python3 " + dir.file("reader.py") + " " + path + " " + dir.file("bf16.safetensors") + " " +
                           dir.file("expected.json"),
                       out);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("SAFETENSORS-READER-OK 7"), std::string::npos) << out;
}

TEST(Safetensors, WeReadPythonSafetensorsFilesAndWriteTheSameBytes) {
  if (auto why = missing_python_safetensors(); !why.empty()) GTEST_SKIP() << why;
  TempDir dir;
  const std::string theirs = dir.file("theirs.safetensors");
  write_bytes(dir.file("writer.py"), kPyWriter);
  std::string out;
  ASSERT_EQ(run_command("python3 " + dir.file("writer.py") + " " + theirs + " " + dir.file("expected.json"), out), 0) << out;
  auto exp = nlohmann::json::parse(read_file(dir.file("expected.json")));

  SafetensorsFile f(theirs);
  EXPECT_EQ(f.metadata(), (std::map<std::string, std::string>{{"format", "np"}}));
  ASSERT_EQ(f.tensors().size(), exp.size());
  const std::map<std::string, DType> np_to{{"float32", DType::F32}, {"float16", DType::F16}, {"int32", DType::I32},
                                           {"int64", DType::I64},   {"bool", DType::BOOL},    {"uint8", DType::U8},
                                           {"float64", DType::F64}};
  for (const auto& [name, e] : exp.items()) {
    SCOPED_TRACE(name);
    const auto& t = f.at(name);
    EXPECT_EQ(t.dtype, np_to.at(e["dtype"].get<std::string>()));
    EXPECT_EQ(t.shape, e["shape"].get<std::vector<int64_t>>());
    auto values = e["values"].get<std::vector<double>>();
    ASSERT_EQ(size_t(t.numel()), values.size());
    switch (t.dtype) {
      case DType::F32:
      case DType::F16: {
        auto got = f.to_float(name);
        for (size_t i = 0; i < values.size(); ++i) EXPECT_EQ(got[i], float(values[i])) << i;
        break;
      }
      case DType::F64: EXPECT_EQ(from_bytes<double>(t.data), values); break;
      case DType::I32:
        for (size_t i = 0; i < values.size(); ++i) EXPECT_EQ(from_bytes<int32_t>(t.data)[i], int32_t(values[i]));
        break;
      case DType::I64:
        for (size_t i = 0; i < values.size(); ++i) EXPECT_EQ(from_bytes<int64_t>(t.data)[i], int64_t(values[i]));
        break;
      case DType::BOOL:
      case DType::U8:
        for (size_t i = 0; i < values.size(); ++i) EXPECT_EQ(from_bytes<uint8_t>(t.data)[i], uint8_t(values[i]));
        break;
      default: ADD_FAILURE() << "unexpected dtype " << dtype_name(t.dtype);
    }
  }

  // Given the same tensors in the same order, our writer produces the same bytes: same
  // header JSON, same padding, same data layout.
  std::vector<TensorToWrite> again;
  for (const auto& t : f.tensors()) again.push_back({t.name, t.dtype, t.shape, t.data.data(), {}});
  for (auto& t : again)
    if (t.data == nullptr || f.at(t.name).data.empty()) {
      t.data = nullptr;
      t.fill = [](std::span<std::byte>) {};
    }
  const std::string mine = dir.file("mine.safetensors");
  write_safetensors(mine, again, f.metadata());
  EXPECT_EQ(read_file(mine), read_file(theirs));
}

}  // namespace
}  // namespace tsumugi::formats
