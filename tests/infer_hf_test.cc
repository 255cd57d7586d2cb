// Logits of the fast engine against Hugging Face transformers (CPU, float32) for checkpoints that
// transformers wrote (single file and sharded, f32 and bf16) and checkpoints tsumugi wrote; LoRA
// adapters against peft; q8_0 blocks against gguf-py.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <random>

#include "formats/safetensors.h"
#include "infer/engine.h"
#include "infer/fixtures.h"
#include "infer/kernels.h"
#include "util/io.h"

namespace tsumugi {
namespace {

using testing::TempDir;
using testing::write_bytes;

const std::string kIds = "5 17 300 2 99 99 64 1 250 383 7 42";

struct HfModels {
  TempDir dir;
  bool ok = false;
  // HF-written: name -> dir
  std::vector<std::string> hf = {"gpt2_f32", "gpt2_bf16_sharded", "llama_f32_sharded", "llama_bf16"};
  HfModels() {
    testing::write_checkpoint(dir.file("ts_gpt2"), testing::tiny_gpt2(), testing::random_weights(testing::tiny_gpt2(), 5));
    testing::write_checkpoint(dir.file("ts_llama"), testing::tiny_llama(), testing::random_weights(testing::tiny_llama(), 6));
    std::mt19937 rng(9);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> x(32 * 40);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = nd(rng) * (1 + (i / 32) % 5);
    for (int j = 0; j < 32; ++j) x[32 + j] = 0.0f;                 // an all-zero block
    for (int j = 0; j < 32; ++j) x[64 + j] = (j - 16) * 127.0f / 16;  // values on .5 boundaries after scaling
    write_bytes(dir.file("q8_in.f32"), std::string(reinterpret_cast<const char*>(x.data()), 4 * x.size()));
    nlohmann::json jobs = nlohmann::json::array();
    auto save = [&](const std::string& name, const char* family, const char* dtype, const char* shard) {
      std::vector<std::string> a = {"hf-save", "--family", family, "--dtype", dtype, "--out", dir.file(name), "--ids", kIds};
      if (*shard) a.insert(a.end(), {"--shard", shard});
      jobs.push_back(a);
    };
    save("gpt2_f32", "gpt2", "float32", "");
    save("gpt2_bf16_sharded", "gpt2", "bfloat16", "30KB");
    save("llama_f32_sharded", "llama", "float32", "40KB");
    save("llama_bf16", "llama", "bfloat16", "");
    for (const char* m : {"ts_gpt2", "ts_llama"})
      jobs.push_back({"hf-logits", "--dir", dir.file(m), "--ids", kIds, "--out", dir.file(std::string(m) + "/expected_logits.json")});
    for (const char* m : {"gpt2_f32", "llama_f32_sharded"})
      jobs.push_back({"peft", "--base", dir.file(m), "--out", dir.file(std::string(m) + "_lora"), "--ids", kIds,
                      "--logits-out", dir.file(std::string(m) + "_lora.json")});
    jobs.push_back({"q8", "--in", dir.file("q8_in.f32"), "--out", dir.file("q8_out.bin")});
    write_bytes(dir.file("jobs.json"), jobs.dump());
    testing::run_oracle("batch " + dir.file("jobs.json"));
    ok = std::filesystem::exists(dir.file("q8_out.bin"));
  }
};

HfModels& hf() {
  static HfModels m;
  return m;
}

struct Expected {
  std::vector<int32_t> ids;
  std::vector<std::vector<float>> logits;
};

Expected read_expected(const std::string& file) {
  const auto j = nlohmann::json::parse(read_file(file));
  return {j["ids"].get<std::vector<int32_t>>(), j["logits"].get<std::vector<std::vector<float>>>()};
}

// Every position's logits, token by token (KV cache) and the whole sequence at once (prompt path).
void expect_logits_match(infer::Engine& e, const Expected& x, double tol, const std::string& what) {
  auto dec = e.new_decoder();
  std::vector<float> lg(e.config().vocab_size);
  for (std::size_t t = 0; t < x.ids.size(); ++t) {
    dec->append(&x.ids[t], 1, lg.data());
    double worst = 0, scale = 1;
    for (std::size_t v = 0; v < lg.size(); ++v) {
      worst = std::max(worst, std::fabs(static_cast<double>(lg[v]) - x.logits[t][v]));
      scale = std::max(scale, std::fabs(static_cast<double>(x.logits[t][v])));
    }
    EXPECT_LT(worst, tol * scale) << what << " position " << t;
  }
  auto whole = e.new_decoder();
  whole->append(x.ids.data(), static_cast<int>(x.ids.size()), lg.data());
  double worst = 0;
  for (std::size_t v = 0; v < lg.size(); ++v)
    worst = std::max(worst, std::fabs(static_cast<double>(lg[v]) - x.logits.back()[v]));
  EXPECT_LT(worst, tol * 10) << what << " (whole prompt)";
}

class InferHf : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(hf().ok) << "the Python oracle did not run (see the failure above)"; }
};

// fp32 arithmetic in a different order than PyTorch's: 1e-4 of the largest logit.
constexpr double kF32Tol = 1e-4;

TEST_F(InferHf, TransformersWrittenCheckpointsMatchTransformersLogits) {
  for (const auto& name : hf().hf) {
    // transformers keeps keys and values in f32 (bf16 weights upcast); so does this comparison (the
    // default for bf16 weights would be an f16 cache, tested against the reference elsewhere).
    infer::LoadOptions o;
    o.kv_cache = "f32";
    auto e = infer::Engine::load(hf().dir.file(name), o);
    EXPECT_EQ(e->weights_dtype(), name.find("bf16") != std::string::npos ? "bf16" : "f32") << name;
    expect_logits_match(*e, read_expected(hf().dir.file(name + "/expected_logits.json")), kF32Tol, name);
  }
}

TEST_F(InferHf, TsumugiWrittenCheckpointsMatchTransformersLogits) {
  for (const char* name : {"ts_gpt2", "ts_llama"}) {
    auto e = infer::Engine::load(hf().dir.file(name));
    expect_logits_match(*e, read_expected(hf().dir.file(std::string(name) + "/expected_logits.json")), kF32Tol, name);
  }
}

TEST_F(InferHf, PeftLoraAdapterMatchesPeftLogits) {
  for (const char* name : {"gpt2_f32", "llama_f32_sharded"}) {
    infer::LoadOptions o;
    o.adapter = hf().dir.file(std::string(name) + "_lora");
    auto e = infer::Engine::load(hf().dir.file(name), o);
    const Expected with = read_expected(hf().dir.file(std::string(name) + "_lora.json"));
    expect_logits_match(*e, with, kF32Tol, std::string(name) + " + LoRA");
    // And the adapter did change something.
    const Expected without = read_expected(hf().dir.file(std::string(name) + "/expected_logits.json"));
    double d = 0;
    for (std::size_t v = 0; v < with.logits[3].size(); ++v) d = std::max<double>(d, std::fabs(with.logits[3][v] - without.logits[3][v]));
    EXPECT_GT(d, 1e-2) << name;
  }
}

TEST_F(InferHf, Q8_0BlocksEqualGgufPy) {
  const std::string in = read_file(hf().dir.file("q8_in.f32"));
  const std::string want = read_file(hf().dir.file("q8_out.bin"));
  const int64_t n = static_cast<int64_t>(in.size() / 4);
  std::vector<int8_t> q(n);
  std::vector<uint16_t> d(n / 32);
  infer::quantize_q8_0(reinterpret_cast<const float*>(in.data()), n, q.data(), d.data());
  // GGML's block: fp16 d, then 32 int8.
  std::string got;
  for (int64_t b = 0; b < n / 32; ++b) {
    got.append(reinterpret_cast<const char*>(&d[b]), 2);
    got.append(reinterpret_cast<const char*>(q.data() + 32 * b), 32);
  }
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], want[i]) << "byte " << i << " (block " << i / 34 << ")";
}

}  // namespace
}  // namespace tsumugi
