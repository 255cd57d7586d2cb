// LoRA in the model engine: adapter gradients (dA, dB, and the gradient that flows through each
// adapter into its input) against central finite differences of the loss, with dropout off and on;
// merging equals running base + adapter; the base stays frozen; PEFT files round-trip.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <random>

#include "backend/backend.h"
#include "formats/safetensors.h"
#include "model/config.h"
#include "model/lora.h"
#include "model/model.h"
#include "test_util.h"
#include "util/error.h"

using namespace tsumugi;
using model::Family;
using model::LoraConfig;
using model::ModelConfig;

namespace {

ModelConfig small(Family f) { return tsumugi::testing::tiny_model(f, 2); }

struct Fixture {
  static constexpr int B = 2, T = 6;
  ModelConfig cfg;
  LoraConfig lora;
  std::unique_ptr<backend::Backend> be = backend::make_cpu_backend(false);
  std::unique_ptr<model::Model> m;
  std::vector<int32_t> in, tg;

  Fixture(Family f, float dropout) {
    cfg = small(f);
    lora.r = 3;
    lora.alpha = 6.0f;
    lora.dropout = dropout;
    m = std::make_unique<model::Model>(cfg, *be, lora);
    m->init_weights(7);
    std::vector<float> w = m->get_parameters();
    std::mt19937 rng(3);
    std::normal_distribution<float> nd(0.0f, 0.1f);
    for (auto& x : w) x += nd(rng);
    m->set_parameters(w);
    // B non-zero (a fresh adapter has B = 0, which would hide dA and the adapter's dx).
    std::vector<float> a = m->get_lora();
    std::normal_distribution<float> nb(0.0f, 0.3f);
    for (auto& x : a) x += nb(rng);
    m->set_lora(a);
    std::mt19937 trng(11);
    for (int i = 0; i < B * T; ++i) {
      in.push_back(static_cast<int32_t>(trng() % cfg.vocab_size));
      // a third of the targets ignored, as response-only SFT batches have
      tg.push_back(i % 3 == 0 ? -1 : static_cast<int32_t>(trng() % cfg.vocab_size));
    }
  }
  // The loss a training pass sees (dropout active when configured): a tiny nonzero loss scale
  // turns on the training path; the gradients it accumulates are discarded.
  double train_loss() {
    m->zero_grad();
    return m->forward_backward(in.data(), tg.data(), B, T, 1e-30f);
  }
};

void check_gradients(Family f, float dropout) {
  Fixture fx(f, dropout);
  fx.m->set_dropout_seed(99, 0);
  fx.m->zero_grad();
  fx.m->forward_backward(fx.in.data(), fx.tg.data(), Fixture::B, Fixture::T, 1.0f);
  const std::vector<float> g = fx.m->get_lora_gradients();
  std::vector<float> p = fx.m->get_lora();
  double gmax = 0;
  for (float x : g) gmax = std::max(gmax, std::fabs(static_cast<double>(x)));
  ASSERT_GT(gmax, 1e-3);
  const double eps = 2e-3;
  int checked = 0;
  std::mt19937 rng(5);
  // Every adapter tensor (A and B of each module in each layer), several entries each. Layer 0's
  // dA depends on the gradient that reaches its input through layer 1's adapters, so this also
  // checks each adapter's contribution to dx.
  for (const auto& t : fx.m->trainable_layout()) {
    for (int k = 0; k < 3; ++k) {
      const std::size_t i = t.offset + rng() % t.size;
      const float orig = p[i];
      p[i] = orig + static_cast<float>(eps);
      fx.m->set_lora(p);
      const double lp = fx.train_loss();
      p[i] = orig - static_cast<float>(eps);
      fx.m->set_lora(p);
      const double lm = fx.train_loss();
      p[i] = orig;
      fx.m->set_lora(p);
      const double fd = (lp - lm) / (2 * eps);
      EXPECT_NEAR(g[i], fd, 2e-3 * gmax + 1e-2 * std::fabs(fd)) << t.name << " [" << i - t.offset << "]";
      ++checked;
    }
  }
  EXPECT_EQ(checked, static_cast<int>(fx.m->trainable_layout().size()) * 3);
}

}  // namespace

TEST(SftLora, Gpt2GradientsMatchFiniteDifferences) { check_gradients(Family::GPT2, 0.0f); }
TEST(SftLora, LlamaGradientsMatchFiniteDifferences) { check_gradients(Family::LLaMA, 0.0f); }
// With dropout the mask is a function of (seed, row, column), so the finite differences of the
// dropped-out loss must match the backward pass too.
TEST(SftLora, Gpt2GradientsWithDropoutMatchFiniteDifferences) { check_gradients(Family::GPT2, 0.3f); }
TEST(SftLora, LlamaGradientsWithDropoutMatchFiniteDifferences) { check_gradients(Family::LLaMA, 0.3f); }

TEST(SftLora, DropoutIsSeededAndOffInEvaluation) {
  Fixture fx(Family::GPT2, 0.3f);
  fx.m->set_dropout_seed(1, 0);
  const double a = fx.train_loss();
  const double a2 = fx.train_loss();
  fx.m->set_dropout_seed(2, 0);
  const double b = fx.train_loss();
  EXPECT_EQ(a, a2);
  EXPECT_NE(a, b);
  // Evaluation (forward without a backward pass) never drops.
  const double e1 = fx.m->forward(fx.in.data(), fx.tg.data(), Fixture::B, Fixture::T);
  Fixture nodrop(Family::GPT2, 0.0f);
  const double e2 = nodrop.m->forward(nodrop.in.data(), nodrop.tg.data(), Fixture::B, Fixture::T);
  EXPECT_EQ(e1, e2);
}

TEST(SftLora, BaseIsFrozenAndFreshAdapterIsIdentity) {
  for (Family f : {Family::GPT2, Family::LLaMA}) {
    ModelConfig cfg = small(f);
    LoraConfig lora;
    lora.r = 4;
    auto be = backend::make_cpu_backend(false);
    model::Model base(cfg, *be), tuned(cfg, *be, lora);
    base.init_weights(1);
    tuned.init_weights(1);
    tuned.init_lora(2);
    EXPECT_FALSE(tuned.grads());  // no gradient buffer for the frozen base
    EXPECT_EQ(tuned.num_trainable(), model::lora_num_parameters(tuned.lora_modules(), 4));
    // default targets: every linear layer of every block
    EXPECT_EQ(tuned.lora_modules().size(), static_cast<std::size_t>(cfg.n_layer) * (f == Family::GPT2 ? 4 : 7));
    std::vector<int32_t> toks = {1, 5, 9, 3, 7, 2};
    base.forward(toks.data(), nullptr, 1, 6);
    tuned.forward(toks.data(), nullptr, 1, 6);
    EXPECT_EQ(base.all_logits(), tuned.all_logits());  // B = 0
    // A is Kaiming-uniform: within 1/sqrt(fan_in), not all zero
    std::vector<float> a = tuned.get_lora();
    const auto& m0 = tuned.lora_modules()[0];
    float amax = 0;
    for (int i = 0; i < 4 * m0.in; ++i) amax = std::max(amax, std::fabs(a[m0.a_offset + i]));
    EXPECT_GT(amax, 0.5f / std::sqrt(static_cast<float>(m0.in)));
    EXPECT_LE(amax, 1.0f / std::sqrt(static_cast<float>(m0.in)));
  }
}

TEST(SftLora, MergedLogitsEqualBasePlusAdapter) {
  for (Family f : {Family::GPT2, Family::LLaMA}) {
    Fixture fx(f, 0.05f);
    fx.m->forward(fx.in.data(), nullptr, Fixture::B, Fixture::T);
    const std::vector<float> with_adapter = fx.m->all_logits();
    std::vector<float> w = fx.m->get_parameters();
    model::merge_lora(fx.cfg, fx.lora, fx.m->get_lora(), w);
    model::Model merged(fx.cfg, *fx.be);
    merged.set_parameters(w);
    merged.forward(fx.in.data(), nullptr, Fixture::B, Fixture::T);
    const std::vector<float> m = merged.all_logits();
    double diff = 0, scale = 0;
    for (std::size_t i = 0; i < m.size(); ++i) {
      diff = std::max(diff, std::fabs(static_cast<double>(m[i]) - with_adapter[i]));
      scale = std::max(scale, std::fabs(static_cast<double>(with_adapter[i])));
    }
    EXPECT_LE(diff / scale, 1e-5) << fx.cfg.family_name();
  }
}

TEST(SftLora, TargetModulesSelectByPeftSuffixRule) {
  ModelConfig cfg = small(Family::GPT2);
  LoraConfig lora;
  lora.r = 2;
  lora.target_modules = {"attn.c_proj"};
  auto mods = model::lora_modules(cfg, lora);
  ASSERT_EQ(mods.size(), 2u);
  EXPECT_EQ(mods[0].module, "transformer.h.0.attn.c_proj");
  lora.target_modules = {"c_proj"};
  EXPECT_EQ(model::lora_modules(cfg, lora).size(), 4u);  // attn and mlp
  lora.target_modules = {"q_proj"};
  try {
    model::lora_modules(cfg, lora);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'q_proj' matches no linear layer"), std::string::npos) << e.what();
  }
}

TEST(SftLora, PeftFilesRoundTripWithPeftNames) {
  tsumugi::testing::TempDir dir;
  for (Family f : {Family::GPT2, Family::LLaMA}) {
    Fixture fx(f, 0.05f);
    const std::string out = dir.file(fx.cfg.family_name());
    model::save_peft_adapter(out, fx.cfg, fx.lora, fx.m->get_lora(), "base/dir");
    formats::SafetensorsFile st(out + "/adapter_model.safetensors");
    if (f == Family::GPT2) {
      const auto* a = st.find("base_model.model.transformer.h.0.attn.c_attn.lora_A.weight");
      const auto* b = st.find("base_model.model.transformer.h.0.attn.c_attn.lora_B.weight");
      ASSERT_TRUE(a && b);
      EXPECT_EQ(a->shape, (std::vector<int64_t>{3, 16}));
      EXPECT_EQ(b->shape, (std::vector<int64_t>{48, 3}));
    } else {
      const auto* a = st.find("base_model.model.model.layers.1.self_attn.k_proj.lora_A.weight");
      const auto* b = st.find("base_model.model.model.layers.1.self_attn.k_proj.lora_B.weight");
      ASSERT_TRUE(a && b);
      EXPECT_EQ(b->shape, (std::vector<int64_t>{8, 3}));  // 2 kv heads x head_dim 4
    }
    auto cfgj = nlohmann::json::parse(read_file(out + "/adapter_config.json"));
    EXPECT_EQ(cfgj["peft_type"], "LORA");
    EXPECT_EQ(cfgj["task_type"], "CAUSAL_LM");
    EXPECT_EQ(cfgj["fan_in_fan_out"], f == Family::GPT2);
    EXPECT_EQ(cfgj["r"], 3);
    model::LoadedAdapter back = model::load_peft_adapter(out, fx.cfg);
    EXPECT_EQ(back.weights, fx.m->get_lora());
    EXPECT_EQ(back.lora.r, 3);
    EXPECT_FLOAT_EQ(back.lora.alpha, 6.0f);
    EXPECT_EQ(back.base_model, "base/dir");
  }
}

TEST(SftLora, AdapterErrorsNameTheFile) {
  tsumugi::testing::TempDir dir;
  ModelConfig cfg = small(Family::GPT2);
  auto expect_error = [&](const std::string& path, const std::string& needle) {
    try {
      model::load_peft_adapter(path, cfg);
      FAIL() << "expected an error containing " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error(dir.file("nothing"), "no adapter_config.json");
  std::filesystem::create_directories(dir.file("a"));
  tsumugi::testing::write_bytes(dir.file("a/adapter_config.json"), R"({"peft_type": "LORA", "lora_alpha": 16})");
  tsumugi::testing::write_bytes(dir.file("a/adapter_model.safetensors"), "");
  expect_error(dir.file("a"), "a/adapter_config.json: missing field 'r'");
  // an adapter of another rank than its config says
  LoraConfig lora;
  lora.r = 2;
  auto be = backend::make_cpu_backend(false);
  model::Model m(cfg, *be, lora);
  m.init_lora(1);
  model::save_peft_adapter(dir.file("b"), cfg, lora, m.get_lora(), "x");
  tsumugi::testing::write_bytes(dir.file("b/adapter_config.json"),
                                R"({"peft_type": "LORA", "r": 4, "lora_alpha": 16, "target_modules": ["c_attn"]})");
  expect_error(dir.file("b"), "has shape [2, 16], r=4 on this model needs [4, 16]");
}
