// Next-token selection from logits: greedy, temperature, top-k, top-p, min-p, repetition penalty.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace tsumugi::infer {

struct Sampling {
  int max_tokens = 256;
  float temperature = 1.0f;  // 0 = greedy
  int top_k = 0;             // 0 = off
  float top_p = 1.0f;        // 1 = off
  float min_p = 0.0f;        // 0 = off: drop tokens with p < min_p * p_max
  float repetition_penalty = 1.0f;  // 1 = off; CTRL-style, over the prompt and the generated ids
  uint64_t seed = 0;
  std::vector<std::string> stop;  // stop strings (not included in the text)
  bool ignore_eos = false;
};

// Checks the options, naming the bad one.
void validate(const Sampling& s);

class Sampler {
 public:
  Sampler(const Sampling& s, int vocab_limit);
  // Picks the next id; `logits` (at least vocab_limit long) may be modified. `history` is every id
  // so far (prompt and generated) for the repetition penalty.
  int32_t next(float* logits, const std::vector<int32_t>& history);

 private:
  Sampling s_;
  int limit_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> cand_;
};

}  // namespace tsumugi::infer
