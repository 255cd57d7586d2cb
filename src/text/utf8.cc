#include "text/utf8.h"

#include <simdjson.h>
#include <utf8proc.h>

#include <cstdlib>
#include <cstring>

#include "util/error.h"

namespace tsumugi::text {

bool is_valid_utf8(std::string_view s) { return simdjson::validate_utf8(s.data(), s.size()); }

size_t count_codepoints(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

CharCounts count_classes(std::string_view s) {
  CharCounts c;
  const char* p = s.data();
  const char* end = p + s.size();
  while (p < end) {
    auto b = static_cast<unsigned char>(*p);
    if (b < 0x80) {
      ++p;
      ++c.total;
      ++c.ascii;
      if (is_ascii_alnum(b)) ++c.alnum;
      if (b == ' ' || b == '\t' || b == '\n' || b == '\r') ++c.whitespace;
      continue;
    }
    char32_t cp = next_codepoint(p, end);
    ++c.total;
    if (is_hiragana(cp)) ++c.hiragana;
    else if (is_katakana(cp)) ++c.katakana;
    else if (is_kanji(cp)) ++c.kanji;
    else if (cp == 0x3000) ++c.whitespace;
  }
  return c;
}

bool contains_kana(std::string_view s) {
  // Hiragana and full-width katakana are all E3 81..83 xx; half-width katakana EF BD A6..EF BE 9F;
  // phonetic extensions E3 87 B0..BF. Scanning bytes avoids decoding.
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size();
  for (size_t i = 0; i + 2 < n; ++i) {
    if (p[i] == 0xE3) {
      unsigned char b1 = p[i + 1], b2 = p[i + 2];
      if (b1 == 0x81 && b2 >= 0x81) return true;             // U+3041..U+307F
      if (b1 == 0x82) return true;                           // U+3080..U+30BF
      if (b1 == 0x83) return true;                           // U+30C0..U+30FF
      if (b1 == 0x87 && b2 >= 0xB0) return true;             // U+31F0..U+31FF
    } else if (p[i] == 0xEF) {
      unsigned char b1 = p[i + 1], b2 = p[i + 2];
      if ((b1 == 0xBD && b2 >= 0xA6) || (b1 == 0xBE && b2 <= 0x9F)) return true;
    }
  }
  return false;
}

std::string nfkc(std::string_view s) {
  utf8proc_uint8_t* out = nullptr;
  auto n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()), utf8proc_ssize_t(s.size()), &out,
                        utf8proc_option_t(UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT));
  if (n < 0) throw Error(std::string("NFKC normalization failed: ") + utf8proc_errmsg(n));
  std::string r(reinterpret_cast<char*>(out), size_t(n));
  std::free(out);
  return r;
}

}  // namespace tsumugi::text
