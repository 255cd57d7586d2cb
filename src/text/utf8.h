#pragma once
// UTF-8 decoding and the character classes the Japanese filters count.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace tsumugi::text {

// Decodes one code point at p (input must be valid UTF-8) and advances p.
inline char32_t next_codepoint(const char*& p, const char* end) {
  auto c = static_cast<unsigned char>(*p);
  if (c < 0x80) {
    ++p;
    return c;
  }
  if (c < 0xE0) {
    char32_t cp = ((c & 0x1F) << 6) | (static_cast<unsigned char>(p[1]) & 0x3F);
    p += 2;
    return cp;
  }
  if (c < 0xF0) {
    char32_t cp = ((c & 0x0F) << 12) | ((static_cast<unsigned char>(p[1]) & 0x3F) << 6) |
                  (static_cast<unsigned char>(p[2]) & 0x3F);
    p += 3;
    return cp;
  }
  char32_t cp = ((c & 0x07) << 18) | ((static_cast<unsigned char>(p[1]) & 0x3F) << 12) |
                ((static_cast<unsigned char>(p[2]) & 0x3F) << 6) | (static_cast<unsigned char>(p[3]) & 0x3F);
  p += 4;
  (void)end;
  return cp;
}

// Byte length of the sequence starting with lead byte c (1 for continuation/invalid).
inline size_t sequence_length(unsigned char c) {
  if (c < 0xC0) return 1;
  if (c < 0xE0) return 2;
  if (c < 0xF0) return 3;
  return 4;
}

bool is_valid_utf8(std::string_view s);
// Number of code points in valid UTF-8.
size_t count_codepoints(std::string_view s);
void append_utf8(std::string& out, char32_t cp);

inline bool is_hiragana(char32_t c) { return c >= 0x3041 && c <= 0x309F; }
// Full-width katakana, phonetic extensions and half-width katakana.
inline bool is_katakana(char32_t c) {
  return (c >= 0x30A0 && c <= 0x30FF) || (c >= 0x31F0 && c <= 0x31FF) || (c >= 0xFF66 && c <= 0xFF9F);
}
inline bool is_kanji(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0xF900 && c <= 0xFAFF) ||
         (c >= 0x20000 && c <= 0x2FFFF) || c == 0x3005 /* 々 */;
}
inline bool is_kana(char32_t c) { return is_hiragana(c) || is_katakana(c); }
inline bool is_japanese(char32_t c) { return is_kana(c) || is_kanji(c); }
inline bool is_ascii_alnum(char32_t c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

// Counts of each class over a text, in code points.
struct CharCounts {
  size_t total = 0, hiragana = 0, katakana = 0, kanji = 0, ascii = 0, alnum = 0, whitespace = 0;
  size_t japanese() const { return hiragana + katakana + kanji; }
};
CharCounts count_classes(std::string_view s);

// True if any hiragana or katakana occurs in s (the usual "is this Japanese" line test).
bool contains_kana(std::string_view s);

// Unicode NFKC via utf8proc. Input must be valid UTF-8.
std::string nfkc(std::string_view s);

// Splits on '\n', dropping a trailing '\r' from each line (CRLF input).
template <typename F>
void for_each_line(std::string_view s, F&& f) {
  size_t start = 0;
  while (start <= s.size()) {
    size_t nl = s.find('\n', start);
    size_t stop = nl == std::string_view::npos ? s.size() : nl;
    std::string_view line = s.substr(start, stop - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    f(line);
    if (nl == std::string_view::npos) break;
    start = nl + 1;
  }
}

}  // namespace tsumugi::text
