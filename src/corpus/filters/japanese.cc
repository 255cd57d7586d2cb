// Japanese document filters: the rules of the LLM-jp corpus v1 (built on HojiChar) and of
// the Swallow corpus v1 (Okazaki et al., 2024). Every filter reads the text in one pass over
// its bytes, without regular expressions or per-character allocation.
//
//  line_filter_ja      keep lines with kana and cut URLs and long ASCII runs out of them (LLM-jp
//                      extract_japanese_text, mode = "cut"), or drop such lines whole
//                      (mode = "drop_line"); rewrites the text.
//  accept_japanese     kana within the first N characters (HojiChar AcceptJapanese).
//  char_ratio          hiragana / katakana / Japanese character fractions (Swallow).
//  kuten_run           average characters per 。 (HojiChar DiscardRareKuten).
//  sentence_length_ja  mean / longest sentence length, ellipsis endings (Swallow).
//  ng_words            NG-word dictionaries (see ngwords.h).
//
// Character counts are Unicode code points, as len() in the Python originals.
#include <fmt/format.h>
#include <utf8proc.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <optional>
#include <string_view>

#include "corpus/filters/groups.h"
#include "corpus/filters/ngwords.h"
#include "text/utf8.h"
#include "util/error.h"

namespace tsumugi::corpus {

namespace {

// Decodes one code point. Invalid UTF-8 (which the JSONL reader does not let through) is
// never read past the end: a stray continuation byte, or a sequence cut off by the end of
// the text, reads as one U+FFFD.
inline char32_t next_codepoint(const char*& p, const char* end) {
  const auto c = static_cast<unsigned char>(*p);
  if ((c & 0xC0) == 0x80) {
    ++p;
    return 0xFFFD;
  }
  if (text::sequence_length(c) > size_t(end - p)) {
    do ++p;
    while (p < end && (static_cast<unsigned char>(*p) & 0xC0) == 0x80);
    return 0xFFFD;
  }
  return text::next_codepoint(p, end);
}

std::optional<double> opt_number(Params& p, const std::string& key) {
  if (!p.has(key)) return std::nullopt;
  return p.number(key, 0);
}

void check_fraction(const std::string& type, const std::string& key, const std::optional<double>& v) {
  if (v && !(*v >= 0 && *v <= 1)) fail("{}: '{}' must be in [0, 1], got {}", type, key, *v);
}

void check_range(const std::string& type, const std::string& lo_key, const std::optional<double>& lo,
                 const std::string& hi_key, const std::optional<double>& hi) {
  if (lo && hi && *lo > *hi) fail("{}: '{}' ({}) is greater than '{}' ({})", type, lo_key, *lo, hi_key, *hi);
}

// Formats a measured value next to the bound it violated with enough digits that the two
// never print alike ("0.1999 < 0.2", not "0.2 < 0.2").
std::string fmt_value(double v, double bound) {
  std::string b = fmt::format("{}", bound);
  for (int prec = 3; prec <= 9; ++prec) {
    std::string s = fmt::format("{:.{}g}", v, prec);
    if (s != b) return s;
  }
  return fmt::format("{}", v);
}

// ---------------------------------------------------------------------------------------
// line_filter_ja
//
// LLM-jp v1's extract_japanese_text splits the text on '\n', keeps the lines that match
//   [\p{Script=Hiragana}\p{Script=Katakana}ー]
// deletes from each kept line every match of (Python `regex` module, \w being Unicode)
//   https?://[\w/:%#\$&\?\(\)~\.=\+\-]+
// then every run of >= 100 characters in [\x00-\x7f] (found after the URLs are gone, so the
// ASCII on both sides of a removed URL forms one run), and joins the lines with "".
//
//  mode = "cut"        does exactly that, in place, in one pass over the bytes. A line is
//                      what split('\n') gives, so a CRLF line's '\r' is line content (it
//                      belongs to an ASCII run like any other ASCII character). Rejects
//                      the document when nothing but (Unicode) whitespace is left.
//  mode = "drop_line"  (default) drops a whole line without kana, with a URL (http://,
//                      https:// or www., any case) or with a run of >= max_ascii_run ASCII
//                      characters; here the '\r' of a CRLF is part of the line ending.
//  join = "keep"       (default) a kept line keeps its own line ending; "none" concatenates
//                      the kept lines (LLM-jp: byte for byte with mode = "cut").

// [\p{Script=Hiragana}\p{Script=Katakana}ー] as Python's `regex` module (2026.5.9) sees it,
// enumerated over every code point. ー is Common script but listed explicitly; ・ (U+30FB),
// ｰ (U+FF70), ﾞ ﾟ and the combining voiced marks are Common/Inherited and are not kana here.
inline bool is_llmjp_kana(char32_t c) {
  if (c < 0x3041) return false;
  if (c <= 0x3357)
    return c <= 0x3096 || (c >= 0x309D && c <= 0x309F) || (c >= 0x30A1 && c <= 0x30FA) ||
           (c >= 0x30FC && c <= 0x30FF) || (c >= 0x31F0 && c <= 0x31FF) || (c >= 0x32D0 && c <= 0x32FE) ||
           c >= 0x3300;
  if (c >= 0xFF66 && c <= 0xFF9D) return c != 0xFF70;
  if (c < 0x1AFF0) return false;
  return (c <= 0x1AFFE && c != 0x1AFF4 && c != 0x1AFFC) || (c >= 0x1B000 && c <= 0x1B122) || c == 0x1B132 ||
         (c >= 0x1B150 && c <= 0x1B152) || c == 0x1B155 || (c >= 0x1B164 && c <= 0x1B167) || c == 0x1F200;
}

// Python `regex` \w outside ASCII: Alphabetic, Mark, Decimal_Number, Connector_Punctuation
// and Join_Control, i.e. general categories L*, M*, Nd, Nl, Pc, plus ZWNJ/ZWJ and the
// circled/squared Latin letters (So but Alphabetic). Checked against regex's \w over every
// code point assigned in Unicode 14 (utf8proc's tables are Unicode 15; characters assigned
// later may differ). Kanji, kana, ー and full-width letters/digits are word characters;
// 。、・「」 and U+3000 are not.
inline bool is_word_char(char32_t c) {
  switch (utf8proc_category(utf8proc_int32_t(c))) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_PC:
      return true;
    case UTF8PROC_CATEGORY_SO:
      return (c >= 0x24B6 && c <= 0x24E9) || (c >= 0x1F130 && c <= 0x1F149) || (c >= 0x1F150 && c <= 0x1F169) ||
             (c >= 0x1F170 && c <= 0x1F189);
    case UTF8PROC_CATEGORY_CF:
      return c == 0x200C || c == 0x200D;
    default:
      return false;
  }
}

// ASCII characters of the URL body class [\w/:%#$&?()~.=+-].
constexpr std::array<bool, 128> kUrlAscii = [] {
  std::array<bool, 128> t{};
  for (int c = '0'; c <= '9'; ++c) t[c] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[c] = t[c - 32] = true;
  for (char c : std::string_view("_/:%#$&?()~.=+-")) t[static_cast<unsigned char>(c)] = true;
  return t;
}();

inline bool lower_eq(const unsigned char* p, const unsigned char* e, std::string_view lit) {
  if (size_t(e - p) < lit.size()) return false;
  for (size_t i = 0; i < lit.size(); ++i)
    if ((p[i] >= 'A' && p[i] <= 'Z' ? p[i] + 32 : p[i]) != static_cast<unsigned char>(lit[i])) return false;
  return true;
}

// Python's str.isspace() (what str.strip() removes).
inline bool is_py_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

bool only_py_space(std::string_view s) {
  const char* p = s.data();
  const char* end = p + s.size();
  while (p < end)
    if (!is_py_space(next_codepoint(p, end))) return false;
  return true;
}

class LineFilterJa : public Filter {
 public:
  LineFilterJa(std::string name, bool require_kana, bool drop_urls, int64_t max_ascii_run, bool cut, bool join_keep)
      : Filter(std::move(name)),
        require_kana_(require_kana),
        drop_urls_(drop_urls),
        cut_(cut),
        join_keep_(join_keep),
        max_ascii_run_(max_ascii_run > 0 ? size_t(max_ascii_run) : SIZE_MAX) {}

  bool apply(Document& doc, std::string& reason) const override {
    return cut_ ? apply_cut(doc.text, reason) : apply_drop(doc.text, reason);
  }

 private:
  enum Verdict { kKeep = 0, kNoKana = 1, kUrl = 2, kAscii = 3 };

  bool apply_drop(std::string& t, std::string& reason) const {
    auto* base = reinterpret_cast<unsigned char*>(t.data());
    const size_t n = t.size();
    size_t w = 0, pos = 0;
    size_t lines = 0, kept = 0, dropped[4] = {0, 0, 0, 0};
    while (pos < n) {
      const void* nlp = std::memchr(base + pos, '\n', n - pos);
      size_t stop = nlp ? size_t(static_cast<const unsigned char*>(nlp) - base) : n;
      size_t next = nlp ? stop + 1 : n;
      size_t content_end = stop;  // the '\r' of a CRLF is the line ending, not content
      if (content_end > pos && base[content_end - 1] == '\r') --content_end;
      ++lines;
      Verdict v = check(base + pos, base + content_end);
      if (v == kKeep) {
        ++kept;
        const size_t keep_end = join_keep_ ? next : content_end;
        if (w != pos) std::memmove(base + w, base + pos, keep_end - pos);
        w += keep_end - pos;
      } else {
        ++dropped[v];
      }
      pos = next;
    }
    if (kept == 0) {
      if (lines == 0) {
        reason = "no line left (empty text)";
      } else {
        reason = fmt::format("no line left ({} line{}:", lines, lines == 1 ? "" : "s");
        const char* sep = " ";
        if (dropped[kNoKana]) reason += fmt::format("{}{} without kana", sep, dropped[kNoKana]), sep = ", ";
        if (dropped[kUrl]) reason += fmt::format("{}{} with a URL", sep, dropped[kUrl]), sep = ", ";
        if (dropped[kAscii])
          reason += fmt::format("{}{} with an ASCII run >= {}", sep, dropped[kAscii], max_ascii_run_);
        reason += ")";
      }
      return false;
    }
    if (w == 0) {  // only empty lines kept (require_kana = false, join = "none")
      reason = fmt::format("no text left ({} empty line{} kept)", kept, kept == 1 ? "" : "s");
      return false;
    }
    if (w != n) t.resize(w);
    return true;
  }

  Verdict check(const unsigned char* p, const unsigned char* e) const {
    bool kana = !require_kana_;
    size_t run = 0;
    while (p < e) {
      const unsigned char c = *p;
      if (c < 0x80) {
        if (++run >= max_ascii_run_) return kAscii;
        if (drop_urls_ && ((c | 0x20) == 'h' || (c | 0x20) == 'w') &&
            (lower_eq(p, e, "http://") || lower_eq(p, e, "https://") || lower_eq(p, e, "www.")))
          return kUrl;
        ++p;
        continue;
      }
      run = 0;
      if (kana || (c != 0xE3 && c != 0xEF && c != 0xF0)) {  // every kana code point starts E3, EF or F0
        p += std::min(text::sequence_length(c), size_t(e - p));
        continue;
      }
      const char* q = reinterpret_cast<const char*>(p);
      kana = is_llmjp_kana(next_codepoint(q, reinterpret_cast<const char*>(e)));
      p = reinterpret_cast<const unsigned char*>(q);
    }
    return kana ? kKeep : kNoKana;
  }

  // End of the URL (https?://[\w/:%#$&?()~.=+-]+, case-sensitive) starting at b[p], or p
  // when none starts there. Sets `kana` when the URL contains kana: LLM-jp tests the line
  // for kana before cutting, so kana eaten by a URL still keeps the line.
  static size_t url_end(const unsigned char* b, size_t p, size_t stop, bool& kana) {
    if (stop - p < 8 || std::memcmp(b + p, "http", 4) != 0) return p;
    size_t q = p + 4;
    if (b[q] == 's') ++q;
    if (stop - q < 4 || std::memcmp(b + q, "://", 3) != 0) return p;
    q += 3;
    const size_t body = q;
    const char* end = reinterpret_cast<const char*>(b + stop);
    while (q < stop) {
      const unsigned char c = b[q];
      if (c < 0x80) {
        if (!kUrlAscii[c]) break;
        ++q;
        continue;
      }
      const char* s = reinterpret_cast<const char*>(b + q);
      const char32_t cp = next_codepoint(s, end);
      if (!is_word_char(cp)) break;
      if (!kana && is_llmjp_kana(cp)) kana = true;
      q = size_t(reinterpret_cast<const unsigned char*>(s) - b);
    }
    return q == body ? p : q;
  }

  bool apply_cut(std::string& t, std::string& reason) const {
    if (t.empty()) {
      reason = "empty text";
      return false;
    }
    auto* b = reinterpret_cast<unsigned char*>(t.data());
    const size_t n = t.size();
    size_t w = 0, r = 0, lines = 0, kept = 0;
    // Writes never overtake reads (w <= p), so the text is rewritten in place.
    for (;;) {
      const void* nlp = std::memchr(b + r, '\n', n - r);
      const size_t stop = nlp ? size_t(static_cast<const unsigned char*>(nlp) - b) : n;
      const char* stop_c = reinterpret_cast<const char*>(b + stop);
      ++lines;
      const size_t line_w = w;
      bool kana = !require_kana_;
      size_t run = 0, run_w = 0;  // the ASCII run being written: length, and where it starts
      size_t p = r;
      while (p < stop) {
        const unsigned char c = b[p];
        if (c < 0x80) {
          if (c == 'h' && drop_urls_) {
            const size_t e = url_end(b, p, stop, kana);
            if (e != p) {  // cut out; the ASCII before and after joins into one run
              p = e;
              continue;
            }
          }
          if (run++ == 0) run_w = w;
          b[w++] = c;
          ++p;
          continue;
        }
        if (run >= max_ascii_run_) w = run_w;
        run = 0;
        const char* q = reinterpret_cast<const char*>(b + p);
        const char32_t cp = next_codepoint(q, stop_c);
        const size_t len = size_t(reinterpret_cast<const unsigned char*>(q) - (b + p));
        if (!kana && is_llmjp_kana(cp)) kana = true;
        if (w != p) std::memmove(b + w, b + p, len);
        w += len;
        p += len;
      }
      if (run >= max_ascii_run_) w = run_w;
      if (kana) {
        ++kept;
        if (nlp && join_keep_) b[w++] = '\n';  // w <= stop: this overwrites only read bytes
      } else {
        w = line_w;
      }
      if (!nlp) break;
      r = stop + 1;
    }
    t.resize(w);
    if (kept == 0) {
      reason = fmt::format("no line with kana ({} line{})", lines, lines == 1 ? "" : "s");
      return false;
    }
    if (only_py_space(t)) {
      reason = fmt::format("only whitespace left after cutting URLs and ASCII runs ({} of {} line{} kept)", kept,
                           lines, lines == 1 ? "" : "s");
      return false;
    }
    return true;
  }

  bool require_kana_, drop_urls_, cut_, join_keep_;
  size_t max_ascii_run_;
};

std::unique_ptr<Filter> make_line_filter_ja(const std::string& name, Params& p) {
  bool require_kana = p.boolean("require_kana", true);
  bool drop_urls = p.boolean("drop_urls", true);
  int64_t max_run = p.integer("max_ascii_run", 100);
  if (max_run < 0) fail("line_filter_ja: 'max_ascii_run' must be >= 0 (0 disables), got {}", max_run);
  std::string mode = p.string("mode", "drop_line");
  if (mode != "drop_line" && mode != "cut")
    fail("line_filter_ja: 'mode' must be \"drop_line\" or \"cut\", got \"{}\"", mode);
  std::string join = p.string("join", "keep");
  if (join != "keep" && join != "none") fail("line_filter_ja: 'join' must be \"keep\" or \"none\", got \"{}\"", join);
  return std::make_unique<LineFilterJa>(name, require_kana, drop_urls, max_run, mode == "cut", join == "keep");
}

// ---------------------------------------------------------------------------------------
// accept_japanese

// HojiChar's [ぁ-ん] and [ァ-ン]: U+3041..U+3093 and U+30A1..U+30F3.
inline bool is_hojichar_kana(char32_t c) { return (c >= 0x3041 && c <= 0x3093) || (c >= 0x30A1 && c <= 0x30F3); }

class AcceptJapanese : public Filter {
 public:
  AcceptJapanese(std::string name, size_t within) : Filter(std::move(name)), within_(within) {}

  bool apply(Document& doc, std::string& reason) const override {
    const char* p = doc.text.data();
    const char* end = p + doc.text.size();
    for (size_t i = 0; i < within_ && p < end; ++i) {
      if (static_cast<unsigned char>(*p) < 0x80) {
        ++p;
        continue;
      }
      if (is_hojichar_kana(next_codepoint(p, end))) return true;
    }
    reason = fmt::format("no hiragana/katakana in the first {} chars", within_);
    return false;
  }

 private:
  size_t within_;
};

std::unique_ptr<Filter> make_accept_japanese(const std::string& name, Params& p) {
  int64_t within = p.integer("within_chars", 50);
  if (within < 1) fail("accept_japanese: 'within_chars' must be >= 1, got {}", within);
  return std::make_unique<AcceptJapanese>(name, size_t(within));
}

// ---------------------------------------------------------------------------------------
// char_ratio

inline bool is_ja_punct(char32_t c) {
  return c == 0x3001 || c == 0xFF0C || c == 0x3002 || c == 0xFF0E || c == 0xFF01 || c == 0xFF1F;  // 、，。．！？
}

struct Bound {
  const char* what;
  std::optional<double> lo, hi;
};

class CharRatio : public Filter {
 public:
  CharRatio(std::string name, Bound hira, Bound kata, Bound ja, std::optional<double> min_ja_chars,
            bool denom_japanese, bool punct_is_japanese)
      : Filter(std::move(name)),
        hira_(hira),
        kata_(kata),
        ja_(ja),
        min_ja_chars_(min_ja_chars),
        denom_japanese_(denom_japanese),
        punct_(punct_is_japanese) {}

  bool apply(Document& doc, std::string& reason) const override {
    size_t total = 0, hira = 0, kata = 0, kanji = 0, punct = 0;
    const char* p = doc.text.data();
    const char* end = p + doc.text.size();
    while (p < end) {
      ++total;
      if (static_cast<unsigned char>(*p) < 0x80) {
        ++p;
        continue;
      }
      char32_t c = next_codepoint(p, end);
      if (text::is_hiragana(c)) ++hira;
      else if (text::is_katakana(c)) ++kata;
      else if (text::is_kanji(c)) ++kanji;
      else if (is_ja_punct(c)) ++punct;
    }
    const size_t ja = hira + kata + kanji + (punct_ ? punct : 0);
    const size_t kana_denom = denom_japanese_ ? ja : total;
    // A fraction over nothing is 0 (as in Swallow), so an empty text fails every minimum.
    auto frac = [](size_t a, size_t b) { return b ? double(a) / double(b) : 0.0; };
    if (min_ja_chars_ && double(ja) < *min_ja_chars_) {
      reason = fmt::format("Japanese chars {} < {}", ja, *min_ja_chars_);
      return false;
    }
    const char* over = denom_japanese_ ? " of Japanese chars" : "";
    return check(hira_, frac(hira, kana_denom), over, reason) && check(kata_, frac(kata, kana_denom), over, reason) &&
           check(ja_, frac(ja, total), "", reason);
  }

 private:
  static bool check(const Bound& b, double v, const char* over, std::string& reason) {
    if (b.lo && v < *b.lo) {
      reason = fmt::format("{} fraction{} {} < {}", b.what, over, fmt_value(v, *b.lo), *b.lo);
      return false;
    }
    if (b.hi && v > *b.hi) {
      reason = fmt::format("{} fraction{} {} > {}", b.what, over, fmt_value(v, *b.hi), *b.hi);
      return false;
    }
    return true;
  }

  Bound hira_, kata_, ja_;
  std::optional<double> min_ja_chars_;
  bool denom_japanese_, punct_;
};

std::unique_ptr<Filter> make_char_ratio(const std::string& name, Params& p) {
  const std::string t = "char_ratio";
  auto bound = [&](const char* what, const std::string& key) {
    Bound b{what, opt_number(p, "min_" + key), opt_number(p, "max_" + key)};
    check_fraction(t, "min_" + key, b.lo);
    check_fraction(t, "max_" + key, b.hi);
    check_range(t, "min_" + key, b.lo, "max_" + key, b.hi);
    return b;
  };
  Bound hira = bound("hiragana", "hiragana"), kata = bound("katakana", "katakana"), ja = bound("Japanese", "japanese");
  auto min_ja_chars = opt_number(p, "min_japanese_chars");
  std::string denom = p.string("denominator", "all");
  if (denom != "all" && denom != "japanese")
    fail("char_ratio: 'denominator' must be \"all\" or \"japanese\", got \"{}\"", denom);
  bool punct = p.boolean("punctuation_is_japanese", false);
  if (!hira.lo && !hira.hi && !kata.lo && !kata.hi && !ja.lo && !ja.hi && !min_ja_chars)
    fail("char_ratio: no bound given (min_/max_ hiragana, katakana, japanese, or min_japanese_chars)");
  return std::make_unique<CharRatio>(name, hira, kata, ja, min_ja_chars, denom == "japanese", punct);
}

// ---------------------------------------------------------------------------------------
// kuten_run

class KutenRun : public Filter {
 public:
  KutenRun(std::string name, std::optional<double> lo, std::optional<double> hi)
      : Filter(std::move(name)), lo_(lo), hi_(hi) {}

  bool apply(Document& doc, std::string& reason) const override {
    const auto* p = reinterpret_cast<const unsigned char*>(doc.text.data());
    const size_t n = doc.text.size();
    // Two branch-free loops the compiler vectorizes: code points, and 。 (E3 80 82).
    size_t chars = text::count_codepoints(doc.text), kuten = 0;
    for (size_t i = 0; i + 2 < n; ++i) kuten += (p[i] == 0xE3) & (p[i + 1] == 0x80) & (p[i + 2] == 0x82);
    if (chars == 0) return true;  // HojiChar: 0 kuten < 0 / max is false
    // HojiChar rejects when kuten < chars / max, i.e. when chars / kuten > max.
    if (hi_ && double(chars) > double(kuten) * *hi_) {
      if (kuten == 0)
        reason = fmt::format("no '\u3002' in {} chars (average run > {})", chars, *hi_);
      else
        reason = fmt::format("average run {} chars per '\u3002' > {} ({} chars, {} '\u3002')",
                             fmt_value(double(chars) / double(kuten), *hi_), *hi_, chars, kuten);
      return false;
    }
    if (lo_ && kuten > 0 && double(chars) < double(kuten) * *lo_) {
      reason = fmt::format("average run {} chars per '\u3002' < {} ({} chars, {} '\u3002')",
                           fmt_value(double(chars) / double(kuten), *lo_), *lo_, chars, kuten);
      return false;
    }
    return true;
  }

 private:
  std::optional<double> lo_, hi_;
};

std::unique_ptr<Filter> make_kuten_run(const std::string& name, Params& p) {
  std::optional<double> hi = p.number("max_average_run", 250);
  auto lo = opt_number(p, "min_average_run");
  if (*hi <= 0) fail("kuten_run: 'max_average_run' must be > 0, got {}", *hi);
  if (lo && *lo < 0) fail("kuten_run: 'min_average_run' must be >= 0, got {}", *lo);
  check_range("kuten_run", "min_average_run", lo, "max_average_run", hi);
  return std::make_unique<KutenRun>(name, lo, hi);
}

// ---------------------------------------------------------------------------------------
// sentence_length_ja

// Sentence terminators of Swallow's re_sentence: 。．！？!?
inline bool is_terminator(char32_t c) {
  return c == 0x3002 || c == 0xFF0E || c == 0xFF01 || c == 0xFF1F || c == '!' || c == '?';
}

class SentenceLengthJa : public Filter {
 public:
  SentenceLengthJa(std::string name, std::optional<double> min_mean, std::optional<double> max_mean,
                   std::optional<int64_t> max_sentence, std::optional<double> max_ellipsis)
      : Filter(std::move(name)),
        min_mean_(min_mean),
        max_mean_(max_mean),
        max_sentence_(max_sentence),
        max_ellipsis_(max_ellipsis) {}

  bool apply(Document& doc, std::string& reason) const override {
    // Swallow: each line (split on '\n') is cut into sentences by [^。．！？!?]+[。．！？!?]?;
    // a terminator with no text before it belongs to no sentence. A CRLF line's '\r' is
    // treated as part of the line ending and not counted.
    size_t sentences = 0, total = 0, longest = 0, ellipsis = 0;
    size_t cur = 0;          // chars in the sentence being read (0 = none)
    char32_t last_ns = 0;    // its last non-space char
    auto finish = [&](size_t len) {
      ++sentences;
      total += len;
      if (len > longest) longest = len;
      if (last_ns == 0x30FB || last_ns == 0x2026) ++ellipsis;  // ・ …
      cur = 0;
      last_ns = 0;
    };
    const char* p = doc.text.data();
    const char* end = p + doc.text.size();
    while (p < end) {
      char32_t c = next_codepoint(p, end);
      if (c == '\n' || (c == '\r' && (p == end || *p == '\n'))) {
        if (cur) finish(cur);
        continue;
      }
      if (is_terminator(c)) {
        if (cur) {
          last_ns = c;
          finish(cur + 1);
        }
        continue;
      }
      ++cur;
      if (!is_py_space(c)) last_ns = c;
    }
    if (cur) finish(cur);

    if (sentences == 0) {
      if (min_mean_ && *min_mean_ > 0) {
        reason = "no sentence";
        return false;
      }
      return true;
    }
    const double mean = double(total) / double(sentences);
    if (min_mean_ && mean < *min_mean_) {
      reason = fmt::format("mean sentence length {} < {} ({} sentence{})", fmt_value(mean, *min_mean_),
                           *min_mean_, sentences, sentences == 1 ? "" : "s");
      return false;
    }
    if (max_mean_ && mean > *max_mean_) {
      reason = fmt::format("mean sentence length {} > {} ({} sentence{})", fmt_value(mean, *max_mean_),
                           *max_mean_, sentences, sentences == 1 ? "" : "s");
      return false;
    }
    if (max_sentence_ && int64_t(longest) > *max_sentence_) {
      reason = fmt::format("longest sentence {} chars > {}", longest, *max_sentence_);
      return false;
    }
    if (max_ellipsis_) {
      double f = double(ellipsis) / double(sentences);
      if (f > *max_ellipsis_) {
        reason = fmt::format("sentences ending with an ellipsis {} > {} ({} of {})", fmt_value(f, *max_ellipsis_),
                             *max_ellipsis_, ellipsis, sentences);
        return false;
      }
    }
    return true;
  }

 private:
  std::optional<double> min_mean_, max_mean_;
  std::optional<int64_t> max_sentence_;
  std::optional<double> max_ellipsis_;
};

std::unique_ptr<Filter> make_sentence_length_ja(const std::string& name, Params& p) {
  const std::string t = "sentence_length_ja";
  std::optional<double> min_mean = p.number("min_mean", 20), max_mean = p.number("max_mean", 90);
  std::optional<int64_t> max_sentence;
  if (p.has("max_sentence_chars")) {
    max_sentence = p.integer("max_sentence_chars", 0);
    if (*max_sentence < 1) fail("{}: 'max_sentence_chars' must be >= 1, got {}", t, *max_sentence);
  }
  auto max_ellipsis = opt_number(p, "max_ellipsis_fraction");
  check_fraction(t, "max_ellipsis_fraction", max_ellipsis);
  if (*min_mean < 0) fail("{}: 'min_mean' must be >= 0, got {}", t, *min_mean);
  check_range(t, "min_mean", min_mean, "max_mean", max_mean);
  return std::make_unique<SentenceLengthJa>(name, min_mean, max_mean, max_sentence, max_ellipsis);
}

}  // namespace

void add_japanese_filters(std::vector<FilterSpec>& specs) {
  specs.push_back({"line_filter_ja",
                   "keep lines with hiragana/katakana; mode=\"cut\" cuts URLs and runs of >= max_ascii_run ASCII "
                   "chars out of them (LLM-jp v1 extract_japanese_text), mode=\"drop_line\" (default) drops such "
                   "lines; join=\"keep\"|\"none\" line endings; reject when nothing is left",
                   make_line_filter_ja});
  specs.push_back({"accept_japanese",
                   "keep documents with hiragana/katakana within the first within_chars chars (HojiChar "
                   "AcceptJapanese)",
                   make_accept_japanese});
  specs.push_back({"char_ratio",
                   "bounds on the hiragana, katakana and Japanese (kana+kanji) character fractions (Swallow)",
                   make_char_ratio});
  specs.push_back({"kuten_run",
                   "reject when chars per '\u3002' exceed max_average_run (HojiChar DiscardRareKuten; LLM-jp: 250)",
                   make_kuten_run});
  specs.push_back({"sentence_length_ja",
                   "bounds on the mean (and longest) sentence length, sentences cut at \u3002\uff0e\uff01\uff1f!? "
                   "and line breaks (Swallow: 20..90, longest <= 200)",
                   make_sentence_length_ja});
  add_ng_words_filter(specs);
}

}  // namespace tsumugi::corpus
