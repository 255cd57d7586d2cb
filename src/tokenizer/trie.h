#pragma once
// Byte tries for the tokenizer.
//
// Trie: a double-array trie built here over a vocabulary: 8-byte units (base, check) walked
// with one dependent load per byte, values and scores in a side array read only where a key
// ends. The array is padded so that base + byte never leaves it: walking needs no bounds test.
//
// CharsMap: SentencePiece's precompiled normalization map — a darts-clone double array (32-bit
// units) followed by a blob of NUL-terminated replacement strings. The units come from the
// model file, so every index is checked before use: a corrupt map cannot read out of bounds.
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tsumugi::tokenizer {

class Trie {
 public:
  // 8 bytes per node keeps the hot part of a 32k-piece vocabulary in L2. The top bit of `check`
  // says that a key ends at the node, so "is there a value here" needs no extra load, and the
  // walk's critical path is just load base -> add byte -> load.
  struct Unit {
    int32_t base = 0;
    uint32_t check = kFree;  // parent index, kFree, or kRoot; | kHasValue where a key ends
  };
  static constexpr uint32_t kHasValue = 0x80000000u, kParentMask = 0x7FFFFFFFu;
  static constexpr uint32_t kFree = 0x7FFFFFFFu, kRoot = 0x7FFFFFFEu;
  struct Payload {
    int32_t value = -1;
    float score = 0;  // for the owner (the unigram model stores the piece score)
  };

  Trie() = default;
  // Keys must be distinct and non-empty; values must be >= 0.
  explicit Trie(std::vector<std::pair<std::string, int32_t>> keys);
  // The same over strings of labels in [0, alphabet) (the unigram encoder's character ids);
  // walk it with child_label.
  Trie(std::vector<std::pair<std::u16string, int32_t>> keys, size_t alphabet);

  bool empty() const { return num_keys_ == 0; }
  size_t num_keys() const { return num_keys_; }
  size_t num_nodes() const { return units_.size(); }
  const Unit* units() const { return units_.data(); }
  const Payload* payloads() const { return payload_.data(); }
  // Node index where `key` ends (or -1). Lets the owner fill in Payload::score.
  int32_t find_node(std::string_view key) const;
  void set_score(int32_t node, float score) { payload_[size_t(node)].score = score; }

  static bool has_value(const Unit& u) { return u.check & kHasValue; }

  // Child of `node` along byte c, or -1.
  int32_t child(int32_t node, uint8_t c) const {
    const int32_t t = units_[size_t(node)].base + c;
    return (units_[size_t(t)].check & kParentMask) == uint32_t(node) ? t : -1;
  }
  int32_t child_label(int32_t node, uint32_t label) const {
    const int32_t t = units_[size_t(node)].base + int32_t(label);
    return (units_[size_t(t)].check & kParentMask) == uint32_t(node) ? t : -1;
  }
  // True if some key starts with (or equals) `bytes`.
  bool reachable(std::string_view bytes) const {
    if (units_.empty()) return false;
    int32_t n = 0;
    for (unsigned char c : bytes) {
      n = child(n, c);
      if (n < 0) return false;
    }
    return true;
  }
  // Value stored for exactly `key`, or -1.
  int32_t exact(std::string_view key) const {
    if (units_.empty()) return -1;
    int32_t n = 0;
    for (unsigned char c : key) {
      n = child(n, c);
      if (n < 0) return -1;
    }
    return payload_[size_t(n)].value;
  }
  // Length of the longest key that is a prefix of s (0 if none); its value goes to *value.
  size_t longest_prefix(std::string_view s, int32_t* value = nullptr) const {
    if (units_.empty()) return 0;
    int32_t n = 0;
    size_t best = 0;
    for (size_t i = 0; i < s.size(); ++i) {
      n = child(n, uint8_t(s[i]));
      if (n < 0) break;
      if (has_value(units_[size_t(n)])) {
        best = i + 1;
        if (value) *value = payload_[size_t(n)].value;
      }
    }
    return best;
  }

 private:
  std::vector<Unit> units_;
  std::vector<Payload> payload_;
  size_t num_keys_ = 0;
};

class CharsMap {
 public:
  CharsMap() = default;
  // Throws tsumugi::Error (naming `origin`) if the blob's framing is broken.
  CharsMap(std::string_view blob, const std::string& origin);

  bool empty() const { return units_.empty(); }

  // Longest rule matching a prefix of [p, end): its length in bytes (0 if none) and the
  // replacement. At most 32 matches are considered, as SentencePiece's normalizer does.
  size_t longest_match(const char* p, const char* end, std::string_view* replacement) const {
    const size_t n = units_.size();
    if (n == 0) return 0;
    uint32_t unit = units_[0];
    size_t pos = offset(unit);
    size_t best_len = 0, best_value = 0;
    int found = 0;
    for (const char* q = p; q < end; ++q) {
      const uint8_t c = uint8_t(*q);
      pos ^= c;
      if (pos >= n) break;
      unit = units_[pos];
      if (label(unit) != c) break;
      pos ^= offset(unit);
      if (has_leaf(unit)) {
        if (pos >= n) break;
        if (found < 32) {
          best_len = size_t(q - p) + 1;
          best_value = value(units_[pos]);
        }
        ++found;
      }
    }
    if (best_len == 0) return 0;
    *replacement = replacement_at(best_value);
    return best_len;
  }

  // True if some rule starts with these bytes (or is exactly them).
  bool reachable(std::string_view bytes) const {
    const size_t n = units_.size();
    if (n == 0) return false;
    size_t pos = offset(units_[0]);
    for (unsigned char c : bytes) {
      pos ^= c;
      if (pos >= n || label(units_[pos]) != c) return false;
      pos ^= offset(units_[pos]);
    }
    return true;
  }

  // Walks `bytes` from the root. Returns the position to continue from (kNoPos if there is no
  // such path); *leaf tells whether a rule ends exactly there.
  static constexpr size_t kNoPos = ~size_t(0);
  size_t walk(std::string_view bytes, bool* leaf) const {
    const size_t n = units_.size();
    *leaf = false;
    if (n == 0) return kNoPos;
    size_t pos = offset(units_[0]);
    for (unsigned char c : bytes) {
      pos ^= c;
      if (pos >= n || label(units_[pos]) != c) return kNoPos;
      *leaf = has_leaf(units_[pos]);
      pos ^= offset(units_[pos]);
    }
    return pos;
  }
  // Whether a rule continues from `pos` (from walk) with byte c.
  bool continues(size_t pos, uint8_t c) const {
    pos ^= c;
    return pos < units_.size() && label(units_[pos]) == c;
  }

  // True if no rule starts with byte b (so b passes through unless it is part of a longer
  // UTF-8 sequence handled elsewhere). Precomputed for all 256 bytes.
  bool no_rule_starts_with(uint8_t b) const { return no_rule_[b]; }

 private:
  static bool has_leaf(uint32_t u) { return (u >> 8) & 1; }
  static uint32_t value(uint32_t u) { return u & ((1U << 31) - 1); }
  static uint32_t label(uint32_t u) { return u & ((1U << 31) | 0xFF); }
  static size_t offset(uint32_t u) { return size_t((u >> 10) << ((u & (1U << 9)) >> 6)); }
  std::string_view replacement_at(size_t v) const {
    if (v >= normalized_.size()) return {};
    const char* s = normalized_.data() + v;
    const void* nul = std::memchr(s, 0, normalized_.size() - v);
    return std::string_view(s, nul ? size_t(static_cast<const char*>(nul) - s) : normalized_.size() - v);
  }

  std::vector<uint32_t> units_;
  std::string normalized_;
  bool no_rule_[256] = {};
};

}  // namespace tsumugi::tokenizer
