#pragma once
// NG-word ("no good" word) dictionaries: word lists compiled into one Aho–Corasick
// automaton and matched the way the published Japanese pipelines do it.
//
// Matching model (what `NgWordMatcher::find` returns): a left-to-right scan that, at each
// position, takes one word starting there and resumes after it — i.e. non-overlapping,
// leftmost matches, exactly like Python's `re.findall` over an alternation of literals
// (HojiChar, LLM-jp) or a common-prefix-search loop (Swallow). Which word wins at one
// position is `Pick::first` (the earliest in list order, regex alternation semantics) or
// `Pick::longest` (the longest, Swallow's trie semantics).
//
// Word-boundary rules (applied to a candidate before it can be picked, like regex
// lookarounds):
//  * katakana_standalone: a word made only of katakana (ァ..ヺ and ー) must not be preceded
//    or followed by a katakana letter/ー/ヽヾ (full- or half-width), nor followed by a
//    combining voiced/semi-voiced mark (U+3099/U+309A). So "アス" does not match inside
//    "アスパラガス". HojiChar's NgWordsFilterJa(ignore_confused=True).
//  * ascii_boundary: a word whose first (last) byte is an ASCII letter/digit must not be
//    preceded (followed) by an ASCII letter/digit, so "cock" does not match "cocktail".
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "corpus/filter.h"
#include "text/aho_corasick.h"

namespace tsumugi::corpus {

struct NgWordOptions {
  enum class Pick { first, longest };
  Pick pick = Pick::first;
  bool katakana_standalone = true;
  bool ascii_boundary = true;
  bool ignore_case = true;  // ASCII letters only
};

class NgWordMatcher {
 public:
  struct Match {
    uint32_t word;  // index into words()
    uint32_t begin, end;  // byte offsets
  };
  // Words are deduplicated (first occurrence kept); empty words are ignored.
  NgWordMatcher(const std::vector<std::string>& words, NgWordOptions options);

  // Appends the selected non-overlapping matches, in text order, to `out` (not cleared).
  // Stops early once `limit` matches were appended (0 = no limit).
  void find(std::string_view text, std::vector<Match>& out, size_t limit = 0) const;

  const std::vector<std::string>& words() const { return words_; }
  const NgWordOptions& options() const { return options_; }
  const text::AhoCorasick& automaton() const { return ac_; }

 private:
  std::vector<std::string> words_;
  std::vector<uint32_t> rank_;      // tie-break at one start position (smaller wins)
  std::vector<uint8_t> katakana_;   // word is all katakana (standalone rule applies)
  std::vector<uint8_t> ascii_head_, ascii_tail_;  // word starts/ends with an ASCII letter/digit
  NgWordOptions options_;
  text::AhoCorasick ac_;
};

// Parses a word list: one word per line, surrounding whitespace trimmed, empty lines and
// lines whose first non-blank character is '#' skipped, a UTF-8 BOM ignored.
std::vector<std::string> parse_word_list(std::string_view text);
// Names of the built-in lists (resources/wordlists/<name>.txt), sorted.
std::vector<std::string> builtin_word_lists();
// Words of one built-in list; throws tsumugi::Error naming the available lists.
std::vector<std::string> builtin_word_list(const std::string& name);

// Returns a shared matcher for these words and options, building it only once per
// distinct configuration in the process (filters built per thread share one automaton).
std::shared_ptr<const NgWordMatcher> shared_ng_matcher(const std::vector<std::string>& words,
                                                       const NgWordOptions& options);

// Registers the `ng_words` filter type.
void add_ng_words_filter(std::vector<FilterSpec>& specs);

}  // namespace tsumugi::corpus
