#include "infer/bench.h"

#include <algorithm>
#include <chrono>
#include <random>
#include <vector>

#include "util/error.h"

namespace tsumugi::infer {

namespace {
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}
}  // namespace

BenchResult bench_engine(Engine& e, int prompt_tokens, int decode_tokens, uint64_t seed, int repeats) {
  if (prompt_tokens < 1) fail("--bench-prompt must be >= 1 (got {})", prompt_tokens);
  if (decode_tokens < 1) fail("--max-tokens must be >= 1 for a benchmark (got {})", decode_tokens);
  if (repeats < 1) fail("--bench-repeat must be >= 1 (got {})", repeats);
  if (std::max(prompt_tokens, decode_tokens) > e.context_length())
    fail("--bench-prompt {} or --max-tokens {} exceeds the model's context ({})", prompt_tokens, decode_tokens,
         e.context_length());
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> pick(0, e.vocab_limit() - 1);
  std::vector<int32_t> prompt(prompt_tokens);
  for (auto& id : prompt) id = pick(rng);
  std::vector<float> logits(e.config().vocab_size);
  const int limit = e.vocab_limit();
  using clock = std::chrono::steady_clock;
  std::vector<double> pp, tg;
  for (int round = 0; round <= repeats; ++round) {
    auto dec = e.new_decoder();
    auto t0 = clock::now();
    dec->append(prompt.data(), prompt_tokens, logits.data());
    const double tp = std::chrono::duration<double>(clock::now() - t0).count();
    // Decoding is timed on a fresh sequence, one token per step from an empty cache, as llama-bench's
    // tg test does, so that both tools attend over the same context lengths.
    const int n = round == 0 ? std::min(decode_tokens, 4) : decode_tokens;
    dec = e.new_decoder();
    int32_t id = prompt[0];
    t0 = clock::now();
    for (int i = 0; i < n; ++i) {
      dec->append(&id, 1, logits.data());
      id = static_cast<int32_t>(std::max_element(logits.begin(), logits.begin() + limit) - logits.begin());
    }
    const double td = std::chrono::duration<double>(clock::now() - t0).count();
    if (round == 0) continue;  // warm-up
    pp.push_back(prompt_tokens / tp);
    tg.push_back(decode_tokens / td);
  }
  BenchResult r;
  r.prompt_tokens = prompt_tokens;
  r.decode_tokens = decode_tokens;
  r.repeats = repeats;
  r.prompt_tokens_per_s = median(pp);
  r.decode_tokens_per_s = median(tg);
  return r;
}

}  // namespace tsumugi::infer
