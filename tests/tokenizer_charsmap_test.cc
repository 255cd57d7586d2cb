// Precompiled normalization maps built for training (src/tokenizer/charsmap_builder.h): the
// double array reads back to exactly its rules, a NUL in the text passes through, and the nfkc /
// nmt_nfkc rules equal those of the maps spm_train writes (SentencePiece's, compiled from ICU),
// except for characters newer than spm_train's Unicode data.
#include <gtest/gtest.h>

#include <cstdio>
#include <random>

#include "tokenizer/charsmap_builder.h"
#include "tokenizer/model_proto.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/spm_oracle.h"
#include "util/error.h"

namespace spm = tsumugi::testing::spm;
using namespace tsumugi::tokenizer;

namespace {

std::string normalize_with(const std::string& charsmap, const std::string& text) {
  NormalizerSpec spec;
  spec.name = "test";
  spec.precompiled_charsmap = charsmap;
  spec.add_dummy_prefix = false;
  spec.remove_extra_whitespaces = false;
  spec.escape_whitespaces = false;
  const Normalizer n(spec, false, nullptr, "test");
  std::string out;
  n.normalize(text, out);
  return out;
}

TEST(TokenizerCharsmap, CompilesAndReadsBack) {
  const CharsRules small = {{U"a", U"A"}, {U"ab", U"X"}, {U"b", U""}, {U"\u3042", U"zz"}, {U"\u304b\u3099", U"\u304c"}};
  const std::string blob = compile_charsmap(small);
  EXPECT_EQ(decompile_charsmap(blob), small);
  EXPECT_EQ(normalize_with(blob, "abcab\xE3\x81\x82"), "XcXzz");
  EXPECT_EQ(normalize_with(blob, "a\xE3\x81\x8B\xE3\x82\x99"), "A\xE3\x81\x8C");  // か + U+3099 -> が
  // NUL is no rule's first byte: it passes through and does not join the next match.
  EXPECT_EQ(normalize_with(blob, std::string("\0ab\0a", 5)), std::string("\0X\0A", 4));
  // Random rule sets, with shared prefixes and identical subtrees, read back exactly.
  std::mt19937 rng(5);
  for (int round = 0; round < 20; ++round) {
    CharsRules rules;
    const std::u32string alphabet = U"abc\u00e9\u3042\u30a2\U0001F600";
    for (int i = 0; i < 300; ++i) {
      std::u32string src, dst;
      for (int k = 0; k < 1 + int(rng() % 4); ++k) src.push_back(alphabet[rng() % alphabet.size()]);
      for (int k = 0; k < int(rng() % 3); ++k) dst.push_back(alphabet[rng() % alphabet.size()]);
      rules[src] = dst;
    }
    EXPECT_EQ(decompile_charsmap(compile_charsmap(rules)), rules) << "round " << round;
  }
  EXPECT_THROW(normalization_rules("nmt_nfkc_cf"), tsumugi::Error);
  EXPECT_TRUE(precompiled_charsmap("identity").empty());
}

TEST(TokenizerCharsmap, RulesEqualSpmTrains) {
  const std::string missing = spm::missing_tools();
  if (!missing.empty()) FAIL() << missing;
  for (const char* rule : {"nmt_nfkc", "nfkc"}) {
    const auto m = load_model_proto(spm::ensure_model(spm::config(std::string("unigram_") + rule)).model());
    const CharsRules theirs = decompile_charsmap(m.normalizer().charsmap());
    const CharsRules ours = decompile_charsmap(precompiled_charsmap(rule));
    ASSERT_GT(theirs.size(), 100000u) << rule;
    size_t missing_rules = 0, differ = 0, extra = 0;
    for (const auto& [src, dst] : theirs) {
      auto it = ours.find(src);
      if (it == ours.end())
        ++missing_rules;
      else if (it->second != dst)
        ++differ;
    }
    // Extra rules: characters added to Unicode after the data spm_train's map was built from.
    // Their sources start with a character spm_train's map has no rule for.
    for (const auto& [src, dst] : ours) {
      if (theirs.count(src)) continue;
      ++extra;
      EXPECT_EQ(theirs.count(src.substr(0, 1)), 0u) << rule << ": extra rule for U+" << std::hex << uint32_t(src[0]);
    }
    std::printf("[charsmap] %s: spm_train %zu rules, ours %zu; missing %zu, different %zu, extra %zu\n", rule,
                theirs.size(), ours.size(), missing_rules, differ, extra);
    EXPECT_EQ(missing_rules, 0u) << rule;
    EXPECT_EQ(differ, 0u) << rule;
    EXPECT_LT(extra, 1000u) << rule;
  }
}

}  // namespace
