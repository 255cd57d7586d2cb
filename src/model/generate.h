// Plain autoregressive decoding: the whole window is recomputed for each new token (no KV cache;
// the inference stage makes this fast). Enough to see what a checkpoint has learned.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "model/model.h"

namespace tsumugi::model {

struct SampleOptions {
  int max_tokens = 32;
  float temperature = 0.0f;  // 0 = greedy
  int top_k = 0;             // 0 = whole vocabulary
  uint64_t seed = 1;
  int32_t stop_id = -1;      // stop after emitting this id (EOD), -1 = never
  int vocab_limit = 0;       // ids >= this are never sampled (vocabulary padding); 0 = no limit
};

// Returns the generated ids (not including the prompt). `on_token` sees each as it comes.
std::vector<int32_t> generate(Model& model, const std::vector<int32_t>& prompt, const SampleOptions& opt,
                              const std::function<void(int32_t)>& on_token = {});

}  // namespace tsumugi::model
