#pragma once
// Multi-pattern byte-string search (Aho–Corasick), compiled to a dense DFA over byte
// equivalence classes: scanning costs one table lookup per input byte, never allocates,
// and finds every occurrence of every pattern in one pass. Immutable after construction,
// so one automaton can be shared by any number of threads.
//
// Patterns are raw bytes (UTF-8 words work as they are: a match always starts and ends on
// the pattern's own bytes, so a valid UTF-8 pattern matches only on code point boundaries
// of valid UTF-8 text).
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
  struct Options {
    // Fold ASCII A-Z to a-z in patterns and text (other bytes compare exactly).
    bool ascii_case_insensitive = false;
  };

  AhoCorasick() = default;  // matches nothing
  // Pattern ids are positions in `patterns`. Empty patterns are rejected (tsumugi::Error);
  // duplicates are allowed and each id is reported.
  explicit AhoCorasick(const std::vector<std::string>& patterns, Options options = {});
  AhoCorasick(const std::vector<std::string>& patterns, bool ascii_case_insensitive)
      : AhoCorasick(patterns, Options{ascii_case_insensitive}) {}

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
      const uint32_t k = (s - fm) / stride_;
      const size_t end = i + 1;
      for (uint32_t j = out_begin_[k], je = out_begin_[k + 1]; j < je; ++j) {
        const uint32_t id = outs_[j];
        if constexpr (std::is_same_v<std::invoke_result_t<F&, uint32_t, size_t, size_t>, bool>) {
          if (!f(id, end - lengths_[id], end)) return;
        } else {
          f(id, end - lengths_[id], end);
        }
      }
    }
  }
}

}  // namespace tsumugi::text
