#include "text/words.h"

#include <fmt/format.h>
#include <utf8proc.h>

#include <cstring>

namespace tsumugi::text {

namespace {

inline bool ascii_punct(unsigned char c) {
  return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) || (c >= 0x7B && c <= 0x7E);
}

}  // namespace

bool is_alpha(char32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  auto cat = utf8proc_category(utf8proc_int32_t(c));
  return cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO;
}

bool is_alnum(char32_t c) {
  if (c < 0x80) return is_ascii_alnum(c);
  auto cat = utf8proc_category(utf8proc_int32_t(c));
  return (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO) ||
         (cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO);
}

bool is_punct(char32_t c) {
  if (c < 0x80) return ascii_punct(static_cast<unsigned char>(c));
  auto cat = utf8proc_category(utf8proc_int32_t(c));
  return cat >= UTF8PROC_CATEGORY_PC && cat <= UTF8PROC_CATEGORY_PO;
}

std::string_view trim(std::string_view s) {
  const char* b = s.data();
  const char* e = b + s.size();
  while (b < e) {
    const char* p = b;
    if (!is_space(next_codepoint(p, e))) break;
    b = p;
  }
  while (e > b) {
    const char* q = e;
    if (!is_space(prev_codepoint(b, q))) break;
    e = q;
  }
  return {b, size_t(e - b)};
}

std::string_view trim_punct(std::string_view s) {
  const char* b = s.data();
  const char* e = b + s.size();
  while (b < e) {
    const char* p = b;
    if (!is_punct(next_codepoint(p, e))) break;
    b = p;
  }
  while (e > b) {
    const char* q = e;
    if (!is_punct(prev_codepoint(b, q))) break;
    e = q;
  }
  return {b, size_t(e - b)};
}

bool has_alpha(std::string_view s) {
  const char* p = s.data();
  const char* end = p + s.size();
  while (p < end) {
    auto b = static_cast<unsigned char>(*p);
    if (b < 0x80) {
      if ((b | 0x20) >= 'a' && (b | 0x20) <= 'z') return true;
      ++p;
      continue;
    }
    if (is_alpha(next_codepoint(p, end))) return true;
  }
  return false;
}

bool iequals_ascii(std::string_view s, std::string_view lower) {
  if (s.size() != lower.size()) return false;
  for (size_t i = 0; i < s.size(); ++i)
    if (ascii_lower(s[i]) != lower[i]) return false;
  return true;
}

bool icontains_ascii(std::string_view haystack, std::string_view lower_needle) {
  if (lower_needle.empty()) return true;
  if (haystack.size() < lower_needle.size()) return false;
  char first = lower_needle[0];
  char first_upper = (first >= 'a' && first <= 'z') ? char(first - 32) : first;
  size_t last = haystack.size() - lower_needle.size();
  for (size_t i = 0; i <= last; ++i) {
    char c = haystack[i];
    if (c != first && c != first_upper) continue;
    if (iequals_ascii(haystack.substr(i, lower_needle.size()), lower_needle)) return true;
  }
  return false;
}

size_t count_occurrences(std::string_view s, std::string_view needle) {
  if (needle.empty()) return 0;
  size_t n = 0;
  for (size_t pos = s.find(needle); pos != std::string_view::npos; pos = s.find(needle, pos + needle.size())) ++n;
  return n;
}

std::pair<std::string, std::string> format_pair(double value, double threshold) {
  for (int prec = 2; prec < 8; ++prec) {
    auto a = fmt::format("{:.{}f}", value, prec);
    auto b = fmt::format("{:.{}f}", threshold, prec);
    if (a != b || value == threshold) return {std::move(a), std::move(b)};
  }
  return {fmt::format("{}", value), fmt::format("{}", threshold)};
}

}  // namespace tsumugi::text
