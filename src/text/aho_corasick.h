#pragma once
// Multi-pattern byte-string search (Aho–Corasick), compiled to a dense DFA over byte
// equivalence classes: scanning costs one table lookup per input byte, never allocates,
// and finds every occurrence of every pattern in one pass. Immutable after construction,
// so one automaton can be shared by any number of threads.
//
// Patterns are raw bytes (UTF-8 words work as they are: a match always starts and ends on
// the pattern's own bytes, so a valid UTF-8 pattern matches only on code point boundaries
// of valid UTF-8 text).
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace tsumugi::text {

class AhoCorasick {
 public:
  AhoCorasick() = default;  // matches nothing
  // Pattern ids are positions in `patterns`. Empty patterns are rejected (tsumugi::Error);
  // duplicates are allowed and each id is reported. With ascii_case_insensitive, ASCII A-Z
  // and a-z compare equal in patterns and text (other bytes compare exactly).
  explicit AhoCorasick(const std::vector<std::string>& patterns, bool ascii_case_insensitive = false);

  size_t pattern_count() const { return lengths_.size(); }
  uint32_t pattern_length(uint32_t id) const { return lengths_[id]; }
  size_t state_count() const { return stride_ ? trans_.size() / stride_ : 0; }
  size_t byte_classes() const { return stride_; }
  size_t memory_bytes() const {
    return trans_.size() * 4 + out_begin_.size() * 4 + outs_.size() * 4 + lengths_.size() * 4 + sizeof(*this);
  }

  // Calls f(pattern_id, begin, end) for every occurrence (overlapping ones included), in
  // increasing order of `end`; for one `end`, longer patterns come first. `begin`/`end` are
  // byte offsets into `text`. f returns void, or bool where false stops the scan.
  template <typename F>
  void for_each_match(std::string_view text, F&& f) const;

  // Like for_each_match, but in no particular order: long texts are cut into four parts
  // scanned in lockstep (each part starts max_pattern_length-1 bytes early so no match is
  // lost or reported twice), which hides the latency of the table lookups (~2x faster).
  template <typename F>
  void for_each_match_unordered(std::string_view text, F&& f) const;

  // True if any pattern occurs in text (stops at the first occurrence).
  bool contains_any(std::string_view text) const;

 private:
  uint32_t stride_ = 0;                  // byte classes per state (row width)
  uint32_t first_match_ = UINT32_MAX;    // premultiplied ids >= this have outputs
  std::array<uint8_t, 256> classes_{};   // byte -> class (case folding applied here)
  std::vector<uint32_t> trans_;          // [state * stride_ + class] -> premultiplied next state
  std::vector<uint32_t> out_begin_;      // per match state (in order), offsets into outs_; +1 sentinel
  std::vector<uint32_t> outs_;           // pattern ids, longest first
  std::vector<uint32_t> lengths_;        // pattern byte lengths
  uint32_t max_length_ = 0;

  // Reports the outputs of match state s for a match ending at `end`; false = stop.
  template <typename F>
  bool report(uint32_t s, size_t end, F& f) const {
    const uint32_t k = (s - first_match_) / stride_;
    for (uint32_t j = out_begin_[k], je = out_begin_[k + 1]; j < je; ++j) {
      const uint32_t id = outs_[j];
      if constexpr (std::is_same_v<std::invoke_result_t<F&, uint32_t, size_t, size_t>, bool>) {
        if (!f(id, end - lengths_[id], end)) return false;
      } else {
        f(id, end - lengths_[id], end);
      }
    }
    return true;
  }
};

template <typename F>
void AhoCorasick::for_each_match(std::string_view text, F&& f) const {
  if (trans_.empty()) return;
  const uint32_t* t = trans_.data();
  const uint8_t* cls = classes_.data();
  const auto* p = reinterpret_cast<const uint8_t*>(text.data());
  const size_t n = text.size();
  const uint32_t fm = first_match_;
  uint32_t s = 0;  // the start state is state 0
  for (size_t i = 0; i < n; ++i) {
    s = t[s + cls[p[i]]];
    if (s >= fm) [[unlikely]] {
      if (!report(s, i + 1, f)) return;
    }
  }
}

template <typename F>
void AhoCorasick::for_each_match_unordered(std::string_view text, F&& f) const {
  constexpr size_t kLanes = 4;
  const size_t n = text.size();
  if (trans_.empty()) return;
  if (n < kLanes * (size_t(max_length_) + 256)) {
    for_each_match(text, f);
    return;
  }
  const uint32_t* t = trans_.data();
  const uint8_t* cls = classes_.data();
  const auto* p = reinterpret_cast<const uint8_t*>(text.data());
  const uint32_t fm = first_match_;
  // Lane k reports the matches ending in (from[k], stop[k]]; it starts reading max_length_-1
  // bytes before from[k] so that its state there is exactly the sequential scan's.
  const size_t part = (n + kLanes - 1) / kLanes;
  size_t from[kLanes], pos[kLanes], stop[kLanes];
  uint32_t s[kLanes] = {0, 0, 0, 0};
  size_t steps = n;
  for (size_t k = 0; k < kLanes; ++k) {
    from[k] = k * part;
    pos[k] = k == 0 ? 0 : from[k] - (max_length_ - 1);
    stop[k] = std::min(n, (k + 1) * part);
    steps = std::min(steps, stop[k] - pos[k]);
  }
  for (size_t j = 0; j < steps; ++j) {
    s[0] = t[s[0] + cls[p[pos[0] + j]]];
    s[1] = t[s[1] + cls[p[pos[1] + j]]];
    s[2] = t[s[2] + cls[p[pos[2] + j]]];
    s[3] = t[s[3] + cls[p[pos[3] + j]]];
    if ((s[0] >= fm) | (s[1] >= fm) | (s[2] >= fm) | (s[3] >= fm)) [[unlikely]] {
      for (size_t k = 0; k < kLanes; ++k)
        if (s[k] >= fm && pos[k] + j >= from[k] && !report(s[k], pos[k] + j + 1, f)) return;
    }
  }
  for (size_t k = 0; k < kLanes; ++k) {
    uint32_t st = s[k];
    for (size_t i = pos[k] + steps; i < stop[k]; ++i) {
      st = t[st + cls[p[i]]];
      if (st >= fm && i >= from[k] && !report(st, i + 1, f)) [[unlikely]] return;
    }
  }
}

}  // namespace tsumugi::text
