#include "eval/metrics.h"

#include <utf8proc.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <numeric>
#include <set>

#include "text/utf8.h"
#include "util/error.h"

namespace tsumugi::eval {

namespace {

std::u32string decode(std::string_view s) {
  std::u32string out;
  const char* p = s.data();
  const char* end = p + s.size();
  while (p < end) out.push_back(text::next_codepoint(p, end));
  return out;
}

std::string encode(std::u32string_view s) {
  std::string out;
  for (char32_t c : s) text::append_utf8(out, c);
  return out;
}

// Python's \w in a str pattern: letters and numbers (str.isalnum) and '_'.
bool is_python_word(char32_t c) {
  if (c == '_') return true;
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(c))) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO:
      return true;
    default:
      return false;
  }
}

bool is_cased(char32_t c) {
  const auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_LT;
}

bool is_case_ignorable(char32_t c) {
  const auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return cat == UTF8PROC_CATEGORY_MN || cat == UTF8PROC_CATEGORY_ME || cat == UTF8PROC_CATEGORY_CF ||
         cat == UTF8PROC_CATEGORY_LM || cat == UTF8PROC_CATEGORY_SK || c == '\'' || c == '.' || c == ':' ||
         c == 0x00B7 || c == 0x2019;
}

// Python str.lower(): the simple mapping plus the two full mappings that differ from it
// (U+0130 → "i̇" and the final form of capital sigma).
std::u32string python_lower(const std::u32string& s) {
  std::u32string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char32_t c = s[i];
    if (c == 0x0130) {
      out += U"i\u0307";
    } else if (c == 0x03A3) {
      bool before = false, after = false;
      for (std::size_t j = i; j-- > 0;) {
        if (is_case_ignorable(s[j])) continue;
        before = is_cased(s[j]);
        break;
      }
      for (std::size_t j = i + 1; j < s.size(); ++j) {
        if (is_case_ignorable(s[j])) continue;
        after = is_cased(s[j]);
        break;
      }
      out.push_back(before && !after ? 0x03C2 : 0x03C3);
    } else {
      out.push_back(static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(c))));
    }
  }
  return out;
}

std::vector<std::u32string> python_split(std::u32string_view s) {
  std::vector<std::u32string> out;
  std::size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && is_python_space(s[i])) ++i;
    if (i == s.size()) break;
    std::size_t j = i;
    while (j < s.size() && !is_python_space(s[j])) ++j;
    out.emplace_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

std::u32string python_strip(std::u32string_view s) {
  std::size_t b = 0, e = s.size();
  while (b < e && is_python_space(s[b])) ++b;
  while (e > b && is_python_space(s[e - 1])) --e;
  return std::u32string(s.substr(b, e - b));
}

std::u32string process_and_sort(std::string_view in) {
  std::u32string s;
  for (char32_t c : decode(in)) {
    if (c >= 128 && c <= 255) continue;  // asciidammit (force_ascii) removes exactly these
    s.push_back(is_python_word(c) ? c : U' ');
  }
  s = python_strip(python_lower(s));
  auto tokens = python_split(s);
  std::sort(tokens.begin(), tokens.end());  // code point order, as Python sorts str
  std::u32string joined;
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    if (i) joined.push_back(U' ');
    joined += tokens[i];
  }
  return python_strip(joined);
}

// Longest common subsequence length: the insert/delete distance is |a| + |b| - 2·LCS, which is
// python-Levenshtein's ratio distance (a substitution costs 2 there).
std::size_t lcs_length(const std::u32string& a, const std::u32string& b) {
  std::vector<std::size_t> prev(b.size() + 1, 0), cur(b.size() + 1, 0);
  for (std::size_t i = 1; i <= a.size(); ++i) {
    for (std::size_t j = 1; j <= b.size(); ++j)
      cur[j] = a[i - 1] == b[j - 1] ? prev[j - 1] + 1 : std::max(prev[j], cur[j - 1]);
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string python_strip_utf8(std::string_view s) {
  std::u32string u = python_strip(decode(s));
  return encode(u);
}

}  // namespace

bool is_python_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

double exact_match(std::string_view pred, std::string_view gold) { return pred == gold ? 1.0 : 0.0; }

std::string fuzz_process_and_sort(std::string_view s) { return encode(process_and_sort(s)); }

int token_sort_ratio(std::string_view a, std::string_view b) {
  const std::u32string s1 = process_and_sort(a), s2 = process_and_sort(b);
  if (s1 == s2) return 100;                 // check_for_equivalence comes first
  if (s1.empty() || s2.empty()) return 0;   // then check_empty_string
  const auto lensum = static_cast<double>(s1.size() + s2.size());
  const double dist = lensum - 2.0 * static_cast<double>(lcs_length(s1, s2));
  const double ratio = (lensum - dist) / lensum;
  return static_cast<int>(std::nearbyint(100.0 * ratio));  // round half to even, as Python's round
}

double char_f1(std::string_view pred, std::string_view gold) { return token_sort_ratio(pred, gold) / 100.0; }

double set_f1(std::string_view pred, std::string_view gold) {
  auto lines = [](std::string_view s) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (true) {
      const std::size_t nl = s.find('\n', start);
      out.push_back(python_strip_utf8(s.substr(start, nl == std::string_view::npos ? std::string_view::npos : nl - start)));
      if (nl == std::string_view::npos) break;
      start = nl + 1;
    }
    return out;
  };
  const std::vector<std::string> gold_lines = lines(gold);
  const std::vector<std::string> pred_lines = lines(pred);
  const std::set<std::string> pred_set(pred_lines.begin(), pred_lines.end());
  double hits = 0;
  for (const auto& p : pred_set)
    if (std::find(gold_lines.begin(), gold_lines.end(), p) != gold_lines.end()) hits += 1;
  const double precision = hits / static_cast<double>(pred_set.size());
  const double recall = hits / static_cast<double>(gold_lines.size());
  return precision + recall != 0 ? 2 * (precision * recall) / (precision + recall) : 0.0;
}

double parse_float(std::string_view s) {
  std::string kept;
  for (char c : s)
    if ((c >= '0' && c <= '9') || c == '.') kept.push_back(c);
  // Python float() of what is left: digits with at most one '.', not just "." or empty.
  const auto dots = std::count(kept.begin(), kept.end(), '.');
  if (kept.empty() || dots > 1 || kept == ".") return -2.0;
  return std::strtod(kept.c_str(), nullptr);
}

double parse_gold_float(std::string_view s) {
  const std::string t = python_strip_utf8(s);
  char* end = nullptr;
  const double v = std::strtod(t.c_str(), &end);
  if (t.empty() || end != t.c_str() + t.size()) fail("gold value '{}' is not a number", std::string(s));
  return v;
}

double pearson(const std::vector<double>& x, const std::vector<double>& y) {
  const std::size_t n = x.size();
  if (n < 2 || y.size() != n) return 0.0;
  const double mx = std::accumulate(x.begin(), x.end(), 0.0) / n;
  const double my = std::accumulate(y.begin(), y.end(), 0.0) / n;
  double sxy = 0, sxx = 0, syy = 0;
  for (std::size_t i = 0; i < n; ++i) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) * (x[i] - mx);
    syy += (y[i] - my) * (y[i] - my);
  }
  if (sxx == 0 || syy == 0) return 0.0;  // scipy returns NaN for constant input; llm-jp-eval maps it to 0
  const double r = sxy / std::sqrt(sxx * syy);
  return std::max(-1.0, std::min(1.0, r));
}

namespace {
std::vector<double> average_ranks(const std::vector<double>& v) {
  std::vector<std::size_t> idx(v.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) { return v[a] < v[b]; });
  std::vector<double> rank(v.size());
  for (std::size_t i = 0; i < idx.size();) {
    std::size_t j = i;
    while (j + 1 < idx.size() && v[idx[j + 1]] == v[idx[i]]) ++j;
    const double r = (static_cast<double>(i) + static_cast<double>(j)) / 2.0 + 1.0;
    for (std::size_t k = i; k <= j; ++k) rank[idx[k]] = r;
    i = j + 1;
  }
  return rank;
}
}  // namespace

double spearman(const std::vector<double>& x, const std::vector<double>& y) {
  if (x.size() < 2 || y.size() != x.size()) return 0.0;
  return pearson(average_ranks(x), average_ranks(y));
}

// ---------------------------------------------------------------------------------------------
// BLEU

namespace {

bool in_13a_punct(char32_t c) {  // [\{-\~\[-\` -\&\(-\+\:-\@\/]
  return (c >= '{' && c <= '~') || (c >= '[' && c <= '`') || (c >= ' ' && c <= '&') || (c >= '(' && c <= '+') ||
         (c >= ':' && c <= '@') || c == '/';
}
bool is_digit(char32_t c) { return c >= '0' && c <= '9'; }
bool is_dot_comma(char32_t c) { return c == '.' || c == ','; }

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  for (std::size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size()))
    s.replace(at, from.size(), to);
}

// re.sub over a two-character pattern (first in `a`, second in `b`): leftmost, non-overlapping.
template <typename A, typename B, typename Emit>
std::u32string sub_pairs(const std::u32string& s, A a, B b, Emit emit) {
  std::u32string out;
  std::size_t i = 0;
  while (i < s.size()) {
    if (i + 1 < s.size() && a(s[i]) && b(s[i + 1])) {
      emit(out, s[i], s[i + 1]);
      i += 2;
    } else {
      out.push_back(s[i++]);
    }
  }
  return out;
}

}  // namespace

std::string tokenize_13a(std::string_view in) {
  std::u32string u = decode(in);
  // BLEU._preprocess_segment: sent.rstrip()
  while (!u.empty() && is_python_space(u.back())) u.pop_back();
  std::string line = encode(u);
  replace_all(line, "<skipped>", "");
  replace_all(line, "-\n", "");
  replace_all(line, "\n", " ");
  if (line.find('&') != std::string::npos) {
    replace_all(line, "&quot;", "\"");
    replace_all(line, "&amp;", "&");
    replace_all(line, "&lt;", "<");
    replace_all(line, "&gt;", ">");
  }
  u = decode(" " + line + " ");
  std::u32string t;
  for (char32_t c : u) {
    if (in_13a_punct(c)) {
      t.push_back(U' ');
      t.push_back(c);
      t.push_back(U' ');
    } else {
      t.push_back(c);
    }
  }
  t = sub_pairs(t, [](char32_t c) { return !is_digit(c); }, is_dot_comma, [](std::u32string& o, char32_t x, char32_t y) {
    o.push_back(x);
    o.push_back(U' ');
    o.push_back(y);
    o.push_back(U' ');
  });
  t = sub_pairs(t, is_dot_comma, [](char32_t c) { return !is_digit(c); }, [](std::u32string& o, char32_t x, char32_t y) {
    o.push_back(U' ');
    o.push_back(x);
    o.push_back(U' ');
    o.push_back(y);
  });
  t = sub_pairs(t, is_digit, [](char32_t c) { return c == '-'; }, [](std::u32string& o, char32_t x, char32_t y) {
    o.push_back(x);
    o.push_back(U' ');
    o.push_back(y);
    o.push_back(U' ');
  });
  auto tokens = python_split(t);
  std::u32string joined;
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    if (i) joined.push_back(U' ');
    joined += tokens[i];
  }
  return encode(joined);
}

double sentence_bleu(std::string_view hyp, std::string_view ref) {
  constexpr int kOrder = 4;
  const auto hyp_tokens = python_split(decode(tokenize_13a(hyp)));
  const auto ref_tokens = python_split(decode(tokenize_13a(ref)));
  using Gram = std::vector<std::u32string>;
  auto count = [&](const std::vector<std::u32string>& toks) {
    std::map<Gram, int> c;
    for (int n = 1; n <= kOrder; ++n)
      for (std::size_t i = 0; i + n <= toks.size(); ++i) ++c[Gram(toks.begin() + i, toks.begin() + i + n)];
    return c;
  };
  const auto hc = count(hyp_tokens), rc = count(ref_tokens);
  double correct[kOrder] = {0, 0, 0, 0}, total[kOrder] = {0, 0, 0, 0};
  for (int n = 1; n <= kOrder; ++n)
    total[n - 1] = std::max<double>(0, static_cast<double>(hyp_tokens.size()) - n + 1);
  for (const auto& [g, c] : hc) {
    auto it = rc.find(g);
    if (it != rc.end()) correct[g.size() - 1] += std::min(c, it->second);
  }
  const double sys_len = static_cast<double>(hyp_tokens.size()), ref_len = static_cast<double>(ref_tokens.size());
  const double bp = sys_len < ref_len ? (sys_len > 0 ? std::exp(1 - ref_len / sys_len) : 0.0) : 1.0;
  if (std::all_of(std::begin(correct), std::end(correct), [](double c) { return c == 0; })) return 0.0;
  double precisions[kOrder] = {0, 0, 0, 0};
  double smooth = 1.0;
  int eff_order = kOrder;
  for (int n = 1; n <= kOrder; ++n) {
    if (total[n - 1] == 0) break;
    eff_order = n;  // effective order: only the orders the hypothesis is long enough for
    if (correct[n - 1] == 0) {
      smooth *= 2;
      precisions[n - 1] = 100.0 / (smooth * total[n - 1]);
    } else {
      precisions[n - 1] = 100.0 * correct[n - 1] / total[n - 1];
    }
  }
  double log_sum = 0;
  for (int n = 0; n < eff_order; ++n) log_sum += precisions[n] == 0.0 ? -9999999999.0 : std::log(precisions[n]);
  return bp * std::exp(log_sum / eff_order);
}

double bleu_en(std::string_view pred, std::string_view gold) {
  const std::string p = python_strip_utf8(pred), g = python_strip_utf8(gold);
  if (p.empty() || g.empty()) return p == g ? 1.0 : 0.0;
  return sentence_bleu(p, g);
}

}  // namespace tsumugi::eval
