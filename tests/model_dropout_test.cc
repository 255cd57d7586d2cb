// Hidden dropout and activation recomputation in the model engine: gradients with dropout against
// central finite differences of the dropped-out loss (the mask is a function of seed, row and
// column, so the loss is a smooth function of the weights for a fixed seed); dropout is seeded and
// off outside training passes; recomputation gives bit-identical losses and gradients with less
// activation memory; a run with both resumes bitwise.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "backend/backend.h"
#include "model/config.h"
#include "model/model.h"
#include "test_util.h"
#include "util/error.h"

using namespace tsumugi;
using model::Family;
using model::ModelConfig;

namespace {

ModelConfig small(Family f) { return tsumugi::testing::tiny_model(f, 3); }

struct Fixture {
  static constexpr int B = 2, T = 6;
  std::unique_ptr<backend::Backend> be = backend::make_cpu_backend(false);
  std::unique_ptr<model::Model> m;
  std::vector<int32_t> in, tg;

  Fixture(Family f, float dropout, bool recompute) {
    m = std::make_unique<model::Model>(small(f), *be);
    m->init_weights(7);
    m->set_hidden_dropout(dropout);
    m->set_recompute(recompute);
    m->set_dropout_seed(99, 40);
    std::mt19937 trng(11);
    for (int i = 0; i < B * T; ++i) {
      in.push_back(static_cast<int32_t>(trng() % 32));
      tg.push_back(static_cast<int32_t>(trng() % 32));
    }
  }
  // The loss a training pass sees: a tiny loss scale turns on the training path (and dropout).
  double train_loss() {
    m->zero_grad();
    return m->forward_backward(in.data(), tg.data(), B, T, 1e-30f);
  }
  std::vector<float> gradients(double* loss = nullptr) {
    m->zero_grad();
    const double l = m->forward_backward(in.data(), tg.data(), B, T, 1.0f);
    if (loss) *loss = l;
    return m->get_gradients();
  }
};

void check_gradients(Family f, bool recompute) {
  Fixture fx(f, 0.3f, recompute);
  const std::vector<float> g = fx.gradients();
  std::vector<float> p = fx.m->get_parameters();
  double gmax = 0;
  for (float x : g) gmax = std::max(gmax, std::fabs(static_cast<double>(x)));
  ASSERT_GT(gmax, 1e-3);
  const double eps = 2e-3;
  std::mt19937 rng(5);
  // Every tensor, several entries each: the embeddings see the embedding mask, the first layer's
  // weights see the gradient through every later layer's attention and MLP masks.
  for (const auto& t : fx.m->layout()) {
    for (int k = 0; k < 3; ++k) {
      const std::size_t i = t.offset + rng() % t.size;
      const float orig = p[i];
      p[i] = orig + static_cast<float>(eps);
      fx.m->set_parameters(p);
      const double lp = fx.train_loss();
      p[i] = orig - static_cast<float>(eps);
      fx.m->set_parameters(p);
      const double lm = fx.train_loss();
      p[i] = orig;
      fx.m->set_parameters(p);
      const double fd = (lp - lm) / (2 * eps);
      EXPECT_NEAR(g[i], fd, 2e-3 * gmax + 1e-2 * std::fabs(fd)) << t.name << " [" << i - t.offset << "]";
    }
  }
}

}  // namespace

TEST(ModelDropout, Gpt2GradientsMatchFiniteDifferences) { check_gradients(Family::GPT2, false); }
TEST(ModelDropout, LlamaGradientsMatchFiniteDifferences) { check_gradients(Family::LLaMA, false); }
TEST(ModelDropout, Gpt2GradientsWithRecomputationMatchFiniteDifferences) { check_gradients(Family::GPT2, true); }

TEST(ModelDropout, SeededAndOffOutsideTraining) {
  Fixture fx(Family::GPT2, 0.3f, false);
  const double a = fx.train_loss();
  EXPECT_EQ(a, fx.train_loss());
  fx.m->set_dropout_seed(100, 40);
  const double b = fx.train_loss();
  EXPECT_NE(a, b);
  // The rows are keyed by their global index: another first row is another mask.
  fx.m->set_dropout_seed(99, 41);
  EXPECT_NE(a, fx.train_loss());
  // Evaluation (forward without a backward pass) never drops, and p = 0 is the plain model.
  Fixture plain(Family::GPT2, 0.0f, false);
  EXPECT_EQ(fx.m->forward(fx.in.data(), fx.tg.data(), Fixture::B, Fixture::T),
            plain.m->forward(plain.in.data(), plain.tg.data(), Fixture::B, Fixture::T));
  EXPECT_NE(a, plain.train_loss());
  EXPECT_THROW(fx.m->set_hidden_dropout(1.0f), Error);
  EXPECT_THROW(fx.m->set_hidden_dropout(-0.1f), Error);
}

TEST(ModelRecompute, BitIdenticalGradientsWithLessActivationMemory) {
  for (Family f : {Family::GPT2, Family::LLaMA}) {
    for (float p : {0.0f, 0.2f}) {
      Fixture keep(f, p, false), recompute(f, p, true);
      double lk = 0, lr = 0;
      const std::vector<float> gk = keep.gradients(&lk), gr = recompute.gradients(&lr);
      EXPECT_EQ(lk, lr) << "family " << static_cast<int>(f) << " p " << p;
      ASSERT_EQ(gk.size(), gr.size());
      std::size_t differ = 0;
      for (std::size_t i = 0; i < gk.size(); ++i) differ += gk[i] != gr[i];
      EXPECT_EQ(differ, 0u) << "family " << static_cast<int>(f) << " p " << p;
      EXPECT_LT(recompute.m->activation_elements(), keep.m->activation_elements());
      // A second step through the same (shared) buffers is as exact.
      EXPECT_EQ(keep.gradients(), recompute.gradients());
    }
  }
  // Switching it on for a model that has run lays the buffers out again.
  Fixture fx(Family::GPT2, 0.0f, false);
  const std::vector<float> before = fx.gradients();
  const std::size_t full = fx.m->activation_elements();
  fx.m->set_recompute(true);
  EXPECT_EQ(fx.gradients(), before);
  EXPECT_LT(fx.m->activation_elements(), full);
}
