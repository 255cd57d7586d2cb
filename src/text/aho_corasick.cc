#include "text/aho_corasick.h"

#include <algorithm>
#include <limits>

#include "util/error.h"

namespace tsumugi::text {

namespace {
inline uint8_t fold(uint8_t b, bool ci) { return (ci && b >= 'A' && b <= 'Z') ? uint8_t(b + 32) : b; }
}  // namespace

AhoCorasick::AhoCorasick(const std::vector<std::string>& patterns, bool ascii_case_insensitive) {
  const bool ci = ascii_case_insensitive;
  lengths_.reserve(patterns.size());
  for (size_t i = 0; i < patterns.size(); ++i) {
    if (patterns[i].empty()) fail("Aho-Corasick: pattern {} is empty", i);
    if (patterns[i].size() > std::numeric_limits<uint32_t>::max()) fail("Aho-Corasick: pattern {} is too long", i);
    lengths_.push_back(uint32_t(patterns[i].size()));
    max_length_ = std::max(max_length_, lengths_.back());
  }
  if (patterns.empty()) return;

  // Byte classes: every byte value used by a pattern gets its own class, all other bytes
  // share class 0 (they can only lead back towards the start state). With case folding an
  // upper-case letter shares its lower-case letter's class.
  std::array<bool, 256> used{};
  for (const auto& w : patterns)
    for (unsigned char c : w) used[fold(c, ci)] = true;
  uint32_t nclasses = 1;
  std::array<uint8_t, 256> folded_class{};
  for (int b = 0; b < 256; ++b)
    if (used[b]) folded_class[b] = uint8_t(nclasses++);
  for (int b = 0; b < 256; ++b) classes_[b] = folded_class[fold(uint8_t(b), ci)];
  stride_ = nclasses;

  // Trie over classes, dense rows; kNone marks a missing edge while building.
  constexpr uint32_t kNone = std::numeric_limits<uint32_t>::max();
  std::vector<uint32_t> next(stride_, kNone);  // state index based (not premultiplied) while building
  std::vector<std::vector<uint32_t>> own(1);   // patterns ending exactly at each state
  uint32_t states = 1;
  for (uint32_t id = 0; id < patterns.size(); ++id) {
    uint32_t s = 0;
    for (unsigned char c : patterns[id]) {
      uint32_t& slot = next[size_t(s) * stride_ + classes_[c]];
      if (slot == kNone) {
        if (uint64_t(states + 1) * stride_ >= std::numeric_limits<uint32_t>::max())
          fail("Aho-Corasick: too many patterns ({} states x {} byte classes)", states, stride_);
        slot = states++;
        next.resize(size_t(states) * stride_, kNone);
        own.emplace_back();
      }
      s = next[size_t(s) * stride_ + classes_[c]];
    }
    own[s].push_back(id);
  }

  // Breadth-first: failure links, full DFA transitions, and output sets (own patterns first,
  // then the failure state's outputs, which are all shorter suffixes).
  std::vector<uint32_t> fail_link(states, 0), order;
  order.reserve(states);
  std::vector<std::vector<uint32_t>> outputs(states);
  order.push_back(0);
  for (uint32_t c = 0; c < stride_; ++c) {
    uint32_t& v = next[c];
    if (v == kNone) {
      v = 0;
    } else {
      fail_link[v] = 0;
      order.push_back(v);
    }
  }
  for (size_t qi = 1; qi < order.size(); ++qi) {
    uint32_t u = order[qi];
    outputs[u] = own[u];
    const auto& fo = outputs[fail_link[u]];  // already final: shallower states come first
    outputs[u].insert(outputs[u].end(), fo.begin(), fo.end());
    for (uint32_t c = 0; c < stride_; ++c) {
      uint32_t& v = next[size_t(u) * stride_ + c];
      uint32_t via_fail = next[size_t(fail_link[u]) * stride_ + c];
      if (v == kNone) {
        v = via_fail;
      } else {
        fail_link[v] = via_fail;
        order.push_back(v);
      }
    }
  }

  // Renumber: states without outputs first (the start state stays 0), states with outputs
  // last, so the scan loop tests for a match with one comparison.
  std::vector<uint32_t> new_id(states);
  uint32_t k = 0;
  for (uint32_t s = 0; s < states; ++s)
    if (outputs[s].empty()) new_id[s] = k++;
  const uint32_t first_match_index = k;
  for (uint32_t s = 0; s < states; ++s)
    if (!outputs[s].empty()) new_id[s] = k++;
  first_match_ = first_match_index * stride_;

  trans_.assign(size_t(states) * stride_, 0);
  for (uint32_t s = 0; s < states; ++s) {
    const uint32_t* src = &next[size_t(s) * stride_];
    uint32_t* dst = &trans_[size_t(new_id[s]) * stride_];
    for (uint32_t c = 0; c < stride_; ++c) dst[c] = new_id[src[c]] * stride_;
  }
  std::vector<uint32_t> by_new(states);
  for (uint32_t s = 0; s < states; ++s) by_new[new_id[s]] = s;
  out_begin_.reserve(states - first_match_index + 1);
  for (uint32_t ns = first_match_index; ns < states; ++ns) {
    out_begin_.push_back(uint32_t(outs_.size()));
    const auto& o = outputs[by_new[ns]];
    outs_.insert(outs_.end(), o.begin(), o.end());
  }
  out_begin_.push_back(uint32_t(outs_.size()));
}

bool AhoCorasick::contains_any(std::string_view text) const {
  bool found = false;
  for_each_match(text, [&](uint32_t, size_t, size_t) {
    found = true;
    return false;
  });
  return found;
}

}  // namespace tsumugi::text
