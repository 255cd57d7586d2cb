// The model engine on the CPU backend: parameter counts of the real shapes, whole-model gradients
// against finite differences for both families, overfitting one batch, checkpoint weights round
// trip, and configuration errors.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "backend/backend.h"
#include "model/config.h"
#include "model/model.h"
#include "test_util.h"
#include "train/checkpoint.h"
#include "train/run_config.h"
#include "train/trainer.h"
#include "util/error.h"

using namespace tsumugi;
using model::Family;
using model::ModelConfig;

namespace {

// Independent closed forms (not the layout code) for the counts.
uint64_t gpt2_count(uint64_t L, uint64_t C, uint64_t V, uint64_t T) {
  return V * C + T * C + L * (12 * C * C + 13 * C) + 2 * C;
}
uint64_t llama_count(uint64_t L, uint64_t C, uint64_t F, uint64_t V, uint64_t H, uint64_t KV, bool tied) {
  uint64_t hd = C / H;
  return V * C * (tied ? 1 : 2) + C + L * (2 * C + C * H * hd * 2 + 2 * C * KV * hd + 3 * C * F);
}

TEST(ModelConfig, ParameterCountsOfKnownModels) {
  ModelConfig g = model::model_preset("gpt2-124m");
  g.vocab_size = 50257;  // the published GPT-2 small count uses the unpadded vocabulary
  EXPECT_EQ(g.num_parameters(), 124439808u);
  EXPECT_EQ(model::model_preset("gpt2-124m").num_parameters(), gpt2_count(12, 768, 50304, 1024));
  // LLM-jp-13B v1.0: 40 layers, 5120 hidden, vocab 50,570 padded to 50,688, context 2048.
  ModelConfig jp = model::model_preset("llm-jp-13b-v1.0");
  EXPECT_EQ(model::pad_vocab(50570), 50688);
  EXPECT_EQ(jp.num_parameters(), gpt2_count(40, 5120, 50688, 2048));
  EXPECT_EQ(jp.num_parameters(), 12855592960u);  // 12.86B, the "13B"
  // LLaMA-2-7B's published count checks the LLaMA layout: 6,738,415,616.
  ModelConfig l7;
  l7.family = Family::LLaMA;
  l7.n_layer = 32;
  l7.n_head = l7.n_kv_head = 32;
  l7.d_model = 4096;
  l7.d_ff = 11008;
  l7.vocab_size = 32000;
  l7.max_seq = 4096;
  l7.tie_embeddings = false;
  EXPECT_EQ(l7.num_parameters(), 6738415616u);
  ModelConfig l3 = model::model_preset("llm-jp-3-13b");
  EXPECT_EQ(l3.num_parameters(), llama_count(40, 5120, 13824, 99584, 40, 40, false));
  ModelConfig gqa = model::model_preset("llama-tiny");
  gqa.vocab_size = 256;
  EXPECT_EQ(gqa.num_parameters(), llama_count(4, 128, 352, 256, 4, 2, false));
}

TEST(ModelConfig, ImpossibleShapesAreClearErrors) {
  ModelConfig c = model::model_preset("gpt2-tiny");
  c.vocab_size = 256;
  c.n_head = 3;
  try {
    c.validate();
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("n_head (3) must divide model.d_model (128)"), std::string::npos) << e.what();
  }
  ModelConfig l = model::model_preset("llama-tiny");
  l.vocab_size = 256;
  l.n_kv_head = 3;
  EXPECT_THROW(l.validate(), Error);
  ModelConfig g = model::model_preset("gpt2-tiny");
  g.vocab_size = 256;
  g.n_kv_head = 2;
  EXPECT_THROW(g.validate(), Error);  // GQA is LLaMA only
}

ModelConfig tiny(Family f) {
  ModelConfig c;
  c.family = f;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_kv_head = f == Family::LLaMA ? 2 : 4;
  c.d_model = 16;
  c.d_ff = f == Family::LLaMA ? 24 : 64;
  c.vocab_size = 37;
  c.max_seq = 8;
  c.tie_embeddings = f == Family::GPT2;
  c.rope_theta = 100.0f;
  return c;
}

class WholeModel : public ::testing::TestWithParam<Family> {};

// dL/dθ from backward() against central differences of the loss, for a sample of every tensor.
TEST_P(WholeModel, GradientsMatchFiniteDifferences) {
  auto be = backend::make_cpu_backend(false);
  ModelConfig cfg = tiny(GetParam());
  model::Model m(cfg, *be);
  m.init_weights(7);
  // Larger weights than the init so every path carries signal at fp32 finite-difference scale.
  std::vector<float> w = m.get_parameters();
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 0.3f);
  for (const auto& p : m.layout())
    if (p.shape.size() == 2)
      for (uint64_t i = 0; i < p.size; ++i) w[p.offset + i] = nd(rng);
  m.set_parameters(w);
  const int B = 2, T = 6;
  std::vector<int32_t> tok(B * T), tgt(B * T);
  for (int i = 0; i < B * T; ++i) {
    tok[i] = (i * 7 + 3) % cfg.vocab_size;
    tgt[i] = i == 4 ? -1 : (i * 5 + 1) % cfg.vocab_size;  // one ignored target
  }
  const float scale = 1.0f / (B * T);
  m.zero_grad();
  m.forward_backward(tok.data(), tgt.data(), B, T, scale);
  std::vector<float> g = m.get_gradients();
  auto loss = [&] { return m.forward(tok.data(), tgt.data(), B, T) * scale; };
  for (const auto& p : m.layout()) {
    double max_err = 0;
    for (uint64_t k = 0; k < std::min<uint64_t>(p.size, 6); ++k) {
      uint64_t i = p.offset + (k * 7919) % p.size;
      float orig = w[i];
      const float eps = 5e-3f;
      w[i] = orig + eps;
      m.set_parameters(w);
      double lp = loss();
      w[i] = orig - eps;
      m.set_parameters(w);
      double lm = loss();
      w[i] = orig;
      m.set_parameters(w);
      double fd = (lp - lm) / (2 * eps);
      double err = std::fabs(fd - g[i]) / std::max(1e-2, std::fabs(fd) + std::fabs(g[i]));
      max_err = std::max(max_err, err);
    }
    EXPECT_LT(max_err, 3e-2) << p.name;
  }
}

TEST_P(WholeModel, OverfitsOneBatch) {
  auto be = backend::make_cpu_backend(false);
  ModelConfig cfg = tiny(GetParam());
  cfg.d_model = 32;
  model::Model m(cfg, *be);
  m.init_weights(1);
  const int B = 2, T = 8;
  std::vector<int32_t> tok(B * T), tgt(B * T);
  for (int i = 0; i < B * T; ++i) {
    tok[i] = (i * 11 + 2) % cfg.vocab_size;
    tgt[i] = (i * 13 + 5) % cfg.vocab_size;
  }
  const std::size_t n = m.num_parameters();
  backend::Buf mm = be->alloc(n, backend::Kind::OptState), vv = be->alloc(n, backend::Kind::OptState);
  double first = 0, last = 0;
  for (int step = 1; step <= 150; ++step) {
    m.zero_grad();
    double l = m.forward_backward(tok.data(), tgt.data(), B, T, 1.0f / (B * T)) / (B * T);
    if (step == 1) first = l;
    last = l;
    backend::AdamWParams ap{1e-2f, 0.9f, 0.95f, 1e-8f, 0.0f, step, 1.0f};
    be->adamw_update(m.master(), m.params(), m.grads(), mm, vv, n, ap);
  }
  be->free(mm);
  be->free(vv);
  EXPECT_NEAR(first, std::log(static_cast<double>(cfg.vocab_size)), 0.5);
  EXPECT_LT(last, 0.05) << "first loss " << first;
}

// The bf16 backend keeps bf16 copies of the weights between matmuls; after every way the weights
// change (an optimizer step, a new upload) a model must compute exactly what a fresh model with
// the same weights computes.
TEST_P(WholeModel, Bf16WeightCopiesFollowEveryUpdate) {
  auto be = backend::make_cpu_backend(true);
  ModelConfig cfg = tiny(GetParam());
  model::Model m(cfg, *be);
  m.init_weights(3);
  const int B = 2, T = 8;
  std::vector<int32_t> tok(B * T), tgt(B * T);
  for (int i = 0; i < B * T; ++i) {
    tok[i] = (i * 7 + 1) % cfg.vocab_size;
    tgt[i] = (i * 5 + 3) % cfg.vocab_size;
  }
  auto fresh_loss = [&](const std::vector<float>& w) {
    auto be2 = backend::make_cpu_backend(true);
    model::Model f(cfg, *be2);
    f.set_parameters(w);
    return f.forward(tok.data(), tgt.data(), B, T);
  };
  const std::size_t n = m.num_parameters();
  backend::Buf mm = be->alloc(n, backend::Kind::OptState), vv = be->alloc(n, backend::Kind::OptState);
  // Steps 1-3 update the whole vector at once; steps 4-6 one tensor at a time as the trainer does,
  // where the update writes the bf16 copy of a matrix it covers exactly (and invalidates the
  // copies it only overlaps, e.g. LLaMA's fused q/k/v block).
  for (int step = 1; step <= 6; ++step) {
    m.zero_grad();
    m.forward_backward(tok.data(), tgt.data(), B, T, 1.0f / (B * T));
    backend::AdamWParams ap{1e-2f, 0.9f, 0.95f, 1e-8f, 0.0f, step, 1.0f};
    if (step <= 3) {
      be->adamw_update(m.master(), m.params(), m.grads(), mm, vv, n, ap);
    } else {
      for (const auto& p : m.layout())
        be->adamw_update(be->view(m.master(), p.offset, p.size), be->view(m.params(), p.offset, p.size),
                         be->view(m.grads(), p.offset, p.size), be->view(mm, p.offset, p.size),
                         be->view(vv, p.offset, p.size), p.size, ap);
    }
    EXPECT_EQ(m.forward(tok.data(), tgt.data(), B, T), fresh_loss(m.get_parameters())) << "after step " << step;
  }
  be->free(mm);
  be->free(vv);
  std::vector<float> w = m.get_parameters();
  for (float& x : w) x *= 0.5f;
  m.set_parameters(w);
  EXPECT_EQ(m.forward(tok.data(), tgt.data(), B, T), fresh_loss(w)) << "after set_parameters";
}

INSTANTIATE_TEST_SUITE_P(Families, WholeModel, ::testing::Values(Family::GPT2, Family::LLaMA),
                         [](const auto& info) { return info.param == Family::GPT2 ? "GPT2" : "LLaMA"; });

TEST(Checkpoint, HfWeightsRoundTripWithConv1DTransposed) {
  tsumugi::testing::TempDir dir;
  for (Family f : {Family::GPT2, Family::LLaMA}) {
    ModelConfig cfg = tiny(f);
    std::vector<float> w(cfg.num_parameters());
    for (std::size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>(i % 1000) * 0.001f;
    std::string path = dir.file(cfg.family_name() + ".safetensors");
    train::save_hf_weights(path, cfg, w);
    EXPECT_EQ(train::load_hf_weights(path, cfg), w);
    auto hf = model::to_hf_config(cfg, 1, 2);
    ModelConfig back = model::from_hf_config(hf, "config.json");
    EXPECT_EQ(model::to_hf_config(back, 1, 2), hf);
  }
}

TEST(Schedule, WarmupThenCosineOrLinearDecay) {
  train::TrainOptions t;
  t.lr = 1.0;
  t.min_lr = 0.1;
  t.warmup_steps = 10;
  t.steps = 110;
  EXPECT_DOUBLE_EQ(train::learning_rate(t, 1), 0.1);
  EXPECT_DOUBLE_EQ(train::learning_rate(t, 10), 1.0);
  EXPECT_NEAR(train::learning_rate(t, 60), 0.55, 1e-12);  // halfway down the cosine
  EXPECT_NEAR(train::learning_rate(t, 110), 0.1, 1e-12);
  t.schedule = "linear";
  EXPECT_NEAR(train::learning_rate(t, 60), 0.55, 1e-12);
  t.schedule = "constant";
  EXPECT_DOUBLE_EQ(train::learning_rate(t, 100), 1.0);
}

TEST(RunConfig, UnknownKeysBadValuesAndOverrides) {
  tsumugi::testing::TempDir dir;
  std::string f = dir.file("run.toml");
  tsumugi::testing::write_bytes(f, "out_dir = 'x'\n[data]\ntrain = ['a']\n[model]\npreset = 'gpt2-tiny'\nvocab_size = 256\n[train]\nsteps = 5\nseq_len = 64\n");
  auto c = train::load_run_config(f, {"train.steps=7", "model.n_layer=3", "train.lr=0.01"});
  EXPECT_EQ(c.train.steps, 7);
  EXPECT_EQ(c.model.n_layer, 3);
  EXPECT_EQ(c.model.d_model, 128);
  EXPECT_DOUBLE_EQ(c.train.lr, 0.01);
  auto expect_error = [&](const std::string& text, const std::vector<std::string>& sets, const std::string& needle) {
    tsumugi::testing::write_bytes(f, text);
    try {
      train::load_run_config(f, sets);
      ADD_FAILURE() << "no error for " << text;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  const std::string ok = "[data]\ntrain = ['a']\n[model]\npreset = 'gpt2-tiny'\nvocab_size = 256\n";
  expect_error(ok + "[train]\nstepz = 3\n", {}, "unknown key 'train.stepz'");
  expect_error(ok, {"steps=3"}, "did you mean 'train.steps'");
  expect_error(ok, {"train.steps=many"}, "train.steps must be int");
  expect_error(ok + "[train]\nsteps = 'ten'\n", {}, "train.steps must be int");
  expect_error(ok, {"model.n_head=5"}, "n_head (5) must divide model.d_model (128)");
  expect_error(ok, {"train.seq_len=4096"}, "exceeds model.max_seq");
  expect_error(ok, {"model.preset=gpt5"}, "unknown model preset 'gpt5'");
  expect_error("[model]\npreset='gpt2-tiny'\n", {}, "data.train is required");
  expect_error(ok + "[train\n", {}, "invalid TOML");
}

}  // namespace
