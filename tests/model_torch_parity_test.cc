// Whole-model parity with a PyTorch reference (tests/model/torch_ref.py, run with Debian's
// python3-torch in float64): logits, loss and every parameter gradient of small GPT-2 and LLaMA
// (grouped-query) models loaded from the same safetensors, and 10 AdamW steps with clipping.
// Tolerance: max |ours - torch| / max |torch| <= 1e-4 per tensor (fp32 against fp64).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <random>

#include "backend/backend.h"
#include "formats/safetensors.h"
#include "model/config.h"
#include "model/model.h"
#include "test_util.h"
#include "train/checkpoint.h"
#include "util/io.h"

using namespace tsumugi;
using model::Family;
using model::ModelConfig;

namespace {

const std::string kPython = "/usr/bin/python3";
const std::string kRef = std::string(TSUMUGI_SOURCE_DIR) + "/tests/model/torch_ref.py";

bool have_torch() { return tsumugi::testing::python_has(kPython, "torch numpy"); }

void write_npy_int32(const std::string& path, const std::vector<int32_t>& v, int rows, int cols) {
  std::string dict = "{'descr': '<i4', 'fortran_order': False, 'shape': (" + std::to_string(rows) + ", " +
                     std::to_string(cols) + "), }";
  std::size_t total = 10 + dict.size() + 1;
  dict += std::string((64 - total % 64) % 64, ' ') + "\n";
  std::string out = "\x93NUMPY\x01";
  out.push_back('\0');
  uint16_t len = static_cast<uint16_t>(dict.size());
  out.append(reinterpret_cast<const char*>(&len), 2);
  out += dict;
  out.append(reinterpret_cast<const char*>(v.data()), v.size() * 4);
  tsumugi::testing::write_bytes(path, out);
}

double rel_err(const std::vector<float>& ours, const std::vector<float>& ref) {
  double diff = 0, scale = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    diff = std::max(diff, std::fabs(static_cast<double>(ours[i]) - ref[i]));
    scale = std::max(scale, std::fabs(static_cast<double>(ref[i])));
  }
  return diff / std::max(scale, 1e-30);
}

ModelConfig small(Family f) {
  ModelConfig c;
  c.family = f;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_kv_head = f == Family::LLaMA ? 2 : 4;
  c.d_model = 32;
  c.d_ff = f == Family::LLaMA ? 48 : 128;
  c.vocab_size = 64;
  c.max_seq = 16;
  c.tie_embeddings = f == Family::GPT2;
  c.rope_theta = 10000.0f;
  c.norm_eps = 1e-5f;
  return c;
}

// Hugging Face name -> tsumugi-orientation values of a gradient/parameter from the oracle's file.
std::vector<float> ours_orientation(const formats::SafetensorsFile& f, const std::string& name,
                                    const model::ParamTensor& p) {
  std::vector<float> v = f.to_float(name);
  if (!p.hf_transposed) return v;
  std::vector<float> t(v.size());
  const int64_t rows = p.shape[0], cols = p.shape[1];
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) t[r * cols + c] = v[c * rows + r];
  return t;
}

class TorchParity : public ::testing::TestWithParam<Family> {
 protected:
  void SetUp() override {
    if (!have_torch()) GTEST_SKIP() << "Debian python3-torch is not installed (the PyTorch oracle)";
    cfg_ = small(GetParam());
    be_ = backend::make_cpu_backend(false);
    model_ = std::make_unique<model::Model>(cfg_, *be_);
    model_->init_weights(42);
    // Larger than the init so every path carries signal.
    std::vector<float> w = model_->get_parameters();
    std::mt19937 rng(9);
    std::normal_distribution<float> nd(0.0f, 0.1f);
    for (const auto& p : model_->layout())
      for (uint64_t i = 0; i < p.size; ++i) w[p.offset + i] += nd(rng);
    model_->set_parameters(w);
    weights_ = w;
    ckpt_ = dir_.file("model");
    std::filesystem::create_directories(ckpt_);
    train::save_hf_weights(ckpt_ + "/model.safetensors", cfg_, w);
    write_file_atomic(ckpt_ + "/config.json", model::to_hf_config(cfg_, 1, 2).dump(2));
    std::mt19937 trng(5);
    tokens_.resize(B * (T + 1));
    for (auto& t : tokens_) t = static_cast<int32_t>(trng() % cfg_.vocab_size);
    write_npy_int32(dir_.file("tokens.npy"), tokens_, B, T + 1);
    for (int b = 0; b < B; ++b)
      for (int t = 0; t < T; ++t) {
        in_.push_back(tokens_[b * (T + 1) + t]);
        tg_.push_back(tokens_[b * (T + 1) + t + 1]);
      }
  }
  void oracle(const std::string& extra) {
    std::string out;
    int st = tsumugi::testing::run_command(kPython + " " + kRef + " --model " + ckpt_ + " --tokens " +
                                               dir_.file("tokens.npy") + " --out " + dir_.file("ref.safetensors") +
                                               " " + extra + " 2>&1",
                                           out);
    ASSERT_EQ(st, 0) << out;
  }
  static constexpr int B = 3, T = 12;
  ModelConfig cfg_;
  std::unique_ptr<backend::Backend> be_;
  std::unique_ptr<model::Model> model_;
  std::vector<float> weights_;
  std::vector<int32_t> tokens_, in_, tg_;
  tsumugi::testing::TempDir dir_;
  std::string ckpt_;
};

TEST_P(TorchParity, LogitsLossAndAllGradients) {
  oracle("--dtype float64");
  formats::SafetensorsFile ref(dir_.file("ref.safetensors"));
  model_->forward(in_.data(), tg_.data(), B, T);
  std::vector<float> logits = model_->all_logits();
  double e = rel_err(logits, ref.to_float("logits"));
  EXPECT_LE(e, 1e-4) << "logits";
  model_->zero_grad();
  double loss = model_->forward_backward(in_.data(), tg_.data(), B, T, 1.0f / (B * T)) / (B * T);
  double ref_loss = ref.to_float("loss")[0];
  EXPECT_LE(std::fabs(loss - ref_loss) / ref_loss, 1e-5) << loss << " vs " << ref_loss;
  std::vector<float> g = model_->get_gradients();
  double worst = 0;
  for (const auto& p : model_->layout()) {
    std::vector<float> rg = ours_orientation(ref, "grad." + p.name, p);
    std::vector<float> mine(g.begin() + p.offset, g.begin() + p.offset + p.size);
    double err = rel_err(mine, rg);
    worst = std::max(worst, err);
    EXPECT_LE(err, 1e-4) << p.name;
  }
  ::testing::Test::RecordProperty("worst_gradient_rel_err", std::to_string(worst));
  std::printf("%s: logits rel err %.2e, loss %.6f vs %.6f, worst gradient rel err %.2e\n",
              cfg_.family_name().c_str(), e, loss, ref_loss, worst);
}

TEST_P(TorchParity, TenAdamWStepsWithClipping) {
  const int K = 10;
  const float lr = 1e-2f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f, clip = 0.5f;
  oracle("--dtype float64 --adamw-steps 10 --lr 0.01 --beta1 0.9 --beta2 0.95 --eps 1e-8 --weight-decay 0.1 --grad-clip 0.5");
  formats::SafetensorsFile ref(dir_.file("ref.safetensors"));
  std::vector<float> ref_losses = ref.to_float("losses"), ref_norms = ref.to_float("grad_norms");
  const std::size_t n = model_->num_parameters();
  backend::Buf m = be_->alloc(n, backend::Kind::OptState), v = be_->alloc(n, backend::Kind::OptState);
  for (int step = 1; step <= K; ++step) {
    model_->zero_grad();
    double loss = model_->forward_backward(in_.data(), tg_.data(), B, T, 1.0f / (B * T)) / (B * T);
    double norm = std::sqrt(be_->sum_squares(model_->grads(), n));
    EXPECT_NEAR(loss, ref_losses[step - 1], 1e-4 * ref_losses[step - 1]) << "step " << step;
    EXPECT_NEAR(norm, ref_norms[step - 1], 1e-4 * ref_norms[step - 1]) << "step " << step;
    float scale = norm > clip ? static_cast<float>(clip / (norm + 1e-6)) : 1.0f;
    for (const auto& p : model_->layout()) {
      backend::AdamWParams ap{lr, b1, b2, eps, p.decay ? wd : 0.0f, step, scale};
      be_->adamw_update(be_->view(model_->master(), p.offset, p.size), be_->view(model_->params(), p.offset, p.size),
                        be_->view(model_->grads(), p.offset, p.size), be_->view(m, p.offset, p.size),
                        be_->view(v, p.offset, p.size), p.size, ap);
    }
  }
  be_->free(m);
  be_->free(v);
  std::vector<float> w = model_->get_parameters();
  double worst = 0;
  for (const auto& p : model_->layout()) {
    std::vector<float> rw = ours_orientation(ref, p.name, p);
    std::vector<float> mine(w.begin() + p.offset, w.begin() + p.offset + p.size);
    if (p.name.find("c_attn.bias") != std::string::npos) {
      // The key bias shifts every score of a query by the same amount, which softmax ignores: its
      // true gradient is 0, and Adam's m/sqrt(v) turns whatever rounding noise each side has into
      // full-size steps. Compare the query and value biases only.
      const int C = cfg_.d_model;
      std::fill(mine.begin() + C, mine.begin() + 2 * C, 0.0f);
      std::fill(rw.begin() + C, rw.begin() + 2 * C, 0.0f);
    }
    double err = rel_err(mine, rw);
    worst = std::max(worst, err);
    EXPECT_LE(err, 1e-4) << p.name;
  }
  std::printf("%s: 10 AdamW steps, worst parameter rel err %.2e\n", cfg_.family_name().c_str(), worst);
}

INSTANTIATE_TEST_SUITE_P(Families, TorchParity, ::testing::Values(Family::GPT2, Family::LLaMA),
                         [](const auto& info) { return info.param == Family::GPT2 ? "GPT2" : "LLaMA"; });

}  // namespace
