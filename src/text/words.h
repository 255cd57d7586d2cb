#pragma once
// Word-level scanning for the English and general filters: whitespace splitting the
// way Python's str.split() does it, punctuation trimming, Unicode letter tests, and
// ASCII case-insensitive search. Everything works on string_views into the text: no
// per-word allocation.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "text/utf8.h"

namespace tsumugi::text {

// Unicode White_Space (the set Python's str.split() splits on).
inline bool is_space(char32_t c) {
  if (c < 0x80) return c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F);
  return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
         c == 0x202F || c == 0x205F || c == 0x3000;
}

// Letter (general category L*), like Python's str.isalpha() per character.
bool is_alpha(char32_t c);
// Letter or number (L* or N*), like Python's str.isalnum() per character.
bool is_alnum(char32_t c);
// Punctuation: ASCII punctuation and symbols (Python's string.punctuation) or Unicode P*.
bool is_punct(char32_t c);

// Decodes the code point ending just before `end` (valid UTF-8), moving `end` back to its start.
inline char32_t prev_codepoint(const char* begin, const char*& end) {
  const char* p = end - 1;
  while (p > begin && (static_cast<unsigned char>(*p) & 0xC0) == 0x80) --p;
  const char* q = p;
  char32_t c = next_codepoint(q, end);
  end = p;
  return c;
}

// Strips Unicode whitespace from both ends.
std::string_view trim(std::string_view s);
// Strips punctuation (is_punct) from both ends of a word: "(hello)," -> "hello".
std::string_view trim_punct(std::string_view s);

// Calls f(word) for each maximal run of non-whitespace code points.
template <typename F>
void for_each_word(std::string_view s, F&& f) {
  const char* p = s.data();
  const char* end = p + s.size();
  const char* start = nullptr;
  while (p < end) {
    const char* here = p;
    auto b = static_cast<unsigned char>(*p);
    bool space;
    if (b < 0x80) {
      space = b == ' ' || (b >= 0x09 && b <= 0x0D) || (b >= 0x1C && b <= 0x1F);
      ++p;
    } else {
      space = is_space(next_codepoint(p, end));
    }
    if (space) {
      if (start) {
        f(std::string_view(start, size_t(here - start)));
        start = nullptr;
      }
    } else if (!start) {
      start = here;
    }
  }
  if (start) f(std::string_view(start, size_t(end - start)));
}

// True if any code point of s is a letter.
bool has_alpha(std::string_view s);

// ASCII-only lower-casing of one byte.
inline char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? char(c + 32) : c; }
// Case-insensitive (ASCII) equality; `lower` must already be lower-case.
bool iequals_ascii(std::string_view s, std::string_view lower);
// Case-insensitive (ASCII) substring search; `lower_needle` must be lower-case ASCII.
bool icontains_ascii(std::string_view haystack, std::string_view lower_needle);
// Non-overlapping occurrences of needle in s (like Python's str.count).
size_t count_occurrences(std::string_view s, std::string_view needle);

// Formats a measured value and the threshold it is compared with for a filter's reason,
// with two decimals, or more when two decimals would print them equal
// ("0.21" / "0.30", but "0.2996" / "0.3000").
std::pair<std::string, std::string> format_pair(double value, double threshold);

}  // namespace tsumugi::text
