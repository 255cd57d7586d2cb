#include "corpus/filters/ngwords.h"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "text/utf8.h"
#include "util/error.h"
#include "util/resources.h"

namespace tsumugi::corpus {

namespace {

// Letters an NG katakana word may consist of: ァ..ヺ and the long-vowel mark ー. (HojiChar
// uses [ァ-ヴー]; ヵヶヷヸヹヺ are katakana letters too.)
inline bool is_katakana_word_char(char32_t c) { return (c >= 0x30A1 && c <= 0x30FA) || c == 0x30FC; }

// A neighbour that makes a katakana word part of a longer katakana word: katakana letters,
// ー ヽ ヾ, small katakana extensions, half-width katakana (incl. ｰ), and the (combining)
// voiced/semi-voiced sound marks that modify the character before them.
inline bool is_katakana_neighbour(char32_t c) {
  return (c >= 0x30A1 && c <= 0x30FA) || (c >= 0x30FC && c <= 0x30FE) || (c >= 0x31F0 && c <= 0x31FF) ||
         (c >= 0xFF66 && c <= 0xFF9F) || (c >= 0x3099 && c <= 0x309C);
}

inline bool is_ascii_alnum_byte(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

// Code point ending right before byte offset `pos`, or 0 at the start (U+FFFD for a
// broken sequence).
inline char32_t codepoint_before(std::string_view s, size_t pos) {
  if (pos == 0) return 0;
  size_t b = pos - 1;
  while (b > 0 && pos - b < 4 && (static_cast<unsigned char>(s[b]) & 0xC0) == 0x80) --b;
  if (text::sequence_length(static_cast<unsigned char>(s[b])) != pos - b) return 0xFFFD;
  const char* p = s.data() + b;
  return text::next_codepoint(p, s.data() + pos);
}

// Code point starting at byte offset `pos`, or 0 at the end (U+FFFD for a broken sequence).
inline char32_t codepoint_at(std::string_view s, size_t pos) {
  if (pos >= s.size()) return 0;
  const char* p = s.data() + pos;
  const auto c = static_cast<unsigned char>(*p);
  if ((c & 0xC0) == 0x80 || pos + text::sequence_length(c) > s.size()) return 0xFFFD;
  return text::next_codepoint(p, s.data() + s.size());
}

bool all_katakana(std::string_view w) {
  const char* p = w.data();
  const char* end = p + w.size();
  if (p == end) return false;
  while (p < end)
    if (!is_katakana_word_char(text::next_codepoint(p, end))) return false;
  return true;
}

struct Candidate {
  uint32_t begin, end;
  uint64_t key;  // smaller wins among candidates with the same begin
  uint32_t word;
};

}  // namespace

NgWordMatcher::NgWordMatcher(const std::vector<std::string>& words, NgWordOptions options) : options_(options) {
  std::unordered_set<std::string> seen;
  for (const auto& w : words) {
    if (w.empty() || !seen.insert(w).second) continue;
    words_.push_back(w);
  }
  const size_t n = words_.size();
  katakana_.resize(n);
  ascii_head_.resize(n);
  ascii_tail_.resize(n);
  rank_.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const auto& w = words_[i];
    katakana_[i] = options_.katakana_standalone && all_katakana(w);
    ascii_head_[i] = options_.ascii_boundary && is_ascii_alnum_byte(static_cast<unsigned char>(w.front()));
    ascii_tail_[i] = options_.ascii_boundary && is_ascii_alnum_byte(static_cast<unsigned char>(w.back()));
  }
  // Alternation order. HojiChar (ignore_confused=True) builds "non-katakana words | (?<!K)(katakana
  // words)(?!K)", so all non-katakana words take precedence over katakana ones at one position;
  // within each group the list order decides.
  uint32_t r = 0;
  for (size_t i = 0; i < n; ++i)
    if (!katakana_[i]) rank_[i] = r++;
  for (size_t i = 0; i < n; ++i)
    if (katakana_[i]) rank_[i] = r++;
  ac_ = text::AhoCorasick(words_, options_.ignore_case);
}

void NgWordMatcher::find(std::string_view text, std::vector<Match>& out, size_t limit) const {
  if (text.size() > UINT32_MAX) fail("ng_words: a text of {} bytes is too long (at most 4 GiB)", text.size());
  thread_local std::vector<Candidate> cands;
  cands.clear();
  const bool longest = options_.pick == NgWordOptions::Pick::longest;
  ac_.for_each_match_unordered(text, [&](uint32_t id, size_t b, size_t e) {
    if (katakana_[id]) {
      if (is_katakana_neighbour(codepoint_before(text, b)) || is_katakana_neighbour(codepoint_at(text, e))) return;
    }
    if (ascii_head_[id] && b > 0 && is_ascii_alnum_byte(static_cast<unsigned char>(text[b - 1]))) return;
    if (ascii_tail_[id] && e < text.size() && is_ascii_alnum_byte(static_cast<unsigned char>(text[e]))) return;
    uint64_t key = rank_[id];
    if (longest) key |= uint64_t(UINT32_MAX - uint32_t(e - b)) << 32;
    cands.push_back({uint32_t(b), uint32_t(e), key, id});
  });
  if (cands.empty()) return;
  // The automaton reports in no useful order; a regex scan picks by start position.
  std::sort(cands.begin(), cands.end(), [](const Candidate& a, const Candidate& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.key < b.key;
  });
  size_t cursor = 0, added = 0;
  for (const auto& c : cands) {
    if (c.begin < cursor) continue;
    out.push_back({c.word, c.begin, c.end});
    cursor = c.end;
    if (limit && ++added >= limit) return;
  }
}

std::vector<std::string> parse_word_list(std::string_view text) {
  std::vector<std::string> words;
  if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);
  auto is_blank = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; };
  size_t start = 0;
  while (start < text.size()) {
    size_t nl = text.find('\n', start);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view line = text.substr(start, nl - start);
    start = nl + 1;
    while (!line.empty() && is_blank(line.front())) line.remove_prefix(1);
    while (!line.empty() && is_blank(line.back())) line.remove_suffix(1);
    if (line.empty() || line.front() == '#') continue;
    words.emplace_back(line);
  }
  return words;
}

std::vector<std::string> builtin_word_lists() {
  std::vector<std::string> names;
  constexpr std::string_view prefix = "wordlists/", suffix = ".txt";
  for (const auto& [path, bytes] : resources::all()) {
    if (path.size() > prefix.size() + suffix.size() && path.substr(0, prefix.size()) == prefix &&
        path.substr(path.size() - suffix.size()) == suffix)
      names.emplace_back(path.substr(prefix.size(), path.size() - prefix.size() - suffix.size()));
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<std::string> builtin_word_list(const std::string& name) {
  auto bytes = resources::find("wordlists/" + name + ".txt");
  if (!bytes) {
    auto names = builtin_word_lists();
    std::string known;
    for (const auto& n : names) known += (known.empty() ? "" : ", ") + n;
    fail("ng_words: unknown word list '{}' (built-in lists: {})", name, known.empty() ? "none" : known);
  }
  return parse_word_list(*bytes);
}

std::shared_ptr<const NgWordMatcher> shared_ng_matcher(const std::vector<std::string>& words,
                                                       const NgWordOptions& options) {
  static std::mutex mu;
  static std::unordered_map<std::string, std::weak_ptr<const NgWordMatcher>> cache;
  std::string key = fmt::format("{}{}{}{}|", int(options.pick), int(options.katakana_standalone),
                                int(options.ascii_boundary), int(options.ignore_case));
  for (const auto& w : words) key += fmt::format("{}:{}", w.size(), w);
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = cache[key];
  if (auto m = slot.lock()) return m;
  auto m = std::make_shared<const NgWordMatcher>(words, options);
  slot = m;
  return m;
}

namespace {

enum class CountMode { occurrences, distinct };

using Matches = std::vector<NgWordMatcher::Match>;

size_t distinct_words(const Matches& ms) {
  thread_local std::vector<uint32_t> ids;
  ids.clear();
  for (const auto& mt : ms) ids.push_back(mt.word);
  std::sort(ids.begin(), ids.end());
  return size_t(std::unique(ids.begin(), ids.end()) - ids.begin());
}

// Japanese characters as Swallow counts them: kana, kanji and the sentence punctuation 、，。．！？.
size_t japanese_chars(std::string_view s) {
  size_t n = 0;
  const char* p = s.data();
  const char* end = p + s.size();
  while (p < end) {
    if (static_cast<unsigned char>(*p) < 0x80) {
      ++p;
      continue;
    }
    const auto lead = static_cast<unsigned char>(*p);
    if ((lead & 0xC0) == 0x80 || text::sequence_length(lead) > size_t(end - p)) {  // invalid UTF-8
      ++p;
      continue;
    }
    char32_t c = text::next_codepoint(p, end);
    if (text::is_japanese(c) || c == 0x3001 || c == 0xFF0C || c == 0x3002 || c == 0xFF0E || c == 0xFF01 || c == 0xFF1F)
      ++n;
  }
  return n;
}

class NgWordsFilter : public Filter {
 public:
  NgWordsFilter(std::string name, std::shared_ptr<const NgWordMatcher> m, std::optional<int64_t> max_count,
                CountMode mode, std::optional<double> max_frac, bool frac_of_japanese)
      : Filter(std::move(name)),
        m_(std::move(m)),
        max_count_(max_count),
        mode_(mode),
        max_frac_(max_frac),
        frac_of_japanese_(frac_of_japanese) {}

  bool apply(Document& doc, std::string& reason) const override {
    thread_local Matches matches;
    matches.clear();
    m_->find(doc.text, matches);
    if (matches.empty()) return true;  // every bound is >= 0
    if (max_count_) {
      size_t count = mode_ == CountMode::distinct ? distinct_words(matches) : matches.size();
      if (int64_t(count) > *max_count_) {
        const char* what = mode_ == CountMode::distinct ? (count == 1 ? "distinct NG word" : "distinct NG words")
                                                        : (count == 1 ? "NG-word match" : "NG-word matches");
        reason = fmt::format("{} {} > {} ({})", count, what, *max_count_, examples(matches));
        return false;
      }
    }
    if (max_frac_) {
      size_t ng_chars = 0;
      std::string_view t(doc.text);
      for (const auto& mt : matches) ng_chars += text::count_codepoints(t.substr(mt.begin, mt.end - mt.begin));
      size_t denom = frac_of_japanese_ ? japanese_chars(t) : text::count_codepoints(t);
      // Swallow defines the fraction as 0 when there is no Japanese character.
      double frac = denom ? double(ng_chars) / double(denom) : 0.0;
      if (frac > *max_frac_) {
        reason = fmt::format("NG-word chars {:.4g} of {} chars > {} ({} of {}; {})", frac,
                             frac_of_japanese_ ? "Japanese" : "all", *max_frac_, ng_chars, denom, examples(matches));
        return false;
      }
    }
    return true;
  }

 private:
  // Up to three distinct matched words with their counts, for the reason.
  std::string examples(const Matches& ms) const {
    std::vector<std::pair<uint32_t, size_t>> shown;  // word, count; first-seen order
    bool more = false;
    for (const auto& mt : ms) {
      auto it = std::find_if(shown.begin(), shown.end(), [&](const auto& p) { return p.first == mt.word; });
      if (it != shown.end()) {
        ++it->second;
      } else if (shown.size() < 3) {
        shown.push_back({mt.word, 1});
      } else {
        more = true;
      }
    }
    std::string out;
    for (const auto& [w, c] : shown) {
      if (!out.empty()) out += ", ";
      out += m_->words()[w];
      if (c > 1) out += fmt::format("\u00d7{}", c);
    }
    if (more) out += ", ...";
    return out;
  }

  std::shared_ptr<const NgWordMatcher> m_;
  std::optional<int64_t> max_count_;
  CountMode mode_;
  std::optional<double> max_frac_;
  bool frac_of_japanese_;
};

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("ng_words: cannot read word list file '{}': {}", path, errno_message(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::unique_ptr<Filter> make_ng_words(const std::string& name, Params& p) {
  std::vector<std::string> words;
  for (const auto& list : p.strings("lists", {})) {
    auto w = builtin_word_list(list);
    words.insert(words.end(), w.begin(), w.end());
  }
  for (const auto& file : p.strings("files", {})) {
    std::string bytes = read_file(file);
    if (!text::is_valid_utf8(bytes)) fail("ng_words: word list file '{}' is not valid UTF-8", file);
    auto w = parse_word_list(bytes);
    words.insert(words.end(), w.begin(), w.end());
  }
  for (const auto& w : p.strings("words", {})) {
    if (!text::is_valid_utf8(w)) fail("ng_words: word '{}' is not valid UTF-8", w);
    words.push_back(w);
  }
  if (words.empty()) fail("ng_words: no words (give 'lists', 'files' or 'words')");

  NgWordOptions opt;
  std::string pick = p.string("pick", "first");
  if (pick == "first") opt.pick = NgWordOptions::Pick::first;
  else if (pick == "longest") opt.pick = NgWordOptions::Pick::longest;
  else fail("ng_words: 'pick' must be \"first\" or \"longest\", got \"{}\"", pick);
  opt.katakana_standalone = p.boolean("katakana_standalone", true);
  opt.ascii_boundary = p.boolean("ascii_boundary", true);
  opt.ignore_case = p.boolean("ignore_case", true);

  std::string count = p.string("count", "occurrences");
  CountMode mode;
  if (count == "occurrences") mode = CountMode::occurrences;
  else if (count == "distinct") mode = CountMode::distinct;
  else fail("ng_words: 'count' must be \"occurrences\" or \"distinct\", got \"{}\"", count);

  std::optional<double> max_frac;
  if (p.has("max_char_fraction")) {
    max_frac = p.number("max_char_fraction", 0);
    if (!(*max_frac >= 0 && *max_frac <= 1)) fail("ng_words: 'max_char_fraction' must be in [0, 1], got {}", *max_frac);
  }
  std::string frac_of = p.string("char_fraction_of", "japanese");
  if (frac_of != "japanese" && frac_of != "all")
    fail("ng_words: 'char_fraction_of' must be \"japanese\" or \"all\", got \"{}\"", frac_of);
  // Without any bound, any match rejects (HojiChar's NgWordsFilterJa); with only a character
  // fraction, the count is not limited.
  std::optional<int64_t> max_count;
  if (p.has("max_count") || !max_frac) {
    max_count = p.integer("max_count", 0);
    if (*max_count < 0) fail("ng_words: 'max_count' must be >= 0, got {}", *max_count);
  }
  return std::make_unique<NgWordsFilter>(name, shared_ng_matcher(words, opt), max_count, mode, max_frac,
                                         frac_of == "japanese");
}

}  // namespace

void add_ng_words_filter(std::vector<FilterSpec>& specs) {
  specs.push_back({"ng_words",
                   "reject documents with more than max_count NG-word matches (Aho-Corasick over built-in "
                   "lists, files or inline words; HojiChar/LLM-jp counting) or a too large NG-character "
                   "fraction (Swallow)",
                   make_ng_words});
}

}  // namespace tsumugi::corpus
