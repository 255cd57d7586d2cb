// Prompt-processing and decoding speed of an engine, as `tsumugi generate --bench` reports it.
#pragma once

#include <cstdint>
#include <string>

#include "infer/engine.h"

namespace tsumugi::infer {

struct BenchResult {
  int prompt_tokens = 0, decode_tokens = 0, repeats = 0;
  double prompt_tokens_per_s = 0, decode_tokens_per_s = 0;  // medians over the repeats
};

// A random prompt of `prompt_tokens` ids (seeded), processed in one append, then `decode_tokens`
// single-token appends of the greedy choice (EOS ignored): what llama-bench's pp and tg measure.
// One warm-up round first (pages in mapped weights, builds oneDNN primitives).
BenchResult bench_engine(Engine& e, int prompt_tokens, int decode_tokens, uint64_t seed, int repeats);

}  // namespace tsumugi::infer
