#include "infer/sampler.h"

#include <algorithm>
#include <cmath>
#include <unordered_set>

#include "util/error.h"

namespace tsumugi::infer {

void validate(const Sampling& s) {
  if (s.max_tokens < 0) fail("max_tokens must be >= 0 (got {})", s.max_tokens);
  if (!(s.temperature >= 0.0f) || !std::isfinite(s.temperature)) fail("temperature must be >= 0 (got {})", s.temperature);
  if (s.top_k < 0) fail("top_k must be >= 0 (got {})", s.top_k);
  if (!(s.top_p > 0.0f && s.top_p <= 1.0f)) fail("top_p must be in (0, 1] (got {})", s.top_p);
  if (!(s.min_p >= 0.0f && s.min_p <= 1.0f)) fail("min_p must be in [0, 1] (got {})", s.min_p);
  if (!(s.repetition_penalty > 0.0f) || !std::isfinite(s.repetition_penalty))
    fail("repetition_penalty must be > 0 (got {})", s.repetition_penalty);
  for (const auto& st : s.stop)
    if (st.empty()) fail("stop strings must not be empty");
}

Sampler::Sampler(const Sampling& s, int vocab_limit) : s_(s), limit_(vocab_limit), rng_(s.seed) {
  validate(s);
  if (vocab_limit <= 0) fail("sampler: empty vocabulary");
}

int32_t Sampler::next(float* logits, const std::vector<int32_t>& history) {
  if (s_.repetition_penalty != 1.0f) {
    std::unordered_set<int32_t> seen(history.begin(), history.end());
    for (int32_t id : seen) {
      if (id < 0 || id >= limit_) continue;
      float& l = logits[id];
      l = l > 0 ? l / s_.repetition_penalty : l * s_.repetition_penalty;
    }
  }
  if (s_.temperature <= 0.0f) {
    // Lowest id among equal maxima, so ties resolve the same everywhere.
    return static_cast<int32_t>(std::max_element(logits, logits + limit_) - logits);
  }
  cand_.clear();
  cand_.reserve(limit_);
  for (int v = 0; v < limit_; ++v) cand_.emplace_back(logits[v] / s_.temperature, v);
  auto better = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
  std::size_t keep = cand_.size();
  if (s_.top_k > 0 && static_cast<std::size_t>(s_.top_k) < keep) {
    keep = s_.top_k;
    std::partial_sort(cand_.begin(), cand_.begin() + keep, cand_.end(), better);
    cand_.resize(keep);
  } else {
    std::sort(cand_.begin(), cand_.end(), better);
  }
  // Probabilities of the kept candidates (sorted, most likely first).
  const float mx = cand_[0].first;
  std::vector<double> p(cand_.size());
  double total = 0;
  for (std::size_t k = 0; k < cand_.size(); ++k) total += (p[k] = std::exp(static_cast<double>(cand_[k].first - mx)));
  std::size_t n = cand_.size();
  if (s_.min_p > 0.0f) {
    const double floor = s_.min_p * p[0];  // p[0] is the largest
    std::size_t m = 1;
    while (m < n && p[m] >= floor) ++m;
    n = m;
  }
  if (s_.top_p < 1.0f) {
    double sum = 0, all = 0;
    for (std::size_t k = 0; k < n; ++k) all += p[k];
    std::size_t m = 0;
    while (m < n) {
      sum += p[m++];
      if (sum >= s_.top_p * all) break;
    }
    n = m;
  }
  total = 0;
  for (std::size_t k = 0; k < n; ++k) total += p[k];
  double r = std::uniform_real_distribution<double>(0.0, total)(rng_);
  for (std::size_t k = 0; k < n; ++k) {
    r -= p[k];
    if (r < 0) return cand_[k].second;
  }
  return cand_[n - 1].second;
}

}  // namespace tsumugi::infer
