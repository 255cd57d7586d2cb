#include "tokenizer/charsmap_builder.h"

#include <utf8proc.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <set>
#include <unordered_map>
#include <vector>

#include "tokenizer/train_common.h"
#include "util/error.h"

namespace tsumugi::tokenizer {

namespace {

using train::to_u32;
using train::to_utf8;

std::u32string unicode_map(const std::u32string& s, int options) {
  const std::string in = to_utf8(s);
  utf8proc_uint8_t* out = nullptr;
  const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(in.data()),
                                          utf8proc_ssize_t(in.size()), &out, utf8proc_option_t(options));
  if (n < 0) fail("utf8proc cannot normalize U+{:04X}: {}", uint32_t(s.empty() ? 0 : s[0]), utf8proc_errmsg(n));
  std::u32string r = to_u32(std::string_view(reinterpret_cast<const char*>(out), size_t(n)));
  std::free(out);
  return r;
}
std::u32string nfkc(const std::u32string& s) { return unicode_map(s, UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT); }
std::u32string nfkd(const std::u32string& s) { return unicode_map(s, UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT); }
std::u32string nfc(const std::u32string& s) { return unicode_map(s, UTF8PROC_STABLE | UTF8PROC_COMPOSE); }

// Code points that are characters: no surrogates, no noncharacters (U+FDD0..U+FDEF, U+xxFFFE/F).
bool is_character(char32_t c) {
  return c <= 0x10FFFF && !(c >= 0xD800 && c <= 0xDFFF) && !(c >= 0xFDD0 && c <= 0xFDEF) && (c & 0xFFFE) != 0xFFFE;
}

using RuleIndex = std::unordered_map<std::u32string, std::u32string>;

// What the normalizer makes of `s` with the rules whose source has at most `max_len`
// characters: the longest rule at each position, else the character itself.
std::u32string apply(const RuleIndex& rules, const std::u32string& s, size_t max_len) {
  std::u32string out;
  for (size_t i = 0; i < s.size();) {
    bool hit = false;
    for (size_t len = std::min(max_len, s.size() - i); len > 0 && !hit; --len) {
      auto it = rules.find(s.substr(i, len));
      if (it == rules.end()) continue;
      out += it->second;
      i += len;
      hit = true;
    }
    if (!hit) out.push_back(s[i++]);
  }
  return out;
}

// Keeps the single-character rules and, by increasing length, only the longer rules that the
// shorter ones kept so far do not already produce; checks the result still gives every rule.
CharsRules remove_redundant(const CharsRules& rules) {
  RuleIndex kept;
  size_t max_len = 0;
  for (const auto& [src, dst] : rules) {
    max_len = std::max(max_len, src.size());
    if (src.size() == 1) kept.emplace(src, dst);
  }
  for (size_t len = 2; len <= max_len; ++len)
    for (const auto& [src, dst] : rules)
      if (src.size() == len && apply(kept, src, len - 1) != dst) kept.emplace(src, dst);
  for (const auto& [src, dst] : rules)
    if (apply(kept, src, max_len) != dst) fail("internal: normalization rule for U+{:04X} lost", uint32_t(src[0]));
  return CharsRules(kept.begin(), kept.end());
}

CharsRules build_nfkc() {
  CharsRules rules;
  std::set<std::u32string> decomposed;               // NFKD forms of more than one character
  std::map<char32_t, std::vector<char32_t>> origins;  // c -> characters whose NFKD is exactly c
  for (char32_t cp = 1; cp <= 0x10FFFF; ++cp) {
    if (!is_character(cp)) continue;
    // Unassigned code points and private use normalize to themselves and decompose nothing.
    const auto cat = utf8proc_category(utf8proc_int32_t(cp));
    if (cat == UTF8PROC_CATEGORY_CN || cat == UTF8PROC_CATEGORY_CO) {
      origins[cp].push_back(cp);
      continue;
    }
    const std::u32string one(1, cp);
    const std::u32string k = nfkc(one);
    if (k != one) rules[one] = k;
    const std::u32string d = nfkd(one);
    if (d.size() == 1)
      origins[d[0]].push_back(cp);
    else
      decomposed.insert(d);
  }
  // Every spelling of a decomposed sequence (each character replaced by any character with the
  // same NFKD: か + U+3099, ｶ + ﾞ, ...) maps to the composed form.
  for (const auto& d : decomposed) {
    const std::u32string composed = nfc(d);
    if (composed == d) continue;
    std::vector<std::u32string> spellings = {std::u32string()};
    for (char32_t c : d) {
      auto it = origins.find(c);
      const std::vector<char32_t> alts = it != origins.end() ? it->second : std::vector<char32_t>{c};
      std::vector<std::u32string> next;
      next.reserve(spellings.size() * alts.size());
      for (const auto& s : spellings)
        for (char32_t a : alts) next.push_back(s + a);
      spellings.swap(next);
      if (spellings.size() > 100000) fail("internal: too many spellings of a decomposed sequence");
    }
    for (const auto& s : spellings)
      if (s != composed) rules[s] = composed;
  }
  return remove_redundant(rules);
}

CharsRules build_nmt_nfkc() {
  CharsRules rules = build_nfkc();
  // Other spaces and invisible separators become ' ' (ZERO WIDTH JOINER stays: emoji need it).
  for (char32_t c : {0x0009, 0x000A, 0x000C, 0x000D, 0x1680, 0x200B, 0x200C, 0x200E, 0x200F, 0x2028, 0x2029, 0x2581,
                     0xFEFF, 0xFFFD})
    rules[std::u32string(1, c)] = U" ";
  // Control characters are dropped.
  for (char32_t c = 0x01; c <= 0x1F; ++c)
    if (c != 0x09 && c != 0x0A && c != 0x0C && c != 0x0D) rules[std::u32string(1, c)] = U"";
  for (char32_t c : {0x007F, 0x008F, 0x009F}) rules[std::u32string(1, c)] = U"";
  // Full-width and ASCII tildes are used differently in Japanese: keep U+FF5E.
  rules.erase(std::u32string(1, 0xFF5E));
  return remove_redundant(rules);
}

// darts-clone units: bits 0-7 label, 8 has-leaf, 9 offset extension, 10-30 offset, 31 value flag.
constexpr uint32_t kValueFlag = 1u << 31, kLeafFlag = 1u << 8;
constexpr size_t kMaxUnits = size_t(1) << 21;  // offsets stored without the extension bit
uint32_t unit_label(uint32_t u) { return u & (kValueFlag | 0xFF); }
size_t unit_offset(uint32_t u) { return size_t((u >> 10) << ((u & (1u << 9)) >> 6)); }

}  // namespace

CharsRules normalization_rules(std::string_view name) {
  if (name == "nfkc") return build_nfkc();
  if (name == "nmt_nfkc") return build_nmt_nfkc();
  fail("normalization rule '{}' cannot be built (supported: identity, nfkc, nmt_nfkc)", name);
}

std::string compile_charsmap(const CharsRules& rules) {
  if (rules.empty()) return {};  // no map at all: what identity models carry
  // Replacements, each once, NUL-terminated; a rule's value is its replacement's offset.
  std::map<std::string, uint32_t> offsets;
  for (const auto& [src, dst] : rules) offsets.emplace(to_utf8(dst), 0);
  std::string normalized;
  for (auto& [text, off] : offsets) {
    off = uint32_t(normalized.size());
    normalized += text;
    normalized.push_back('\0');
  }
  std::vector<std::pair<std::string, uint32_t>> keys;
  for (const auto& [src, dst] : rules) {
    if (src.empty() || src.find(char32_t(0)) != std::u32string::npos) fail("internal: bad normalization rule source");
    keys.emplace_back(to_utf8(src), offsets[to_utf8(dst)]);
  }
  std::sort(keys.begin(), keys.end());

  // Identical subtrees (same value, same labels leading to identical subtrees) are stored once,
  // as darts-clone does from its DAWG: spm_train's maps are built so, and this keeps the map a
  // few hundred KB instead of megabytes. Each distinct subtree gets an id, children first.
  struct Subtree {
    bool leaf;
    uint32_t value;
    std::vector<std::pair<uint8_t, int32_t>> children;  // (label, subtree id)
  };
  std::vector<Subtree> subtrees;
  std::unordered_map<std::string, int32_t> ids;
  auto intern = [&](auto&& self, size_t lo, size_t hi, size_t depth) -> int32_t {
    Subtree st{false, 0, {}};
    if (keys[lo].first.size() == depth) {
      st.leaf = true;
      st.value = keys[lo].second;
      ++lo;
    }
    for (size_t i = lo; i < hi;) {
      const uint8_t c = uint8_t(keys[i].first[depth]);
      size_t j = i + 1;
      while (j < hi && uint8_t(keys[j].first[depth]) == c) ++j;
      st.children.emplace_back(c, self(self, i, j, depth + 1));
      i = j;
    }
    std::string sig(1, char(st.leaf));
    sig.append(reinterpret_cast<const char*>(&st.value), 4);
    for (const auto& [c, id] : st.children) {
      sig.push_back(char(c));
      sig.append(reinterpret_cast<const char*>(&id), 4);
    }
    auto [it, inserted] = ids.emplace(std::move(sig), int32_t(subtrees.size()));
    if (inserted) subtrees.push_back(std::move(st));
    return it->second;
  };
  const int32_t root = keys.empty() ? -1 : intern(intern, 0, keys.size(), 0);

  // The double array. A subtree placed at base b has the unit of its child with label c at
  // b ^ c and, when a key ends there, its value at b itself (the label-0 slot); a unit at index
  // i stores i ^ (its subtree's base). Distinct subtrees get distinct bases, so a byte that
  // leads into another subtree's block finds a wrong label. Free slots carry the value flag:
  // their label matches no byte. Candidate slots come from a list of free slots; one that has
  // failed many times is dropped from it, which keeps building near-linear.
  std::vector<uint32_t> units;
  std::vector<uint8_t> used, base_used, fails;
  std::vector<int32_t> next_free, prev_free;  // the free list; -2: not listed
  int32_t head = -1, tail = -1;
  auto unlink = [&](int32_t i) {
    const int32_t p = prev_free[size_t(i)], n = next_free[size_t(i)];
    if (p < 0) head = n; else next_free[size_t(p)] = n;
    if (n < 0) tail = p; else prev_free[size_t(n)] = p;
    prev_free[size_t(i)] = next_free[size_t(i)] = -2;
  };
  auto add_block = [&]() {
    const size_t old = units.size(), n = old + 256;
    if (n > kMaxUnits) fail("normalization map too large for the double array ({} units)", n);
    units.resize(n, kValueFlag);
    used.resize(n, 0);
    base_used.resize(n, 0);
    fails.resize(n, 0);
    next_free.resize(n, -2);
    prev_free.resize(n, -2);
    for (size_t i = old; i < n; ++i) {
      prev_free[i] = tail;
      next_free[i] = -1;
      if (tail < 0) head = int32_t(i); else next_free[size_t(tail)] = int32_t(i);
      tail = int32_t(i);
    }
  };
  auto take = [&](size_t i) {
    used[i] = 1;
    if (next_free[i] != -2) unlink(int32_t(i));
  };
  add_block();
  take(0);  // the root's unit
  // Nor may the root's base be 0: byte 0 would then lead from the root to the root's own unit
  // (label 0), and a NUL in the text would join the next rule's match instead of passing through.
  base_used[0] = 1;
  // Finds a base for a subtree and reserves its slots.
  auto place = [&](const Subtree& st) -> int32_t {
    const uint32_t first = st.leaf ? 0 : st.children.front().first;
    for (int32_t f = head;;) {
      if (f < 0) {
        f = int32_t(units.size());
        add_block();
      }
      const size_t base = size_t(f) ^ first;
      bool ok = !base_used[base] && (!st.leaf || !used[base]);
      for (size_t k = 0; k < st.children.size() && ok; ++k) ok = !used[base ^ st.children[k].first];
      if (ok) {
        base_used[base] = 1;
        if (st.leaf) take(base);
        for (const auto& [c, id] : st.children) take(base ^ c);
        return int32_t(base);
      }
      const int32_t next = next_free[size_t(f)];
      if (++fails[size_t(f)] >= 16) unlink(f);
      f = next;
    }
  };
  if (root >= 0) {
    std::vector<int32_t> base_of(subtrees.size(), -1);
    std::vector<int32_t> queue = {root};
    base_of[size_t(root)] = place(subtrees[size_t(root)]);
    for (size_t q = 0; q < queue.size(); ++q)  // every distinct subtree once, breadth-first
      for (const auto& [c, id] : subtrees[size_t(queue[q])].children)
        if (base_of[size_t(id)] < 0) {
          base_of[size_t(id)] = place(subtrees[size_t(id)]);
          queue.push_back(id);
        }
    units[0] = uint32_t(base_of[size_t(root)]) << 10;
    for (int32_t id : queue) {
      const Subtree& st = subtrees[size_t(id)];
      const size_t base = size_t(base_of[size_t(id)]);
      if (st.leaf) units[base] = kValueFlag | st.value;
      for (const auto& [c, child] : st.children) {
        const size_t index = base ^ c;
        const size_t offset = index ^ size_t(base_of[size_t(child)]);
        units[index] = (uint32_t(offset) << 10) | (subtrees[size_t(child)].leaf ? kLeafFlag : 0) | c;
      }
    }
  }
  // Trailing blocks with nothing in them are dropped; blocks stay whole (SentencePiece reads
  // b ^ c without a bounds check).
  size_t n = units.size();
  while (n > 256 && std::none_of(used.begin() + ptrdiff_t(n - 256), used.begin() + ptrdiff_t(n), [](uint8_t u) { return u; }))
    n -= 256;
  units.resize(n);

  std::string blob;
  const uint32_t trie_bytes = uint32_t(units.size() * 4);
  for (int b = 0; b < 4; ++b) blob.push_back(char((trie_bytes >> (8 * b)) & 0xFF));
  for (uint32_t u : units)
    for (int b = 0; b < 4; ++b) blob.push_back(char((u >> (8 * b)) & 0xFF));
  blob += normalized;
  return blob;
}

const std::string& precompiled_charsmap(std::string_view name) {
  static const std::string empty;
  if (name == "identity") return empty;
  static std::mutex mu;
  static std::map<std::string, std::string, std::less<>> built;
  std::lock_guard<std::mutex> lock(mu);
  auto it = built.find(name);
  if (it == built.end()) it = built.emplace(std::string(name), compile_charsmap(normalization_rules(name))).first;
  return it->second;
}

CharsRules decompile_charsmap(std::string_view blob) {
  if (blob.size() < 4) fail("precompiled charsmap too short ({} bytes)", blob.size());
  uint32_t trie_bytes = 0;
  for (int b = 0; b < 4; ++b) trie_bytes |= uint32_t(uint8_t(blob[size_t(b)])) << (8 * b);
  if (trie_bytes % 4 || trie_bytes > blob.size() - 4) fail("precompiled charsmap: bad trie size {}", trie_bytes);
  std::vector<uint32_t> units(trie_bytes / 4);
  std::memcpy(units.data(), blob.data() + 4, trie_bytes);
  const std::string_view normalized = blob.substr(4 + trie_bytes);
  CharsRules rules;
  if (units.empty()) return rules;
  // spm_train's maps share identical subtrees (darts-clone builds them from a DAWG), so nodes can
  // be reached more than once; depth and step limits stop a broken map that loops.
  std::string key;
  size_t steps = 0;
  auto walk = [&](auto&& self, size_t base) -> void {
    if (key.size() > 256 || ++steps > 100000000) fail("precompiled charsmap: malformed trie");
    for (uint32_t c = 1; c < 256; ++c) {
      const size_t idx = base ^ c;
      if (idx >= units.size() || unit_label(units[idx]) != c) continue;
      const size_t child_base = idx ^ unit_offset(units[idx]);
      key.push_back(char(c));
      if (units[idx] & kLeafFlag) {
        if (child_base >= units.size()) fail("precompiled charsmap: value outside the trie");
        const size_t v = units[child_base] & ~kValueFlag;
        if (v >= normalized.size()) fail("precompiled charsmap: replacement outside the blob");
        const size_t end = normalized.find('\0', v);
        rules[to_u32(key)] = to_u32(normalized.substr(v, end == std::string_view::npos ? std::string_view::npos : end - v));
      }
      self(self, child_base);
      key.pop_back();
    }
  };
  walk(walk, unit_offset(units[0]));
  return rules;
}

}  // namespace tsumugi::tokenizer
