#pragma once
// Language identification with CLD2 (Compact Language Detector 2).
#include <string_view>

namespace tsumugi::text {

struct LanguageGuess {
  // The language with the largest share of the text (CLD2's language3[0]): ISO 639-1
  // code where one exists ("ja", "en"), CLD2's own code otherwise ("zh-Hant", "haw"), or
  // "un" when CLD2 cannot tell. Points at a static string inside CLD2.
  std::string_view code;
  // That share (0..1) of the text's letters (CLD2's percent3[0] / 100).
  double score = 0;
  // CLD2's own verdict: the top language is clearly ahead of the runner-up.
  bool reliable = false;
};

// Detects the dominant language of plain UTF-8 text. Thread-safe (CLD2 keeps no state).
LanguageGuess detect_language(std::string_view text);

}  // namespace tsumugi::text
