// The KV-cache decoder against the reference decoder (the training model recomputing the whole
// window), for both families and every weight type.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <latch>
#include <thread>

#include "infer/engine.h"
#include "infer/fixtures.h"
#include "infer/kernels.h"
#include "infer/weights.h"
#include "util/error.h"

namespace tsumugi {
namespace {

using testing::TempDir;

struct Models {
  TempDir dir;
  std::string gpt2, llama;
  Models() {
    gpt2 = dir.file("gpt2");
    llama = dir.file("llama");
    testing::write_checkpoint(gpt2, testing::tiny_gpt2(), testing::random_weights(testing::tiny_gpt2(), 1));
    testing::write_checkpoint(llama, testing::tiny_llama(), testing::random_weights(testing::tiny_llama(), 2));
  }
};

Models& models() {
  static Models m;
  return m;
}

std::unique_ptr<infer::Engine> load(const std::string& dir, const std::string& decoder, const std::string& dtype = "auto",
                                     const std::string& kv_cache = "auto") {
  infer::LoadOptions o;
  o.decoder = decoder;
  o.dtype = dtype;
  o.kv_cache = kv_cache;
  return infer::Engine::load(dir, o);
}

const std::vector<std::vector<int32_t>> kPrompts = {{5}, {1, 2, 3}, {300, 17, 17, 17, 9, 250}, {42, 7, 99, 100, 11, 3, 8, 200, 201, 5, 6}};

// Logits after the prompt, then after each greedy token, for n steps.
std::vector<std::vector<float>> logit_trace(infer::Engine& e, const std::vector<int32_t>& prompt, int steps,
                                            std::vector<int32_t>* greedy = nullptr) {
  auto dec = e.new_decoder();
  std::vector<float> lg(e.config().vocab_size);
  dec->append(prompt.data(), static_cast<int>(prompt.size()), lg.data());
  std::vector<std::vector<float>> out{lg};
  for (int i = 0; i < steps; ++i) {
    const int32_t id = static_cast<int32_t>(std::max_element(lg.begin(), lg.end()) - lg.begin());
    if (greedy) greedy->push_back(id);
    dec->append(&id, 1, lg.data());
    out.push_back(lg);
  }
  return out;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(static_cast<double>(a[i]) - b[i]));
  return m;
}
double max_abs(const std::vector<float>& a) {
  double m = 0;
  for (float v : a) m = std::max(m, std::fabs(static_cast<double>(v)));
  return m;
}

void expect_matches_reference(const std::string& dir) {
  auto fast = load(dir, "auto");
  auto ref = load(dir, "reference");
  for (const auto& p : kPrompts) {
    std::vector<int32_t> gf, gr;
    auto tf = logit_trace(*fast, p, 12, &gf);
    auto tr = logit_trace(*ref, p, 12, &gr);
    EXPECT_EQ(gf, gr) << "greedy tokens differ, prompt of " << p.size();
    for (std::size_t s = 0; s < tf.size(); ++s)
      EXPECT_LT(max_abs_diff(tf[s], tr[s]), 2e-4 * std::max(1.0, max_abs(tr[s]))) << "step " << s;
    // Through Engine::complete too (the sampling loop over the decoder).
    infer::Sampling sm;
    sm.temperature = 0;
    sm.max_tokens = 12;
    EXPECT_EQ(fast->complete(p, sm).tokens, ref->complete(p, sm).tokens);
  }
}

TEST(InferDecoder, Gpt2KvCacheEqualsWholeWindowRecompute) { expect_matches_reference(models().gpt2); }
TEST(InferDecoder, LlamaGqaKvCacheEqualsWholeWindowRecompute) { expect_matches_reference(models().llama); }

// The cache starts at 64 positions and grows (copying each head's rows) as a sequence passes it:
// past the growth, from one token and from a prompt that crosses it, still the reference's logits.
TEST(InferDecoder, CacheGrowthKeepsEveryPosition) {
  TempDir dir;
  for (auto cfg : {testing::tiny_gpt2(), testing::tiny_llama()}) {
    cfg.max_seq = 200;
    const std::string path = dir.file(cfg.family == model::Family::GPT2 ? "gpt2" : "llama");
    testing::write_checkpoint(path, cfg, testing::random_weights(cfg, 5));
    for (const std::string kv : {"f32", "f16"}) {
    auto fast = load(path, "auto", "auto", kv);
    ASSERT_EQ(fast->kv_cache_dtype(), kv);
    const double tol = kv == "f32" ? 2e-4 : 4e-3;  // f16 keys and values: ~11 bits
    auto ref = load(path, "reference");
    std::vector<int32_t> prompt;
    for (int i = 0; i < 50; ++i) prompt.push_back((i * 37 + 11) % cfg.vocab_size);
    std::vector<int32_t> gf, gr;
    auto tf = logit_trace(*fast, prompt, 30, &gf);  // 50 -> 80: grows once, from single tokens
    auto tr = logit_trace(*ref, prompt, 30, &gr);
    EXPECT_EQ(gf, gr);
    for (std::size_t s = 0; s < tf.size(); ++s)
      EXPECT_LT(max_abs_diff(tf[s], tr[s]), tol * std::max(1.0, max_abs(tr[s]))) << path << " " << kv << " step " << s;
    // A prompt that crosses 64 and then 128 inside one append, then single tokens.
    std::vector<int32_t> seq = prompt;
    seq.insert(seq.end(), gr.begin(), gr.end());
    for (int i = 0; seq.size() < 140; ++i) seq.push_back((i * 13 + 3) % cfg.vocab_size);
    auto d = fast->new_decoder();
    std::vector<float> a(cfg.vocab_size), b(cfg.vocab_size);
    d->append(seq.data(), 60, a.data());
    d->append(seq.data() + 60, 75, a.data());
    for (std::size_t i = 135; i < seq.size(); ++i) d->append(&seq[i], 1, a.data());
    auto rd = ref->new_decoder();
    rd->append(seq.data(), static_cast<int>(seq.size()), b.data());
    EXPECT_LT(max_abs_diff(a, b), tol * std::max(1.0, max_abs(b))) << path << " " << kv;
    }
  }
}

// Matrices stored in the decoding type are copied into huge pages (where the kernel offers them) or
// read from the file mapping (keep_mapped): the same bytes, so the same logits to the bit.
TEST(InferDecoder, MappedAndCopiedWeightsDecodeTheSame) {
  for (const auto& dir : {models().gpt2, models().llama}) {
    infer::WeightLoadOptions wo;
    wo.keep_mapped = true;
    const auto mapped = infer::load_weights(dir, wo);
    EXPECT_GT(mapped->mapped_matrix_bytes, 0u) << dir;
    wo.keep_mapped = false;
    const auto copied = infer::load_weights(dir, wo);
    if (infer::transparent_huge_pages()) EXPECT_EQ(copied->mapped_matrix_bytes, 0u) << dir;
    infer::LoadOptions o;
    o.keep_mapped = true;
    auto a = infer::Engine::load(dir, o);
    o.keep_mapped = false;
    auto b = infer::Engine::load(dir, o);
    std::vector<int32_t> ga, gb;
    const auto ta = logit_trace(*a, kPrompts.back(), 8, &ga), tb = logit_trace(*b, kPrompts.back(), 8, &gb);
    EXPECT_EQ(ga, gb);
    for (std::size_t s = 0; s < ta.size(); ++s) EXPECT_EQ(ta[s], tb[s]) << dir << " step " << s;
  }
}

// The KV cache in f16 (the default with 16- and 8-bit weights): the reference's greedy tokens and
// logits within f16's rounding of keys and values; auto picks f32 for f32 weights, f16 otherwise;
// an unknown type is refused.
TEST(InferDecoder, F16KvCacheStaysCloseToTheReference) {
  for (const auto& dir : {models().gpt2, models().llama}) {
    auto f16 = load(dir, "auto", "f32", "f16");
    auto ref = load(dir, "reference");
    for (const auto& p : kPrompts) {
      std::vector<int32_t> gf, gr;
      auto tf = logit_trace(*f16, p, 12, &gf);
      auto tr = logit_trace(*ref, p, 12, &gr);
      EXPECT_EQ(gf, gr) << dir;
      double worst = 0;
      for (std::size_t s = 0; s < tf.size(); ++s) worst = std::max(worst, max_abs_diff(tf[s], tr[s]) / std::max(1.0, max_abs(tr[s])));
      EXPECT_LT(worst, 4e-3) << dir;
      EXPECT_GT(worst, 0.0) << dir << ": f16 keys and values should round somewhere";
    }
    EXPECT_EQ(load(dir, "auto", "f32")->kv_cache_dtype(), "f32");
    EXPECT_EQ(load(dir, "auto", "q8_0")->kv_cache_dtype(), "f16");
    EXPECT_EQ(load(dir, "auto", "bf16", "f32")->kv_cache_dtype(), "f32");
    EXPECT_THROW(load(dir, "auto", "f32", "f8"), Error);
    EXPECT_THROW(load(dir, "reference", "auto", "f16"), Error);
  }
}

// A long prompt goes through the matrix-matrix path (f32, bf16, f16 weights), a short one through
// the few-token kernels: after the same 100 tokens (at once, in pieces of 10, or of 3) the logits
// agree at every weight type (q8_0 prompts always take the kernels, whose results do not depend on
// how the tokens are grouped).
// Sequences decoded at once from several threads share decoding steps (one forward pass over all
// their next tokens) and get exactly the logits each gets alone, for both families and every
// weight type; one that dawdles between two tokens (longer than a step waits for it) too. A step
// waits up to 40 ms here so that sharing does not hang on the scheduler (a tiny model's step
// takes microseconds).
TEST(InferDecoder, ConcurrentSequencesShareStepsWithExactLogits) {
  constexpr int kSteps = 16;
  // Prompts of 2+ tokens: a one-token prompt would itself be a step, taken before the others'.
  const std::vector<std::vector<int32_t>> prompts = {{5, 6}, {1, 2, 3}, {300, 17, 17, 17, 9, 250}, {42, 7, 99, 100, 11}};
  for (const auto& dir : {models().gpt2, models().llama}) {
    for (const std::string dtype : {"f32", "bf16", "f16", "q8_0"}) {
      infer::LoadOptions o;
      o.dtype = dtype;
      o.batch_wait_us = 40000;
      auto e = infer::Engine::load(dir, o);
      std::vector<std::vector<std::vector<float>>> alone, together(prompts.size());
      uint64_t single_appends = 0;
      for (const auto& p : prompts) {
        alone.push_back(logit_trace(*e, p, kSteps));
        single_appends += kSteps;
      }
      const infer::Engine::DecodeCounters before = e->decode_counters();
      const auto n = static_cast<std::ptrdiff_t>(prompts.size());
      std::latch start(n), prompted(n), stepped(n);
      std::vector<std::thread> threads;
      for (std::size_t i = 0; i < prompts.size(); ++i)
        threads.emplace_back([&, i] {
          start.arrive_and_wait();
          auto dec = e->new_decoder();
          std::vector<float> lg(e->config().vocab_size);
          dec->append(prompts[i].data(), static_cast<int>(prompts[i].size()), lg.data());
          together[i].push_back(lg);
          // A new sequence is not waited for until its first token, and a tiny model's steps take
          // microseconds: the sequences take their first step, then go on together.
          prompted.arrive_and_wait();
          for (int s = 0; s < kSteps; ++s) {
            if (s == 1) stepped.arrive_and_wait();
            if (i + 1 == prompts.size() && s == 5) std::this_thread::sleep_for(std::chrono::milliseconds(60));
            const auto id = static_cast<int32_t>(std::max_element(lg.begin(), lg.end()) - lg.begin());
            dec->append(&id, 1, lg.data());
            together[i].push_back(lg);
          }
        });
      for (auto& t : threads) t.join();
      const infer::Engine::DecodeCounters after = e->decode_counters();
      for (std::size_t i = 0; i < prompts.size(); ++i)
        EXPECT_TRUE(together[i] == alone[i]) << dir << " " << dtype << " sequence " << i;
      EXPECT_EQ(after.tokens - before.tokens, single_appends) << dir << " " << dtype;
      EXPECT_LT(after.steps - before.steps, after.tokens - before.tokens)
          << dir << " " << dtype << ": no step carried two sequences";
    }
  }
}

// A forked decoder continues its prefix exactly as a fresh decoder given the whole sequence, and
// neither copy disturbs the other (the eval harness scores each choice on a fork of the prompt).
TEST(InferDecoder, ForkContinuesThePrefixIndependently) {
  for (const auto& dir : {models().gpt2, models().llama}) {
    for (const std::string decoder : {"auto", "reference"}) {
      auto e = load(dir, decoder);
      const std::vector<int32_t> prefix = {42, 7, 99, 100, 11}, a = {3, 8, 200}, b = {5, 6};
      const std::size_t V = e->config().vocab_size;
      auto whole = [&](const std::vector<int32_t>& tail) {
        std::vector<int32_t> seq = prefix;
        seq.insert(seq.end(), tail.begin(), tail.end());
        std::vector<float> lg(V);
        auto d = e->new_decoder();
        for (int32_t id : seq) d->append(&id, 1, lg.data());
        return lg;
      };
      std::vector<float> lg(V), la(V), lb(V);
      auto base = e->new_decoder();
      for (int32_t id : prefix) base->append(&id, 1, lg.data());
      auto fa = base->fork(), fb = base->fork();
      ASSERT_TRUE(fa && fb) << decoder;
      EXPECT_EQ(fa->length(), static_cast<int>(prefix.size()));
      for (int32_t id : a) fa->append(&id, 1, la.data());
      for (int32_t id : b) fb->append(&id, 1, lb.data());
      EXPECT_TRUE(la == whole(a)) << dir << " " << decoder;
      EXPECT_TRUE(lb == whole(b)) << dir << " " << decoder;
      fa.reset();  // the original outlives its forks and still continues as itself
      for (int32_t id : b) base->append(&id, 1, lg.data());
      EXPECT_TRUE(lg == whole(b)) << dir << " " << decoder;
    }
  }
}

TEST(InferDecoder, LongAndShortPromptPathsAgree) {
  TempDir dir;
  for (auto cfg : {testing::tiny_gpt2(), testing::tiny_llama()}) {
    cfg.max_seq = 128;
    const std::string path = dir.file(cfg.family == model::Family::GPT2 ? "gpt2" : "llama");
    testing::write_checkpoint(path, cfg, testing::random_weights(cfg, 8));
    std::vector<int32_t> p;
    for (int i = 0; i < 100; ++i) p.push_back((i * 29 + 5) % cfg.vocab_size);
    for (const auto& [dtype, tol] : std::vector<std::pair<std::string, double>>{{"f32", 1e-4}, {"bf16", 1e-4}, {"f16", 1e-4}, {"q8_0", 1e-6}}) {
      auto e = load(path, "auto", dtype);
      std::vector<float> whole(cfg.vocab_size);
      auto d1 = e->new_decoder();
      d1->append(p.data(), 100, whole.data());
      for (int piece : {10, 3}) {
        std::vector<float> pieces(cfg.vocab_size);
        auto d2 = e->new_decoder();
        for (int s = 0; s < 100; s += piece) d2->append(p.data() + s, std::min(piece, 100 - s), pieces.data());
        EXPECT_LT(max_abs_diff(whole, pieces), tol * std::max(1.0, max_abs(whole))) << path << " " << dtype << " " << piece;
      }
    }
  }
}

// Prompt processed at once, token by token, or in pieces: the same logits (q8_0 exactly: every
// path multiplies Q8_0-quantized activations).
TEST(InferDecoder, PrefillInPiecesEqualsOneAppend) {
  for (const auto& dir : {models().gpt2, models().llama}) {
    for (const auto& [dtype, tol] : std::vector<std::pair<std::string, double>>{{"f32", 1e-4}, {"f16", 1e-4}, {"q8_0", 1e-6}}) {
      auto e = load(dir, "auto", dtype);
      const auto& p = kPrompts.back();
      std::vector<float> a(e->config().vocab_size), b(a.size());
      auto d1 = e->new_decoder();
      d1->append(p.data(), static_cast<int>(p.size()), a.data());
      auto d2 = e->new_decoder();
      d2->append(p.data(), 4, b.data());
      for (std::size_t i = 4; i < p.size(); ++i) d2->append(&p[i], 1, b.data());
      EXPECT_EQ(d2->length(), static_cast<int>(p.size()));
      EXPECT_LT(max_abs_diff(a, b), tol * std::max(1.0, max_abs(a))) << dir << " " << dtype;
    }
  }
}

// Lower-precision weights against f32: relative to the largest logit. bf16 keeps 8 mantissa bits,
// f16 11, q8_0 ~7 bits per 32-block and int8 activations (so about twice bf16's error).
TEST(InferDecoder, WeightTypesStayCloseToF32) {
  const std::vector<std::pair<std::string, double>> tol = {{"bf16", 2.5e-2}, {"f16", 4e-3}, {"q8_0", 5e-2}};
  for (const auto& dir : {models().gpt2, models().llama}) {
    auto f32 = load(dir, "auto", "f32");
    for (const auto& [dt, t] : tol) {
      auto e = load(dir, "auto", dt);
      EXPECT_EQ(e->weights_dtype(), dt);
      for (const auto& p : kPrompts) {
        auto a = logit_trace(*f32, p, 0)[0];
        auto b = logit_trace(*e, p, 0)[0];
        const double rel = max_abs_diff(a, b) / max_abs(a);
        EXPECT_LT(rel, t) << dir << " " << dt;
        EXPECT_GT(rel, 0.0) << dt << " should differ from f32 at all";
      }
    }
  }
}

TEST(InferDecoder, WeightBytesFollowTheType) {
  const auto c = testing::tiny_llama();
  auto f32 = load(models().llama, "auto", "f32");
  auto bf = load(models().llama, "auto", "bf16");
  auto q8 = load(models().llama, "auto", "q8_0");
  const uint64_t matrices = c.num_parameters() - (c.n_layer * 2 + 1) * c.d_model - uint64_t(c.vocab_size) * c.d_model;
  EXPECT_EQ(f32->weights_bytes(), 4 * matrices);  // the untied embedding is only gathered from
  EXPECT_EQ(bf->weights_bytes(), 2 * matrices);
  EXPECT_EQ(q8->weights_bytes(), matrices + matrices / 32 * 2);
}

TEST(InferDecoder, ContextAndVocabularyLimits) {
  auto e = load(models().gpt2, "auto");
  auto d = e->new_decoder();
  std::vector<float> lg(e->config().vocab_size);
  std::vector<int32_t> full(e->context_length(), 3);
  d->append(full.data(), static_cast<int>(full.size()), lg.data());
  const int32_t one = 4;
  EXPECT_THROW(d->append(&one, 1, lg.data()), Error);
  auto d2 = e->new_decoder();
  const int32_t bad = e->config().vocab_size;
  EXPECT_THROW(d2->append(&bad, 1, lg.data()), Error);
}

TEST(InferDecoder, UnknownDtypeIsRefused) {
  try {
    load(models().gpt2, "auto", "q4_k");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("q4_k"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace tsumugi
