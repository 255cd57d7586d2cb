// English web-text rules: Gopher quality filter (Rae et al. 2021) and C4 line cleaning
// (Raffel et al. 2020).
#include <fmt/format.h>

#include <functional>
#include <string>
#include <unordered_set>

#include "corpus/filters/groups.h"
#include "text/utf8.h"
#include "text/words.h"
#include "util/error.h"
#include "util/resources.h"

namespace tsumugi::corpus {

namespace {

using text::format_pair;

struct SvHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using WordSet = std::unordered_set<std::string, SvHash, std::equal_to<>>;

// Words of an embedded list: one per line, '#' starts a comment line.
std::vector<std::string> load_word_list(std::string_view resource) {
  auto data = resources::find(resource);
  if (!data) fail("embedded word list '{}' is missing", resource);
  std::vector<std::string> words;
  text::for_each_line(*data, [&](std::string_view line) {
    line = text::trim(line);
    if (line.empty() || line.front() == '#') return;
    words.emplace_back(line);
  });
  return words;
}

// ---------------------------------------------------------------------------------------
// gopher_quality (Rae et al. 2021, Appendix A.1.1 "Quality filters")
//
// Words are whitespace-separated tokens with leading/trailing punctuation stripped;
// tokens that are punctuation only ("-", "...", "|") are not words. Lines are the
// non-blank lines.

bool is_bullet(char32_t c) {
  switch (c) {
    case '-': case '*':
    case 0x2022: case 0x2023: case 0x2043: case 0x25E6: case 0x25CF: case 0x25CB: case 0x25AA:
    case 0x25AB: case 0x25A0: case 0x25A1: case 0x25C6: case 0x25C7: case 0x25BA: case 0x25B6:
    case 0x27A2: case 0x2713: case 0x2714: case 0x30FB:
      return true;
    default:
      return false;
  }
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

class GopherQualityFilter : public Filter {
 public:
  struct Config {
    int64_t min_words = 50, max_words = 100000;
    double min_mean_word_length = 3, max_mean_word_length = 10;
    double max_symbol_word_ratio = 0.1;
    double max_bullet_lines_frac = 0.9, max_ellipsis_lines_frac = 0.3;
    double min_alpha_words_frac = 0.8;
    int64_t min_stop_words = 2;
    std::vector<std::string> stop_words;
  };

  GopherQualityFilter(std::string name, Config c) : Filter(std::move(name)), c_(std::move(c)) {
    for (auto& w : c_.stop_words) {
      std::string lw;
      for (char ch : w) lw += text::ascii_lower(ch);
      max_stop_len_ = std::max(max_stop_len_, lw.size());
      stop_.insert(std::move(lw));
    }
  }

  bool apply(Document& doc, std::string& reason) const override {
    std::string_view s = doc.text;
    size_t words = 0, word_chars = 0, alpha_words = 0, stop = 0;
    char buf[64];
    text::for_each_word(s, [&](std::string_view tok) {
      std::string_view w = text::trim_punct(tok);
      if (w.empty()) return;
      ++words;
      word_chars += text::count_codepoints(w);
      if (text::has_alpha(w)) ++alpha_words;
      if (w.size() <= max_stop_len_ && w.size() <= sizeof buf) {
        for (size_t i = 0; i < w.size(); ++i) buf[i] = text::ascii_lower(w[i]);
        if (stop_.find(std::string_view(buf, w.size())) != stop_.end()) ++stop;
      }
    });

    if (int64_t(words) < c_.min_words) {
      reason = fmt::format("{} words < min_words {}", words, c_.min_words);
      return false;
    }
    if (int64_t(words) > c_.max_words) {
      reason = fmt::format("{} words > max_words {}", words, c_.max_words);
      return false;
    }
    if (words > 0) {
      double mean = double(word_chars) / double(words);
      if (mean < c_.min_mean_word_length) {
        auto [a, b] = format_pair(mean, c_.min_mean_word_length);
        reason = fmt::format("mean word length {} < {}", a, b);
        return false;
      }
      if (mean > c_.max_mean_word_length) {
        auto [a, b] = format_pair(mean, c_.max_mean_word_length);
        reason = fmt::format("mean word length {} > {}", a, b);
        return false;
      }
      // "symbol-to-word ratio greater than 0.1 for either the hash symbol or the ellipsis"
      double hashes = double(std::count(s.begin(), s.end(), '#')) / double(words);
      if (hashes > c_.max_symbol_word_ratio) {
        auto [a, b] = format_pair(hashes, c_.max_symbol_word_ratio);
        reason = fmt::format("hash-to-word ratio {} > {}", a, b);
        return false;
      }
      double ellipses =
          double(text::count_occurrences(s, "...") + text::count_occurrences(s, "\u2026")) / double(words);
      if (ellipses > c_.max_symbol_word_ratio) {
        auto [a, b] = format_pair(ellipses, c_.max_symbol_word_ratio);
        reason = fmt::format("ellipsis-to-word ratio {} > {}", a, b);
        return false;
      }
    }

    size_t lines = 0, bullets = 0, ellipsis_lines = 0;
    text::for_each_line(s, [&](std::string_view line) {
      std::string_view t = text::trim(line);
      if (t.empty()) return;
      ++lines;
      const char* p = t.data();
      if (is_bullet(text::next_codepoint(p, t.data() + t.size()))) ++bullets;
      if (ends_with(t, "...") || ends_with(t, "\u2026")) ++ellipsis_lines;
    });
    if (lines > 0) {
      double f = double(bullets) / double(lines);
      if (f > c_.max_bullet_lines_frac) {
        auto [a, b] = format_pair(f, c_.max_bullet_lines_frac);
        reason = fmt::format("bullet-line fraction {} > {}", a, b);
        return false;
      }
      f = double(ellipsis_lines) / double(lines);
      if (f > c_.max_ellipsis_lines_frac) {
        auto [a, b] = format_pair(f, c_.max_ellipsis_lines_frac);
        reason = fmt::format("ellipsis-line fraction {} > {}", a, b);
        return false;
      }
    }
    if (words > 0) {
      double f = double(alpha_words) / double(words);
      if (f < c_.min_alpha_words_frac) {
        auto [a, b] = format_pair(f, c_.min_alpha_words_frac);
        reason = fmt::format("alphabetic-word fraction {} < {}", a, b);
        return false;
      }
    }
    if (int64_t(stop) < c_.min_stop_words) {
      reason = fmt::format("{} stop words < min_stop_words {}", stop, c_.min_stop_words);
      return false;
    }
    return true;
  }

 private:
  Config c_;
  WordSet stop_;
  size_t max_stop_len_ = 0;
};

std::unique_ptr<Filter> make_gopher_quality(const std::string& name, Params& p) {
  GopherQualityFilter::Config c;
  c.min_words = p.integer("min_words", 50);
  c.max_words = p.integer("max_words", 100000);
  c.min_mean_word_length = p.number("min_mean_word_length", 3);
  c.max_mean_word_length = p.number("max_mean_word_length", 10);
  c.max_symbol_word_ratio = p.number("max_symbol_word_ratio", 0.1);
  c.max_bullet_lines_frac = p.number("max_bullet_lines_frac", 0.9);
  c.max_ellipsis_lines_frac = p.number("max_ellipsis_lines_frac", 0.3);
  c.min_alpha_words_frac = p.number("min_alpha_words_frac", 0.8);
  c.min_stop_words = p.integer("min_stop_words", 2);
  if (p.has("stop_words")) c.stop_words = p.strings("stop_words", {});
  else c.stop_words = load_word_list("wordlists/stopwords_en.txt");
  if (c.max_words < c.min_words) fail("filter 'gopher_quality': max_words {} < min_words {}", c.max_words, c.min_words);
  return std::make_unique<GopherQualityFilter>(name, std::move(c));
}

// ---------------------------------------------------------------------------------------
// c4_lines (Raffel et al. 2020, Section 2.2; reference implementation
// tensorflow_datasets/text/c4_utils.py clean_page)

thread_local std::string tl_c4_out, tl_c4_line, tl_c4_lower;

// Removes Wikipedia-style citation markers: "[12]", "[]", "[edit]", "[citation needed]".
std::string_view remove_citations(std::string_view line, std::string& buf) {
  if (line.find('[') == std::string_view::npos) return line;
  buf.clear();
  size_t i = 0;
  while (i < line.size()) {
    if (line[i] == '[') {
      size_t j = i + 1;
      while (j < line.size() && line[j] >= '0' && line[j] <= '9') ++j;
      if (j < line.size() && line[j] == ']') {
        i = j + 1;
        continue;
      }
      std::string_view rest = line.substr(i);
      if (rest.substr(0, 6) == "[edit]") {
        i += 6;
        continue;
      }
      if (rest.substr(0, 17) == "[citation needed]") {
        i += 17;
        continue;
      }
    }
    buf += line[i++];
  }
  return buf;
}

inline bool closing_char(unsigned char c) { return c == '"' || c == '\'' || c == ')' || c == ']'; }

// Sentences in a kept line, counted by end marks as the C4 reference describes ("a
// simple count of end marks"): a run of . ! ? (plus closing quotes/brackets) that ends
// the line or is followed by whitespace and a word not starting in lower case ("e.g. the"
// is no boundary). At least 1.
size_t count_sentences(std::string_view line) {
  size_t n = 0, i = 0;
  while (i < line.size()) {
    char c = line[i];
    if (c != '.' && c != '!' && c != '?') {
      ++i;
      continue;
    }
    size_t k = i;
    while (k < line.size() && (line[k] == '.' || line[k] == '!' || line[k] == '?')) ++k;
    for (;;) {
      if (k < line.size() && closing_char(static_cast<unsigned char>(line[k]))) {
        ++k;
      } else if (line.substr(k, 3) == "\u201D" || line.substr(k, 3) == "\u2019") {
        k += 3;
      } else {
        break;
      }
    }
    if (k >= line.size()) {
      ++n;
    } else if (line[k] == ' ' || line[k] == '\t') {
      size_t m = k;
      while (m < line.size() && (line[m] == ' ' || line[m] == '\t')) ++m;
      if (m < line.size() && !(line[m] >= 'a' && line[m] <= 'z')) ++n;
    }
    i = k;
  }
  return n == 0 ? 1 : n;
}

const char* const kPolicySubstrings[] = {"terms of use",   "privacy policy", "cookie policy",
                                         "uses cookies",   "use of cookies", "use cookies"};

class C4LinesFilter : public Filter {
 public:
  struct Config {
    bool require_terminal_punct = true;
    std::vector<std::string> end_marks{".", "?", "!", "\""};
    int64_t min_words_per_line = 5;
    int64_t min_sentences = 3;
    bool remove_citations = true;
    bool drop_javascript_lines = true;
    bool reject_lorem_ipsum = true;
    bool reject_curly_braces = true;
    bool drop_policy_lines = true;
  };

  C4LinesFilter(std::string name, Config c) : Filter(std::move(name)), c_(std::move(c)) {}

  bool apply(Document& doc, std::string& reason) const override {
    std::string_view s = doc.text;
    auto& out = tl_c4_out;
    auto& lower = tl_c4_lower;
    out.clear();
    size_t kept = 0, sentences = 0;
    size_t start = 0;
    for (;;) {
      size_t nl = s.find('\n', start);
      size_t stop = nl == std::string_view::npos ? s.size() : nl;
      std::string_view line = text::trim(s.substr(start, stop - start));
      if (c_.remove_citations) line = text::trim(remove_citations(line, tl_c4_line));
      Verdict v = judge_line(line, lower, reason);
      if (v == Verdict::RejectDocument) return false;
      if (v == Verdict::Keep) {
        if (kept++) out += '\n';
        out.append(line);
        sentences += count_sentences(line);
      }
      if (nl == std::string_view::npos) break;
      start = nl + 1;
    }
    if (kept == 0) {
      reason = "no lines left after C4 line filtering";
      return false;
    }
    if (c_.min_sentences > 0 && int64_t(sentences) < c_.min_sentences) {
      reason = fmt::format("{} sentences < min_sentences {}", sentences, c_.min_sentences);
      return false;
    }
    doc.text.swap(out);
    return true;
  }

 private:
  enum class Verdict { Keep, Drop, RejectDocument };

  // Line rules in the reference's order; the document-level rules (lorem ipsum, '{') are
  // only looked for in lines that passed the punctuation and word-count rules, as there.
  Verdict judge_line(std::string_view line, std::string& lower, std::string& reason) const {
    if (line.empty()) return Verdict::Drop;
    if (c_.require_terminal_punct) {
      bool terminal = false;
      for (const auto& m : c_.end_marks)
        if (ends_with(line, m)) terminal = true;
      if (!terminal || ends_with(line, "...")) return Verdict::Drop;
    }
    if (c_.min_words_per_line > 0) {
      int64_t words = 0;
      text::for_each_word(line, [&](std::string_view) { ++words; });
      if (words < c_.min_words_per_line) return Verdict::Drop;
    }
    lower.assign(line);
    for (auto& ch : lower) ch = text::ascii_lower(ch);
    if (c_.reject_lorem_ipsum && lower.find("lorem ipsum") != std::string::npos) {
      reason = "contains \"lorem ipsum\"";
      return Verdict::RejectDocument;
    }
    if (c_.drop_javascript_lines && lower.find("javascript") != std::string::npos) return Verdict::Drop;
    if (c_.reject_curly_braces && line.find('{') != std::string_view::npos) {
      reason = "contains '{' (likely code)";
      return Verdict::RejectDocument;
    }
    if (c_.drop_policy_lines)
      for (const char* p : kPolicySubstrings)
        if (lower.find(p) != std::string::npos) return Verdict::Drop;
    return Verdict::Keep;
  }

  Config c_;
};

std::unique_ptr<Filter> make_c4_lines(const std::string& name, Params& p) {
  C4LinesFilter::Config c;
  c.require_terminal_punct = p.boolean("require_terminal_punct", true);
  c.end_marks = p.strings("end_marks", c.end_marks);
  c.min_words_per_line = p.integer("min_words_per_line", 5);
  c.min_sentences = p.integer("min_sentences", 3);
  c.remove_citations = p.boolean("remove_citations", true);
  c.drop_javascript_lines = p.boolean("drop_javascript_lines", true);
  c.reject_lorem_ipsum = p.boolean("reject_lorem_ipsum", true);
  c.reject_curly_braces = p.boolean("reject_curly_braces", true);
  c.drop_policy_lines = p.boolean("drop_policy_lines", true);
  for (const auto& m : c.end_marks)
    if (m.empty()) fail("filter 'c4_lines': end_marks must not contain an empty string");
  return std::make_unique<C4LinesFilter>(name, std::move(c));
}

}  // namespace

void add_english_filters(std::vector<FilterSpec>& specs) {
  specs.push_back({"gopher_quality",
                   "Gopher quality rules: word count, mean word length, symbol ratios, bullet/ellipsis lines, "
                   "alphabetic words, stop words",
                   make_gopher_quality});
  specs.push_back({"c4_lines",
                   "C4 cleaning: keep lines ending in terminal punctuation with enough words, drop javascript/policy "
                   "lines, reject lorem ipsum, '{' and pages with too few sentences",
                   make_c4_lines});
}

}  // namespace tsumugi::corpus
