#include "model/generate.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "util/error.h"

namespace tsumugi::model {

std::vector<int32_t> generate(Model& model, const std::vector<int32_t>& prompt, const SampleOptions& opt,
                              const std::function<void(int32_t)>& on_token) {
  if (prompt.empty()) fail("generate: the prompt must have at least one token");
  const int ctx = model.config().max_seq;
  const int V = model.config().vocab_size;
  const int limit = opt.vocab_limit > 0 ? std::min(opt.vocab_limit, V) : V;
  std::vector<int32_t> seq = prompt;
  std::vector<int32_t> out;
  std::mt19937_64 rng(opt.seed);
  // One fixed window size so activations are allocated once; causal attention makes the padding
  // after the last real token irrelevant.
  const int T = std::min<int>(ctx, static_cast<int>(prompt.size()) + opt.max_tokens);
  std::vector<int32_t> window(T, 0);
  for (int i = 0; i < opt.max_tokens; ++i) {
    const int len = static_cast<int>(std::min<std::size_t>(seq.size(), static_cast<std::size_t>(T)));
    std::copy(seq.end() - len, seq.end(), window.begin());
    std::fill(window.begin() + len, window.end(), 0);
    model.forward(window.data(), nullptr, 1, T);
    std::vector<float> logits = model.logits_row(len - 1);
    int32_t next = 0;
    if (opt.temperature <= 0.0f) {
      next = static_cast<int32_t>(std::max_element(logits.begin(), logits.begin() + limit) - logits.begin());
    } else {
      std::vector<std::pair<float, int32_t>> cand;
      cand.reserve(limit);
      for (int v = 0; v < limit; ++v) cand.emplace_back(logits[v] / opt.temperature, v);
      if (opt.top_k > 0 && opt.top_k < limit) {
        std::partial_sort(cand.begin(), cand.begin() + opt.top_k, cand.end(),
                          [](auto& a, auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
        cand.resize(opt.top_k);
      }
      float mx = -INFINITY;
      for (auto& c : cand) mx = std::max(mx, c.first);
      double total = 0;
      std::vector<double> w(cand.size());
      for (std::size_t k = 0; k < cand.size(); ++k) total += (w[k] = std::exp(cand[k].first - mx));
      double r = std::uniform_real_distribution<double>(0.0, total)(rng);
      std::size_t k = 0;
      for (; k + 1 < cand.size(); ++k) {
        r -= w[k];
        if (r <= 0) break;
      }
      next = cand[k].second;
    }
    seq.push_back(next);
    out.push_back(next);
    if (on_token) on_token(next);
    if (next == opt.stop_id) break;
  }
  return out;
}

}  // namespace tsumugi::model
