#pragma once
// Precompiled normalization maps for training models with `nfkc` or `nmt_nfkc` normalization.
//
// A SentencePiece model carries its normalization as NormalizerSpec.precompiled_charsmap: a
// darts-clone double array over the UTF-8 source sequences whose values point into a blob of
// NUL-terminated replacements (src/tokenizer/trie.h reads it; so does SentencePiece). spm_train
// copies a map compiled from ICU into its binary; here the rules are derived from Unicode data
// (utf8proc) the way SentencePiece's normalizer builder derives them:
//   nfkc      every character whose NFKC differs from it maps to that NFKC; every sequence that
//             canonically/compatibly decomposes like a composed character (か + U+3099, ｶﾞ,
//             e + U+0301, ...) maps to its NFC; rules that shorter rules already imply are dropped;
//   nmt_nfkc  nfkc, plus tabs, line breaks, zero-width and other invisible spaces as ' ', ASCII
//             and C1 control characters removed, and U+FF5E (full-width tilde) left alone.
// The model holds the map it was trained with, so SentencePiece and tsumugi encode with exactly
// that map; where utf8proc's Unicode version differs from the ICU spm_train was built with, a
// few rarely used characters normalize differently from an spm_train model's.
#include <map>
#include <string>
#include <string_view>

namespace tsumugi::tokenizer {

using CharsRules = std::map<std::u32string, std::u32string>;  // source sequence -> replacement

// The rules of a normalization: "nfkc" or "nmt_nfkc" (throws tsumugi::Error for others).
CharsRules normalization_rules(std::string_view name);

// Compiles rules into SentencePiece's precompiled_charsmap format. Sources must be non-empty,
// without U+0000.
std::string compile_charsmap(const CharsRules& rules);

// precompiled_charsmap for a rule name: empty for "identity"; "nfkc" and "nmt_nfkc" are built
// once per process. Throws tsumugi::Error naming the supported rules for any other name.
const std::string& precompiled_charsmap(std::string_view name);

// Every (source, replacement) of a precompiled charsmap, e.g. one spm_train wrote; for
// comparing maps. Throws tsumugi::Error if the map is broken.
CharsRules decompile_charsmap(std::string_view blob);

}  // namespace tsumugi::tokenizer
