// Engine::complete and token_logprobs on the fast engine: stop strings, streaming, seeds, sampler
// edge cases, token and context limits, vocabulary padding.
#include <gtest/gtest.h>

#include <cmath>

#include "infer/engine.h"
#include "infer/fixtures.h"
#include "util/error.h"

namespace tsumugi {
namespace {

using testing::TempDir;

struct TokModel {
  TempDir dir;
  std::string gpt2, llama;
  TokModel() {
    const std::string tok = testing::make_tokenizer(dir, 320);
    gpt2 = dir.file("gpt2");
    llama = dir.file("llama");
    // 384 embedding rows for a 320-piece tokenizer: the padding must never be sampled.
    testing::write_checkpoint(gpt2, testing::tiny_gpt2(384), testing::random_weights(testing::tiny_gpt2(384), 21), tok);
    testing::write_checkpoint(llama, testing::tiny_llama(384), testing::random_weights(testing::tiny_llama(384), 22), tok);
  }
};

TokModel& tm() {
  static TokModel m;
  return m;
}

infer::Engine& engine(bool llama = false) {
  static auto g = infer::Engine::load(tm().gpt2);
  static auto l = infer::Engine::load(tm().llama);
  return llama ? *l : *g;
}

std::vector<int32_t> prompt_of(const std::string& text) {
  std::vector<int32_t> ids;
  engine().tokenizer().encode(text, ids);
  return ids;
}

infer::Sampling greedy(int n) {
  infer::Sampling s;
  s.temperature = 0;
  s.max_tokens = n;
  s.ignore_eos = true;
  return s;
}

TEST(InferEngine, VocabularyLimitAndEos) {
  EXPECT_EQ(engine().vocab_limit(), 320);
  EXPECT_EQ(engine().config().vocab_size, 384);
  EXPECT_EQ(engine().eos_id(), engine().tokenizer().piece_to_id("<EOD>"));
  infer::Sampling s;
  s.temperature = 1.5f;
  s.max_tokens = 60;
  s.ignore_eos = true;
  for (uint64_t seed = 0; seed < 4; ++seed) {
    s.seed = seed;
    for (int32_t id : engine(seed % 2).complete(prompt_of("the cat"), s).tokens) EXPECT_LT(id, 320);
  }
}

TEST(InferEngine, StopStringCutsTheTextAndIsNeverStreamed) {
  const auto p = prompt_of("the dog ran");
  const infer::Completion free_run = engine().complete(p, greedy(40));
  ASSERT_GE(free_run.text.size(), 12u) << free_run.text;
  // A stop string taken from the middle of what greedy decoding writes anyway.
  const std::string stop = free_run.text.substr(free_run.text.size() / 2, 3);
  const std::size_t at = free_run.text.find(stop);
  infer::Sampling s = greedy(40);
  s.stop = {"never-appears", stop};
  std::string streamed;
  const infer::Completion c = engine().complete(p, s, [&](const std::string& d) {
    streamed += d;
    return true;
  });
  EXPECT_EQ(c.finish_reason, "stop");
  EXPECT_EQ(c.text, free_run.text.substr(0, at));
  EXPECT_EQ(streamed, c.text);
  EXPECT_EQ(streamed.find(stop), std::string::npos);
}

TEST(InferEngine, StreamedDeltasConcatenateToTheTextAndSeedsRepeat) {
  for (bool llama : {false, true}) {
    infer::Sampling s;
    s.temperature = 1.0f;
    s.top_p = 0.95f;
    s.max_tokens = 30;
    s.ignore_eos = true;
    s.seed = 77;
    std::string streamed;
    const auto p = prompt_of("hello world");
    const infer::Completion a = engine(llama).complete(p, s, [&](const std::string& d) {
      streamed += d;
      return true;
    });
    EXPECT_EQ(streamed, a.text);
    EXPECT_EQ(a.completion_tokens, 30);
    EXPECT_EQ(a.finish_reason, "length");
    const infer::Completion b = engine(llama).complete(p, s);
    EXPECT_EQ(a.tokens, b.tokens);
    s.seed = 78;
    EXPECT_NE(engine(llama).complete(p, s).tokens, a.tokens);
  }
}

TEST(InferEngine, TopK1AndMinP1AreGreedy) {
  const auto p = prompt_of("on the mat");
  const auto want = engine(true).complete(p, greedy(20)).tokens;
  infer::Sampling s = greedy(20);
  s.temperature = 1.0f;
  s.seed = 5;
  s.top_k = 1;
  EXPECT_EQ(engine(true).complete(p, s).tokens, want);
  s.top_k = 0;
  s.min_p = 1.0f;
  EXPECT_EQ(engine(true).complete(p, s).tokens, want);
}

TEST(InferEngine, TokenAndContextLimits) {
  infer::Engine& e = engine();
  EXPECT_EQ(e.complete(prompt_of("the"), greedy(7)).completion_tokens, 7);
  std::vector<int32_t> near_full(e.context_length() - 3, 10);
  const auto c = e.complete(near_full, greedy(50));
  EXPECT_EQ(c.completion_tokens, 3);
  EXPECT_EQ(c.finish_reason, "length");
  std::vector<int32_t> full(e.context_length(), 10);
  EXPECT_THROW(e.complete(full, greedy(1)), Error);
  EXPECT_THROW(e.complete({}, greedy(1)), Error);
}

TEST(InferEngine, TokenLogprobsEqualTheReferenceDecoders) {
  infer::LoadOptions ro;
  ro.decoder = "reference";
  for (const std::string& dir : {tm().gpt2, tm().llama}) {
    auto fast = infer::Engine::load(dir);
    auto ref = infer::Engine::load(dir, ro);
    const auto ids = prompt_of("the cat sat on the mat and the dog ran far away");
    const auto a = fast->token_logprobs(ids);
    const auto b = ref->token_logprobs(ids);
    ASSERT_EQ(a.size(), ids.size() - 1);
    ASSERT_EQ(a.size(), b.size());
    for (std::size_t i = 0; i < a.size(); ++i) {
      EXPECT_LE(a[i], 0.0);
      EXPECT_NEAR(a[i], b[i], 1e-4 * std::max(1.0, std::fabs(b[i]))) << dir << " " << i;
    }
  }
}

TEST(InferEngine, ThreadCountDoesNotChangeTheLogits) {
  infer::LoadOptions one, two;
  one.threads = 1;
  two.threads = 2;
  const auto ids = prompt_of("the cat sat on the mat");
  for (const char* dt : {"f32", "q8_0"}) {
    one.dtype = two.dtype = dt;
    auto a = infer::Engine::load(tm().llama, one)->token_logprobs(ids);
    auto b = infer::Engine::load(tm().llama, two)->token_logprobs(ids);
    EXPECT_EQ(a, b) << dt;
  }
}

}  // namespace
}  // namespace tsumugi
