// Loading weights for decoding: LoRA merged as W + (alpha/r) B A, the matvec kernels of every
// instruction set against the scalar reference, and bad model directories refused with the file
// and tensor named.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <memory>
#include <random>

#include "formats/safetensors.h"
#include "infer/engine.h"
#include "infer/fixtures.h"
#include "infer/kernels.h"
#include "util/error.h"
#include "util/io.h"

namespace tsumugi {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;
using testing::write_bytes;

std::vector<float> logits_after(infer::Engine& e, const std::vector<int32_t>& ids) {
  auto d = e.new_decoder();
  std::vector<float> lg(e.config().vocab_size);
  d->append(ids.data(), static_cast<int>(ids.size()), lg.data());
  return lg;
}

// Writes a PEFT-layout adapter with random A [r, in] and B [out, r] for the given modules and
// returns the weights with W += (alpha / r) B A applied by hand (tsumugi orientation).
std::vector<float> write_adapter(const std::string& dir, const model::ModelConfig& c, std::vector<float> w,
                                 const std::vector<std::string>& modules, int r, double alpha) {
  fs::create_directories(dir);
  std::mt19937 rng(4);
  std::normal_distribution<float> nd(0.0f, 0.2f);
  std::vector<std::vector<float>> keep;
  std::vector<formats::TensorToWrite> tensors;
  const float scale = static_cast<float>(alpha / r);
  for (const auto& p : model::parameter_layout(c)) {
    bool hit = false;
    for (const auto& m : modules)
      if (p.name.find("." + m + ".weight") != std::string::npos) hit = true;
    if (!hit) continue;
    const int64_t out = p.shape[0], in = p.shape[1];
    std::vector<float> a(r * in), b(out * r);
    for (auto& v : a) v = nd(rng);
    for (auto& v : b) v = nd(rng);
    for (int64_t o = 0; o < out; ++o)
      for (int64_t i = 0; i < in; ++i) {
        double s = 0;
        for (int k = 0; k < r; ++k) s += static_cast<double>(b[o * r + k]) * a[k * in + i];
        w[p.offset + o * in + i] += scale * static_cast<float>(s);
      }
    const std::string base = "base_model.model." + p.name.substr(0, p.name.size() - 7);
    keep.push_back(std::move(a));
    tensors.push_back({base + ".lora_A.weight", formats::DType::F32, {r, in}, keep.back().data(), {}});
    keep.push_back(std::move(b));
    tensors.push_back({base + ".lora_B.weight", formats::DType::F32, {out, r}, keep.back().data(), {}});
  }
  formats::write_safetensors(dir + "/adapter_model.safetensors", tensors);
  nlohmann::json cfg = {{"peft_type", "LORA"}, {"r", r}, {"lora_alpha", alpha}, {"target_modules", modules},
                        {"fan_in_fan_out", c.family == model::Family::GPT2}};
  write_bytes(dir + "/adapter_config.json", cfg.dump());
  return w;
}

TEST(InferWeights, LoraMergeIsWPlusScaledBA) {
  TempDir dir;
  const std::vector<int32_t> ids = {3, 14, 15, 92, 65, 35};
  for (const auto& c : {testing::tiny_gpt2(), testing::tiny_llama()}) {
    const bool gpt2 = c.family == model::Family::GPT2;
    const auto w = testing::random_weights(c, 8);
    const std::string base = dir.file(c.family_name()), merged = dir.file(c.family_name() + "_merged");
    const std::string adapter = dir.file(c.family_name() + "_lora");
    testing::write_checkpoint(base, c, w);
    const auto modules = gpt2 ? std::vector<std::string>{"c_attn", "c_fc"} : std::vector<std::string>{"q_proj", "v_proj", "down_proj"};
    testing::write_checkpoint(merged, c, write_adapter(adapter, c, w, modules, 2, 6.0));
    infer::LoadOptions o;
    o.adapter = adapter;
    const auto with = logits_after(*infer::Engine::load(base, o), ids);
    const auto want = logits_after(*infer::Engine::load(merged), ids);
    const auto plain = logits_after(*infer::Engine::load(base), ids);
    double worst = 0, changed = 0, scale = 1;
    for (std::size_t v = 0; v < want.size(); ++v) {
      worst = std::max<double>(worst, std::fabs(with[v] - want[v]));
      changed = std::max<double>(changed, std::fabs(plain[v] - want[v]));
      scale = std::max<double>(scale, std::fabs(want[v]));
    }
    EXPECT_LT(worst, 1e-5 * scale) << c.family_name();
    EXPECT_GT(changed, 1e-2) << c.family_name() << ": the adapter should matter";
    // q8_0 quantizes the merged weights, not the base.
    o.dtype = "q8_0";
    infer::LoadOptions q;
    q.dtype = "q8_0";
    const auto a = logits_after(*infer::Engine::load(base, o), ids);
    const auto b = logits_after(*infer::Engine::load(merged, q), ids);
    for (std::size_t v = 0; v < a.size(); ++v) EXPECT_NEAR(a[v], b[v], 2e-2 * scale);
  }
}

std::string load_error(const std::string& dir, const infer::LoadOptions& o = {}) {
  try {
    infer::Engine::load(dir, o);
  } catch (const Error& e) {
    return e.what();
  }
  return "(loaded without error)";
}

#define EXPECT_HAS(text, part) EXPECT_NE((text).find(part), std::string::npos) << (text)

TEST(InferWeights, AdapterProblemsAreNamed) {
  TempDir dir;
  const auto c = testing::tiny_llama();
  testing::write_checkpoint(dir.file("m"), c, testing::random_weights(c, 1));
  infer::LoadOptions o;
  o.adapter = dir.file("nothing");
  EXPECT_HAS(load_error(dir.file("m"), o), "adapter_config.json");
  // An adapter for another model's module.
  write_adapter(dir.file("a"), testing::tiny_gpt2(), testing::random_weights(testing::tiny_gpt2(), 1), {"c_fc"}, 2, 4);
  o.adapter = dir.file("a");
  EXPECT_HAS(load_error(dir.file("m"), o), "transformer.h.0.mlp.c_fc.weight");
}

class InferBadModel : public ::testing::Test {
 protected:
  void SetUp() override {
    c_ = testing::tiny_llama();
    w_ = testing::random_weights(c_, 3);
    testing::write_checkpoint(dir_.file("ok"), c_, w_);
  }
  // A model directory with these tensors (HF names, F32), the good config.
  std::string write_model(const std::string& name, const std::vector<formats::TensorToWrite>& tensors) {
    fs::create_directories(dir_.file(name));
    fs::copy_file(dir_.file("ok/config.json"), dir_.file(name + "/config.json"));
    formats::write_safetensors(dir_.file(name + "/model.safetensors"), tensors);
    return dir_.file(name);
  }
  std::vector<formats::TensorToWrite> all() {
    std::vector<formats::TensorToWrite> t;
    for (const auto& p : model::parameter_layout(c_)) t.push_back({p.name, formats::DType::F32, p.shape, w_.data() + p.offset, {}});
    return t;
  }
  TempDir dir_;
  model::ModelConfig c_;
  std::vector<float> w_;
};

TEST_F(InferBadModel, MissingTensor) {
  auto t = all();
  t.erase(t.begin() + 3);
  const std::string name = t[2].name;
  const std::string missing = model::parameter_layout(c_)[3].name;
  const std::string e = load_error(write_model("m", t));
  EXPECT_HAS(e, missing);
  EXPECT_HAS(e, "model.safetensors");
  EXPECT_HAS(e, "missing");
}

TEST_F(InferBadModel, WrongShape) {
  auto t = all();
  std::size_t k = 0;
  while (t[k].name.find("gate_proj") == std::string::npos) ++k;
  t[k].shape = {t[k].shape[1], t[k].shape[0]};  // [160, 64] stored as [64, 160]
  const std::string e = load_error(write_model("m", t));
  EXPECT_HAS(e, t[k].name);
  EXPECT_HAS(e, "[64, 160]");
}

TEST_F(InferBadModel, UnsupportedDtype) {
  auto t = all();
  std::vector<int32_t> ints(c_.d_model, 1);
  for (auto& x : t)
    if (x.name == "model.norm.weight") {
      x.dtype = formats::DType::I32;
      x.data = ints.data();
    }
  const std::string e = load_error(write_model("m", t));
  EXPECT_HAS(e, "model.norm.weight");
  EXPECT_HAS(e, "I32");
}

TEST_F(InferBadModel, TruncatedFile) {
  const std::string d = write_model("m", all());
  const std::string bytes = read_file(d + "/model.safetensors");
  write_bytes(d + "/model.safetensors", bytes.substr(0, bytes.size() - 100));
  const std::string e = load_error(d);
  EXPECT_HAS(e, "model.safetensors");
}

TEST_F(InferBadModel, ShardedModelLoadsAndAMissingShardIsNamed) {
  auto t = all();
  const std::size_t half = t.size() / 2;
  const std::string d = dir_.file("sharded");
  fs::create_directories(d);
  fs::copy_file(dir_.file("ok/config.json"), d + "/config.json");
  formats::write_safetensors(d + "/model-00001-of-00002.safetensors", {t.begin(), t.begin() + half});
  formats::write_safetensors(d + "/model-00002-of-00002.safetensors", {t.begin() + half, t.end()});
  nlohmann::json map;
  for (std::size_t i = 0; i < t.size(); ++i) map[t[i].name] = i < half ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  write_bytes(d + "/model.safetensors.index.json", nlohmann::json({{"metadata", {}}, {"weight_map", map}}).dump());
  const std::vector<int32_t> ids = {1, 2, 3};
  EXPECT_EQ(logits_after(*infer::Engine::load(d), ids), logits_after(*infer::Engine::load(dir_.file("ok")), ids));
  fs::remove(d + "/model-00002-of-00002.safetensors");
  const std::string e = load_error(d);
  EXPECT_HAS(e, "model-00002-of-00002.safetensors");
  EXPECT_HAS(e, "missing shard");
}

TEST_F(InferBadModel, MissingConfigAndWeights) {
  fs::create_directories(dir_.file("empty"));
  EXPECT_HAS(load_error(dir_.file("empty")), "config.json");
  fs::copy_file(dir_.file("ok/config.json"), dir_.file("empty/config.json"));
  EXPECT_HAS(load_error(dir_.file("empty")), "model.safetensors");
  EXPECT_HAS(load_error(dir_.file("absent")), "not a model directory");
}

// Every instruction set's matvec against the scalar loops, with row lengths that leave tails.
// The kernel instruction sets this CPU can run, scalar first (the reference).
std::vector<std::string> isas_up_to(const std::string& best) {
  std::vector<std::string> isas = {"scalar"};
  if (best == "avx2" || best == "avx512") isas.push_back("avx2");
  if (best == "avx512") isas.push_back("avx512");
  return isas;
}

// f32 weights [rows, cols] as a WMat of `type`, owning the converted bytes (f32 points at w).
struct TestMatrix {
  std::vector<uint16_t> h, d;
  std::vector<uint8_t> q;
  infer::WMat m;
  TestMatrix(const std::vector<float>& w, int64_t rows, int64_t cols, infer::WType type) {
    m.type = type;
    m.rows = rows;
    m.cols = cols;
    if (type == infer::WType::F32) m.data = reinterpret_cast<const std::byte*>(w.data());
    if (type == infer::WType::BF16 || type == infer::WType::F16) {
      for (float v : w) h.push_back(type == infer::WType::BF16 ? formats::float_to_bf16(v) : formats::float_to_f16(v));
      m.data = reinterpret_cast<const std::byte*>(h.data());
    }
    if (type == infer::WType::Q8_0) {
      q.resize(w.size());
      d.resize(w.size() / 32);
      infer::quantize_q8_0_matrix(w.data(), rows * cols, q.data(), d.data());
      m.data = reinterpret_cast<const std::byte*>(q.data());
      m.scales = d.data();
    }
  }
};

TEST(InferKernels, EveryIsaMatchesScalar) {
  const std::string best(infer::kernel_isa());
  const std::vector<std::string> isas = isas_up_to(best);
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (int64_t cols : {32, 77, 96, 800}) {
    const int64_t rows = 37;
    std::vector<float> w(rows * cols), x(cols);
    for (auto& v : w) v = nd(rng);
    for (auto& v : x) v = nd(rng);
    for (auto type : {infer::WType::F32, infer::WType::BF16, infer::WType::F16, infer::WType::Q8_0}) {
      if (type == infer::WType::Q8_0 && cols % 32) continue;
      const TestMatrix tm(w, rows, cols, type);
      const infer::WMat& m = tm.m;
      std::vector<std::vector<float>> ys;
      for (const auto& isa : isas) {
        infer::set_kernel_isa(isa);
        std::vector<float> y(rows);
        infer::matvec(m, x.data(), y.data(), 2);
        ys.push_back(y);
      }
      infer::set_kernel_isa(best);
      for (std::size_t k = 1; k < ys.size(); ++k)
        for (int64_t r = 0; r < rows; ++r)
          EXPECT_NEAR(ys[k][r], ys[0][r], 1e-5 * std::sqrt(static_cast<double>(cols)) * 4)
              << isas[k] << " " << infer::wtype_name(type) << " cols " << cols << " row " << r;
      // And the weights widened to f32 by dequantize_rows give the same product.
      std::vector<float> wf(w.size()), wf_scalar(w.size());
      infer::dequantize_rows(m, 0, rows, wf.data());
      infer::set_kernel_isa("scalar");
      infer::dequantize_rows(m, 1, rows - 1, wf_scalar.data() + cols);
      infer::set_kernel_isa(best);
      for (int64_t i = cols; i < rows * cols; ++i)
        ASSERT_EQ(wf[i], wf_scalar[i]) << best << " " << infer::wtype_name(type) << " cols " << cols << " value " << i;
      for (int64_t r = 0; r < rows && type != infer::WType::Q8_0; ++r) {
        double s = 0;
        for (int64_t i = 0; i < cols; ++i) s += static_cast<double>(wf[r * cols + i]) * x[i];
        EXPECT_NEAR(ys[0][r], s, 1e-4) << infer::wtype_name(type);
      }
    }
  }
}

// The vector bf16 split of x rounds as formats::float_to_bf16 does, ties and tails included.
TEST(InferKernels, VectorBf16SplitEqualsScalar) {
  if (infer::kernel_isa() != "avx512" || !__builtin_cpu_supports("avx512bf16")) GTEST_SKIP() << "no AVX512-BF16";
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.0f, 10.0f);
  std::vector<float> x(77);
  for (auto& v : x) v = nd(rng);
  x[0] = 1.0f + 1.0f / 256;  // a tie between two bf16 values: rounds to even
  x[1] = -0.0f;
  std::vector<uint16_t> hi(x.size()), lo(x.size());
  infer::detail::split_bf16_avx512(x.data(), static_cast<int64_t>(x.size()), hi.data(), lo.data());
  for (std::size_t i = 0; i < x.size(); ++i) {
    const uint16_t h = formats::float_to_bf16(x[i]);
    ASSERT_EQ(hi[i], h) << i;
    ASSERT_EQ(lo[i], formats::float_to_bf16(x[i] - formats::bf16_to_float(h))) << i;
  }
}

// Matrices multiplied together (one conversion of x, one dispatch) give what each gives alone.
TEST(InferKernels, MatvecManyEqualsOneByOne) {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int64_t cols = 256;
  const int64_t rows[] = {200, 72, 33};
  std::vector<float> x(cols);
  for (auto& v : x) v = nd(rng);
  for (auto type : {infer::WType::F32, infer::WType::BF16, infer::WType::Q8_0}) {
    std::vector<std::vector<float>> w(3);
    std::vector<std::unique_ptr<TestMatrix>> tm;
    std::vector<infer::WMat> m;
    for (int i = 0; i < 3; ++i) {
      w[i].resize(rows[i] * cols);
      for (auto& v : w[i]) v = nd(rng);
      tm.push_back(std::make_unique<TestMatrix>(w[i], rows[i], cols, type));
      m.push_back(tm.back()->m);
    }
    std::vector<std::vector<float>> alone(3), together(3);
    for (int i = 0; i < 3; ++i) {
      alone[i].resize(rows[i]);
      together[i].resize(rows[i], -1.0f);
      infer::matvec(m[i], x.data(), alone[i].data(), 2);
    }
    const infer::MatvecOut outs[] = {{&m[0], together[0].data()}, {&m[1], together[1].data()}, {&m[2], together[2].data()}};
    infer::matvec_many(outs, 3, x.data(), 2);
    for (int i = 0; i < 3; ++i)
      for (int64_t r = 0; r < rows[i]; ++r) ASSERT_EQ(together[i][r], alone[i][r]) << infer::wtype_name(type) << " " << i << " " << r;
  }
  infer::WMat a, b;
  a.type = b.type = infer::WType::F32;
  a.rows = b.rows = 1;
  a.cols = 32;
  b.cols = 64;
  std::vector<float> y(2);
  const infer::MatvecOut bad[] = {{&a, y.data()}, {&b, y.data() + 1}};
  EXPECT_THROW(infer::matvec_many(bad, 2, x.data(), 1), Error);
}

// Several tokens through matmul_tokens: for each token exactly matvec's numbers (same sums in the
// same order), on every ISA, for every type, token counts around the kernel's groups of 4, row
// counts around its groups of 4 rows, and rows so long (40000) that the tokens go in blocks of 4.
TEST(InferKernels, MatmulTokensEqualsMatvecPerToken) {
  const std::string best(infer::kernel_isa());
  const std::vector<std::string> isas = isas_up_to(best);
  std::mt19937 rng(9);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (const auto& [rows, cols] : std::vector<std::pair<int64_t, int64_t>>{{37, 96}, {64, 800}, {6, 77}, {301, 256}, {5, 40000}}) {
    std::vector<float> w(rows * cols), x(9 * cols);
    for (auto& v : w) v = nd(rng);
    for (auto& v : x) v = nd(rng);
    for (auto type : {infer::WType::F32, infer::WType::BF16, infer::WType::F16, infer::WType::Q8_0}) {
      if (type == infer::WType::Q8_0 && cols % 32) continue;
      const TestMatrix tm(w, rows, cols, type);
      const infer::WMat& m = tm.m;
      for (const auto& isa : isas) {
        infer::set_kernel_isa(isa);
        for (int64_t n : {1, 2, 3, 4, 5, 8, 9}) {
          std::vector<float> y(n * rows, -7.0f), one(rows);
          infer::matmul_tokens(m, x.data(), n, y.data(), 2);
          for (int64_t t = 0; t < n; ++t) {
            infer::matvec(m, x.data() + t * cols, one.data(), 2);
            for (int64_t r = 0; r < rows; ++r)
              ASSERT_EQ(y[t * rows + r], one[r]) << isa << " " << infer::wtype_name(type) << " " << rows << "x" << cols
                                                 << " n " << n << " token " << t << " row " << r;
          }
        }
      }
      infer::set_kernel_isa(best);
    }
  }
}

// bf16 weights and a prompt through oneDNN's bf16 matmul: each token's result within a few parts
// in a million of matvec's (x kept to ~16 bits either way; only the summation order differs), and
// the matrix-vector path is taken where the CPU lacks AVX512-BF16.
TEST(InferKernels, Bf16PromptMatmulAgreesWithMatvec) {
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (const auto& [rows, cols] : std::vector<std::pair<int64_t, int64_t>>{{37, 96}, {301, 256}, {64, 3000}}) {
    std::vector<float> w(rows * cols), x(70 * cols);
    for (auto& v : w) v = nd(rng);
    for (auto& v : x) v = nd(rng);
    const TestMatrix tm(w, rows, cols, infer::WType::BF16);
    const TestMatrix f32(w, rows, cols, infer::WType::F32);
    std::vector<uint16_t> xs;
    std::vector<float> part;
    for (int64_t n : {33, 70}) {
      std::vector<float> y(n * rows, -7.0f), one(rows);
      if (!infer::matmul_bf16_prompt(tm.m, x.data(), n, y.data(), xs, part))
        GTEST_SKIP() << "no AVX512-BF16 kernels here";
      EXPECT_FALSE(infer::matmul_bf16_prompt(f32.m, x.data(), n, y.data(), xs, part))
          << "only bf16 weights take this path";
      for (int64_t t = 0; t < n; ++t) {
        infer::matvec(tm.m, x.data() + t * cols, one.data(), 2);
        for (int64_t r = 0; r < rows; ++r) {
          double scale = 0;  // sum |w x|: the size of the rounding either way
          for (int64_t k = 0; k < cols; ++k) scale += std::abs(static_cast<double>(w[r * cols + k]) * x[t * cols + k]);
          ASSERT_NEAR(y[t * rows + r], one[r], 4e-6 * scale)
              << rows << "x" << cols << " n " << n << " token " << t << " row " << r;
        }
      }
    }
  }
  const std::string best(infer::kernel_isa());
  if (best == "avx512") {
    infer::set_kernel_isa("avx2");
    const TestMatrix tm(std::vector<float>(64, 1.0f), 2, 32, infer::WType::BF16);
    std::vector<float> x(40 * 32, 1.0f), y(40 * 2), part;
    std::vector<uint16_t> xs;
    EXPECT_FALSE(infer::matmul_bf16_prompt(tm.m, x.data(), 40, y.data(), xs, part));
    infer::set_kernel_isa(best);
  }
}

// The AVX-512 attention of one query over f32 and f16 caches: softmax(scale K q) V computed in
// double from the same (f16-rounded) keys and values, for head sizes 16-256 and lengths around
// the kernel's steps of 4, 16 and 2.
TEST(InferKernels, AttentionEqualsDoublePrecision) {
  if (infer::kernel_isa() != "avx512") GTEST_SKIP() << "no AVX-512 on this CPU";
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (int hd : {16, 64, 128, 256}) {
    for (int len : {1, 2, 3, 4, 5, 16, 17, 33, 200}) {
      for (bool f16 : {false, true}) {
        std::vector<float> q(hd), k(len * hd), v(len * hd), o(hd, -1.0f), sc(len);
        for (auto& x : q) x = nd(rng);
        for (auto& x : k) x = nd(rng);
        for (auto& x : v) x = nd(rng);
        std::vector<uint16_t> kh(k.size()), vh(v.size());
        if (f16)
          for (std::size_t i = 0; i < k.size(); ++i) {
            kh[i] = formats::float_to_f16(k[i]);
            vh[i] = formats::float_to_f16(v[i]);
            k[i] = formats::f16_to_float(kh[i]);
            v[i] = formats::f16_to_float(vh[i]);
          }
        const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
        infer::detail::attend_avx512(q.data(), f16 ? static_cast<const void*>(kh.data()) : k.data(),
                                     f16 ? static_cast<const void*>(vh.data()) : v.data(), f16, len, hd, scale, sc.data(), o.data());
        std::vector<double> s(len);
        double mx = -1e300, sum = 0;
        for (int j = 0; j < len; ++j) {
          for (int i = 0; i < hd; ++i) s[j] += static_cast<double>(q[i]) * k[j * hd + i];
          s[j] *= scale;
          mx = std::max(mx, s[j]);
        }
        for (int j = 0; j < len; ++j) sum += (s[j] = std::exp(s[j] - mx));
        for (int i = 0; i < hd; ++i) {
          double want = 0;
          for (int j = 0; j < len; ++j) want += s[j] / sum * v[j * hd + i];
          ASSERT_NEAR(o[i], want, 2e-5 * (1 + std::fabs(want))) << "hd " << hd << " len " << len << " f16 " << f16 << " dim " << i;
        }
      }
    }
  }
}

// The AVX-512 quantizer of x must give exactly the scalar quants and scales (the kernels are tested
// against the scalar path with the same x quants), ties at .5 included.
TEST(InferKernels, VectorQuantizerOfXEqualsScalar) {
  if (infer::kernel_isa() != "avx512") GTEST_SKIP() << "no AVX-512 on this CPU";
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  std::vector<float> x(32 * 40);
  for (auto& v : x) v = nd(rng);
  // Block 0: amax 127, so x/d is x itself: halves round away from zero. Block 1: all zero.
  for (int j = 0; j < 32; ++j) x[j] = (j % 2 ? -1.0f : 1.0f) * (0.5f + static_cast<float>(j));
  x[31] = 127.0f;
  std::fill(x.begin() + 32, x.begin() + 64, 0.0f);
  const int64_t n = static_cast<int64_t>(x.size());
  std::vector<int8_t> qs(n), qv(n);
  std::vector<float> ds(n / 32), dv(n / 32);
  infer::detail::quantize_x_scalar(x.data(), n, qs.data(), ds.data());
  infer::detail::quantize_x_avx512(x.data(), n, qv.data(), dv.data());
  EXPECT_EQ(qs[0], 1);   // 0.5 -> 1
  EXPECT_EQ(qs[1], -2);  // -1.5 -> -2
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(qv[i], qs[i]) << "value " << i << " = " << x[i];
  for (int64_t b = 0; b < n / 32; ++b) ASSERT_EQ(dv[b], ds[b]) << "block " << b;
}

}  // namespace
}  // namespace tsumugi
