#include "text/langid.h"

// compact_lang_det.h uses FILE without including <cstdio>.
#include <climits>
#include <cstdio>

#include <cld2/public/compact_lang_det.h>
#include <cld2/public/encodings.h>

namespace tsumugi::text {

LanguageGuess detect_language(std::string_view text) {
  LanguageGuess g;
  if (text.empty()) {
    g.code = "un";
    return g;
  }
  CLD2::CLDHints hints = {nullptr, nullptr, CLD2::UNKNOWN_ENCODING, CLD2::UNKNOWN_LANGUAGE};
  CLD2::Language lang3[3];
  int percent3[3] = {0, 0, 0};
  double normalized3[3];
  int text_bytes = 0;
  bool reliable = false;
  int valid_prefix = 0;
  int len = text.size() > size_t(INT_MAX) ? INT_MAX : int(text.size());
  // The extended call returns UNKNOWN_LANGUAGE for undecidable text instead of
  // defaulting to ENGLISH like the plain DetectLanguage does; the CheckUTF8 variant
  // never reads past a malformed sequence.
  CLD2::Language top = CLD2::ExtDetectLanguageSummaryCheckUTF8(text.data(), len, /*is_plain_text=*/true, &hints,
                                                               /*flags=*/0, lang3, percent3, normalized3,
                                                               /*resultchunkvector=*/nullptr, &text_bytes, &reliable,
                                                               &valid_prefix);
  // language3[0] is the language with the largest share of the text. CLD2's summary
  // answer (`top`) can differ: it reports a non-English language over a larger English
  // share (61% English / 38% Japanese comes back as "ja"), which suits web-page tagging
  // but not "is this document mostly X".
  (void)top;
  g.code = CLD2::LanguageCode(lang3[0]);
  g.score = percent3[0] / 100.0;
  g.reliable = reliable;
  return g;
}

}  // namespace tsumugi::text
