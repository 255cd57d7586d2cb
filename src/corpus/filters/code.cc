// Source-code rules from RedPajama-v1's GitHub subset (data_prep/github in
// togethercomputer/RedPajama-Data: github_clean_dedup_local.py computes the statistics,
// github_run_filter.py applies the thresholds).
#include <fmt/format.h>

#include <optional>

#include "corpus/filters/groups.h"
#include "text/utf8.h"
#include "text/words.h"
#include "util/error.h"

namespace tsumugi::corpus {

namespace {

using text::format_pair;

struct CodeStats {
  size_t chars = 0;        // code points, newlines included
  size_t lines = 0;        // as Python's str.splitlines(): no empty line after a final '\n'
  size_t max_line = 0;     // code points of the longest line ('\r' of CRLF excluded)
  size_t alnum = 0;        // letters and digits (str.isalnum)
  size_t alpha = 0;        // letters (str.isalpha)
  size_t approx_tokens = 0;
};

// One pass over the text. approx_tokens stands in for the GPT-NeoX tokenizer RedPajama
// used: every run of letters/digits counts as one token and every other non-space
// character as one more.
CodeStats code_stats(std::string_view s) {
  CodeStats st;
  const char* p = s.data();
  const char* end = p + s.size();
  size_t line_len = 0;
  bool in_word = false;
  while (p < end) {
    auto b = static_cast<unsigned char>(*p);
    char32_t c;
    if (b < 0x80) {
      c = b;
      ++p;
    } else {
      c = text::next_codepoint(p, end);
    }
    ++st.chars;
    if (c == '\n') {
      ++st.lines;
      st.max_line = std::max(st.max_line, line_len);
      line_len = 0;
      in_word = false;
      continue;
    }
    if (c != '\r' || (p < end && *p != '\n')) ++line_len;
    bool alpha = text::is_alpha(c);
    bool alnum = alpha || (c < 0x80 ? (c >= '0' && c <= '9') : text::is_alnum(c));
    st.alpha += alpha;
    st.alnum += alnum;
    if (alnum) {
      if (!in_word) ++st.approx_tokens;
      in_word = true;
    } else {
      in_word = false;
      if (!text::is_space(c)) ++st.approx_tokens;
    }
  }
  if (line_len > 0 || (!s.empty() && s.back() != '\n')) {
    ++st.lines;
    st.max_line = std::max(st.max_line, line_len);
  }
  return st;
}

class CodeQualityFilter : public Filter {
 public:
  struct Config {
    int64_t max_line_length = 1000;
    double max_mean_line_length = 100;
    double min_alnum_frac = 0.25;
    std::optional<double> min_alpha_token_ratio;
  };

  CodeQualityFilter(std::string name, Config c) : Filter(std::move(name)), c_(c) {}

  bool apply(Document& doc, std::string& reason) const override {
    if (doc.text.empty()) {
      reason = "empty text";
      return false;
    }
    CodeStats st = code_stats(doc.text);
    if (int64_t(st.max_line) > c_.max_line_length) {
      reason = fmt::format("longest line {} chars > max_line_length {}", st.max_line, c_.max_line_length);
      return false;
    }
    // RedPajama: len(content) / number of lines, so newlines count toward the mean.
    double mean = st.lines ? double(st.chars) / double(st.lines) : 0.0;
    if (mean > c_.max_mean_line_length) {
      auto [a, b] = format_pair(mean, c_.max_mean_line_length);
      reason = fmt::format("mean line length {} > {}", a, b);
      return false;
    }
    double alnum = double(st.alnum) / double(st.chars);
    if (alnum < c_.min_alnum_frac) {
      auto [a, b] = format_pair(alnum, c_.min_alnum_frac);
      reason = fmt::format("alphanumeric fraction {} < {}", a, b);
      return false;
    }
    if (c_.min_alpha_token_ratio) {
      double ratio = st.approx_tokens ? double(st.alpha) / double(st.approx_tokens) : 0.0;
      if (ratio < *c_.min_alpha_token_ratio) {
        auto [a, b] = format_pair(ratio, *c_.min_alpha_token_ratio);
        reason = fmt::format("alphabetic chars per token {} < {}", a, b);
        return false;
      }
    }
    return true;
  }

 private:
  Config c_;
};

std::unique_ptr<Filter> make_code_quality(const std::string& name, Params& p) {
  CodeQualityFilter::Config c;
  c.max_line_length = p.integer("max_line_length", 1000);
  c.max_mean_line_length = p.number("max_mean_line_length", 100);
  c.min_alnum_frac = p.number("min_alnum_frac", 0.25);
  if (p.has("min_alpha_token_ratio")) c.min_alpha_token_ratio = p.number("min_alpha_token_ratio", 1.5);
  return std::make_unique<CodeQualityFilter>(name, c);
}

}  // namespace

void add_code_filters(std::vector<FilterSpec>& specs) {
  specs.push_back({"code_quality",
                   "RedPajama GitHub rules: max line length, mean line length, alphanumeric fraction "
                   "(optionally alphabetic chars per token)",
                   make_code_quality});
}

}  // namespace tsumugi::corpus
