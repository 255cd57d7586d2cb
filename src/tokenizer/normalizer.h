#pragma once
// SentencePiece's text normalizer: user-defined symbols pass through untouched, then the
// precompiled character map (nmt_nfkc, nfkc, ... or none for identity) rewrites the longest
// matching rule, bytes that are not UTF-8 become U+FFFD one byte at a time, and whitespace is
// handled as NormalizerSpec says (strip leading/trailing/repeated spaces, add the dummy prefix,
// escape ' ' as U+2581).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "tokenizer/model_proto.h"
#include "tokenizer/trie.h"

namespace tsumugi::tokenizer {

inline constexpr std::string_view kSpaceSymbol = "\xe2\x96\x81";        // U+2581
inline constexpr std::string_view kReplacementChar = "\xef\xbf\xbd";    // U+FFFD

// SentencePiece's OneCharLen: the length a lead byte announces (1 for continuation bytes).
inline size_t one_char_len(uint8_t c) { return "\1\1\1\1\1\1\1\1\1\1\1\1\2\2\3\4"[c >> 4]; }

// Length of the well-formed UTF-8 character at p (shortest form, no surrogates, <= U+10FFFF),
// or 0 if the bytes there are not one. Same rules as SentencePiece's DecodeUTF8.
inline size_t valid_utf8_len(const char* p, const char* end) {
  const size_t len = size_t(end - p);
  const uint8_t c = uint8_t(p[0]);
  auto trail = [](char x) { return (uint8_t(x) & 0xC0) == 0x80; };
  if (c < 0x80) return 1;
  if (len >= 2 && (c & 0xE0) == 0xC0) {
    const uint32_t cp = ((c & 0x1Fu) << 6) | (uint8_t(p[1]) & 0x3Fu);
    return trail(p[1]) && cp >= 0x80 ? 2 : 0;
  }
  if (len >= 3 && (c & 0xF0) == 0xE0) {
    const uint32_t cp = ((c & 0x0Fu) << 12) | ((uint8_t(p[1]) & 0x3Fu) << 6) | (uint8_t(p[2]) & 0x3Fu);
    return trail(p[1]) && trail(p[2]) && cp >= 0x800 && (cp < 0xD800 || cp > 0xDFFF) ? 3 : 0;
  }
  if (len >= 4 && (c & 0xF8) == 0xF0) {
    const uint32_t cp = ((c & 0x07u) << 18) | ((uint8_t(p[1]) & 0x3Fu) << 12) | ((uint8_t(p[2]) & 0x3Fu) << 6) |
                        (uint8_t(p[3]) & 0x3Fu);
    return trail(p[1]) && trail(p[2]) && trail(p[3]) && cp >= 0x10000 && cp <= 0x10FFFF ? 4 : 0;
  }
  return 0;
}

class Normalizer {
 public:
  Normalizer() = default;
  // `user_defined` (may be null or empty) lists symbols copied through unnormalized; it must
  // outlive the normalizer. Throws tsumugi::Error naming `origin` for a broken charsmap.
  Normalizer(const NormalizerSpec& spec, bool treat_whitespace_as_suffix, const Trie* user_defined,
             const std::string& origin);

  // Replaces `out` with the normalized form of `input`.
  void normalize(std::string_view input, std::string& out) const;

 private:
  // One step: how many input bytes the next unit consumes and what it becomes.
  size_t prefix(const char* p, const char* end, std::string_view* rep) const;

  CharsMap map_;
  const Trie* user_ = nullptr;
  bool add_dummy_prefix_ = true, remove_extra_whitespaces_ = true, escape_whitespaces_ = true;
  bool suffix_ = false;
  // Bytes that always stand for themselves: ASCII, no rule and no user symbol starts with them.
  bool plain_[256] = {};
  // The same for 2- and 3-byte characters (U+0080..U+FFFF), one bit each.
  uint64_t plain_bmp_[65536 / 64] = {};
  bool plain_cp(uint32_t cp) const { return (plain_bmp_[cp >> 6] >> (cp & 63)) & 1; }
  // Characters that are only the start of longer rules (A + U+0300 -> À, か + U+3099 -> が): they
  // stand for themselves unless the next byte continues a rule. For ASCII, the map position to
  // continue from (CharsMap::kNoPos if not of this kind); for U+0080..U+FFFF, one bit each.
  size_t ascii_cont_[128];
  uint64_t cont_bmp_[65536 / 64] = {};
  bool cont_cp(uint32_t cp) const { return (cont_bmp_[cp >> 6] >> (cp & 63)) & 1; }
};

}  // namespace tsumugi::tokenizer
