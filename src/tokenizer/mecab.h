#pragma once
// MeCab word boundaries, for pre-splitting Japanese training text: LLM-jp trained the Japanese
// model of its tokenizer on MeCab-segmented text so that no learned piece spans two words.
//
// libmecab is loaded at run time (dlopen of libmecab.so.2, through its C API), so tsumugi builds
// and runs without MeCab and only training with --mecab needs it: Debian `libmecab2` (pulled in by
// `mecab`) plus a dictionary, `mecab-ipadic-utf8` by default.
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace tsumugi::tokenizer {

class MecabSplitter {
 public:
  // `args`: MeCab options, e.g. "-d /var/lib/mecab/dic/juman-utf8"; empty: the dictionary named
  // by /etc/mecabrc. Throws tsumugi::Error saying what to install when libmecab or the
  // dictionary cannot be loaded.
  explicit MecabSplitter(const std::string& args = {});
  ~MecabSplitter();
  MecabSplitter(const MecabSplitter&) = delete;
  MecabSplitter& operator=(const MecabSplitter&) = delete;

  // A MeCab tagger and lattice: one per thread (the dictionary is shared).
  class Session {
   public:
    explicit Session(const MecabSplitter& splitter);
    ~Session();
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;
    // Replaces `starts` with the byte offsets in `text` where each word after the first begins,
    // counting the whitespace MeCab skipped before a word as part of that word (so a space stays
    // with the word it precedes, as SentencePiece's "▁word" pieces need). Ascending, in
    // (0, text.size()). Throws tsumugi::Error if MeCab fails on the text.
    void word_starts(std::string_view text, std::vector<size_t>& starts);

   private:
    const MecabSplitter& splitter_;
    void* tagger_ = nullptr;
    void* lattice_ = nullptr;
  };

  // The dictionary in use (its file name and charset), for logs.
  std::string dictionary() const;

  struct Api;

 private:
  const Api* api_ = nullptr;
  void* model_ = nullptr;
  std::string args_;
};

}  // namespace tsumugi::tokenizer
