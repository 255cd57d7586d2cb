// The adapters tsumugi writes load with PyPI peft on top of the Hugging Face transformers model read
// from tsumugi's checkpoint, and give the same logits as tsumugi (GPT-2 and LLaMA, fp32), and the
// checkpoint merged by `tsumugi sft merge` gives the same logits as base + adapter.
// Oracle: tests/sft/peft_logits.py under /usr/bin/python3 (Debian torch, transformers, peft).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <cstring>
#include <random>

#include "backend/backend.h"
#include "model/lora.h"
#include "model/model.h"
#include "sft/run.h"
#include "test_util.h"
#include "train/checkpoint.h"
#include "util/io.h"

using namespace tsumugi;
using model::Family;
using tsumugi::testing::run_command;

namespace {

const std::string kPython = "/usr/bin/python3";
const std::string kOracle = std::string(TSUMUGI_SOURCE_DIR) + "/tests/sft/peft_logits.py";

model::ModelConfig small(Family f) {
  model::ModelConfig c;
  c.family = f;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_kv_head = f == Family::LLaMA ? 2 : 4;
  c.d_model = 32;
  c.d_ff = f == Family::LLaMA ? 48 : 128;
  c.vocab_size = 64;
  c.max_seq = 16;
  c.tie_embeddings = f == Family::GPT2;
  return c;
}

double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0, s = 0;
  for (std::size_t i = 0; i < b.size(); ++i) {
    d = std::max(d, std::fabs(static_cast<double>(a[i]) - b[i]));
    s = std::max(s, std::fabs(static_cast<double>(b[i])));
  }
  return d / std::max(s, 1e-30);
}

// One case: a model with an adapter, its files, tokens and tsumugi's logits.
struct Case {
  std::string name;
  model::ModelConfig cfg;
  std::string base, adapter, merged, tokens, logits;
  std::vector<int32_t> toks;
  std::vector<float> ours;
};

constexpr int kB = 2, kT = 12;

Case make_case(const tsumugi::testing::TempDir& dir, const std::string& name, Family f,
               const std::vector<std::string>& targets) {
  Case c;
  c.name = name;
  c.cfg = small(f);
  model::LoraConfig lora;
  lora.r = 4;
  lora.alpha = 8;
  lora.dropout = 0.1f;  // must not matter: eval mode on both sides
  lora.target_modules = targets;
  auto be = backend::make_cpu_backend(false);
  model::Model m(c.cfg, *be, lora);
  m.init_weights(3);
  std::vector<float> w = m.get_parameters();
  std::mt19937 rng(4);
  std::normal_distribution<float> nd(0.0f, 0.05f);
  for (auto& x : w) x += nd(rng);
  m.set_parameters(w);
  m.init_lora(5);
  std::vector<float> ad = m.get_lora();
  std::normal_distribution<float> nb(0.0f, 0.2f);  // B != 0, else the adapter is the identity
  for (const auto& p : m.trainable_layout())
    if (p.name.find("lora_B") != std::string::npos)
      for (uint64_t i = 0; i < p.size; ++i) ad[p.offset + i] = nb(rng);
  m.set_lora(ad);
  c.base = dir.file(name + "-base");
  c.adapter = dir.file(name + "-adapter");
  c.merged = dir.file(name + "-merged");
  c.tokens = dir.file(name + ".i32");
  c.logits = dir.file(name + ".f32");
  train::save_checkpoint(c.base, c.cfg, w, {}, {}, {}, "", 1, 2);
  model::save_peft_adapter(c.adapter, c.cfg, lora, ad, c.base);
  c.toks.resize(kB * kT);
  for (auto& t : c.toks) t = static_cast<int32_t>(rng() % c.cfg.vocab_size);
  tsumugi::testing::write_bytes(c.tokens, std::string(reinterpret_cast<const char*>(c.toks.data()), c.toks.size() * 4));
  m.forward(c.toks.data(), nullptr, kB, kT);
  c.ours = m.all_logits();
  return c;
}

class SftPeft : public ::testing::Test {
 protected:
  // All cases go through one interpreter: importing transformers and peft dominates the time.
  static void SetUpTestSuite() {
    dir_ = new tsumugi::testing::TempDir();
    cases_ = new std::vector<Case>{make_case(*dir_, "gpt2", Family::GPT2, {}),
                                   make_case(*dir_, "llama", Family::LLaMA, {}),
                                   make_case(*dir_, "llama-qv", Family::LLaMA, {"q_proj", "v_proj"})};
    if (!tsumugi::testing::python_has(kPython, "torch transformers peft")) {
      oracle_error_ = new std::string(
          "the peft oracle needs Debian's python3-torch plus transformers and peft for /usr/bin/python3: `make test` "
          "installs them (tests/requirements-torch.txt, tests/requirements-nodeps.txt)");
      return;
    }
    std::string cmd = kPython + " " + kOracle;
    for (std::size_t i = 0; i < cases_->size(); ++i) {
      const Case& c = (*cases_)[i];
      if (i == 0)
        cmd += " --model " + c.base + " --adapter " + c.adapter + " --tokens " + c.tokens + " --batch 2 --out " + c.logits;
      else
        cmd += " --case " + c.base + " " + c.adapter + " " + c.tokens + " 2 " + c.logits;
    }
    oracle_output_ = new std::string();
    if (run_command(cmd + " 2>&1", *oracle_output_) != 0) oracle_error_ = new std::string(*oracle_output_);
  }
  static void TearDownTestSuite() {
    delete cases_;
    delete oracle_output_;
    delete oracle_error_;
    delete dir_;
    oracle_error_ = nullptr;
  }
  void check(std::size_t i) {
    ASSERT_EQ(oracle_error_, nullptr) << *oracle_error_;
    const Case& c = (*cases_)[i];
    std::string raw = read_file(c.logits);
    std::vector<float> ref(raw.size() / 4);
    std::memcpy(ref.data(), raw.data(), raw.size());
    ASSERT_EQ(ref.size(), static_cast<std::size_t>(kB) * kT * c.cfg.vocab_size);
    const double e = rel_err(c.ours, ref);
    EXPECT_LE(e, 1e-4) << c.name << ": tsumugi base+adapter vs peft";
    // `tsumugi sft merge`'s checkpoint against the same oracle
    sft::merge_adapter(c.base, c.adapter, c.merged);
    train::LoadedCheckpoint mk = train::load_checkpoint(c.merged, false);
    auto be = backend::make_cpu_backend(false);
    model::Model mm(mk.config, *be);
    mm.set_parameters(mk.weights);
    mm.forward(c.toks.data(), nullptr, kB, kT);
    const double em = rel_err(mm.all_logits(), ref);
    EXPECT_LE(em, 1e-4) << c.name << ": merged checkpoint vs peft";
    std::printf("%s: logits rel err vs peft %.2e (adapter), %.2e (merged)\n", c.name.c_str(), e, em);
  }
  static tsumugi::testing::TempDir* dir_;
  static std::vector<Case>* cases_;
  static std::string* oracle_output_;
  static std::string* oracle_error_;
};
tsumugi::testing::TempDir* SftPeft::dir_ = nullptr;
std::vector<Case>* SftPeft::cases_ = nullptr;
std::string* SftPeft::oracle_output_ = nullptr;
std::string* SftPeft::oracle_error_ = nullptr;

}  // namespace

TEST_F(SftPeft, Gpt2AdapterLoadsInPeftWithSameLogits) { check(0); }
TEST_F(SftPeft, LlamaAdapterLoadsInPeftWithSameLogits) { check(1); }
// A subset of modules, selected by suffix (attention q and v only).
TEST_F(SftPeft, LlamaAttentionOnlyAdapterLoadsInPeft) { check(2); }
