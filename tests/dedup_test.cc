// MinHash-LSH quality on generated pairs with measured Jaccard similarity.
#include <gtest/gtest.h>

#include <random>

#include "corpus/dedup.h"
#include "text/utf8.h"

using namespace tsumugi::corpus;

namespace {
// Random text over a large CJK alphabet, so nearly all 5-grams are distinct.
std::string random_text(std::mt19937_64& rng, size_t chars) {
  std::string s;
  std::uniform_int_distribution<uint32_t> cp(0x4E00, 0x9FFF);
  for (size_t i = 0; i < chars; ++i) tsumugi::text::append_utf8(s, cp(rng));
  return s;
}

// Replaces `edits` random characters.
std::string mutate(std::mt19937_64& rng, const std::string& s, size_t edits) {
  std::vector<char32_t> cps;
  const char* p = s.data();
  while (p < s.data() + s.size()) cps.push_back(tsumugi::text::next_codepoint(p, s.data() + s.size()));
  std::uniform_int_distribution<size_t> pos(0, cps.size() - 1);
  std::uniform_int_distribution<uint32_t> cp(0x3041, 0x3096);
  for (size_t i = 0; i < edits; ++i) cps[pos(rng)] = cp(rng);
  std::string out;
  for (char32_t c : cps) tsumugi::text::append_utf8(out, c);
  return out;
}

bool share_key(const DedupKeyer& k, const std::string& a, const std::string& b) {
  std::vector<uint64_t> ka, kb;
  k.keys(a, ka);
  k.keys(b, kb);
  for (size_t i = 0; i < ka.size(); ++i)
    if (ka[i] == kb[i]) return true;  // keys are per band, so compare band by band
  return false;
}
}  // namespace

TEST(Dedup, MinHashRecallAndFalsePositivesOnGeneratedPairs) {
  DedupOptions opt;
  opt.mode = DedupMode::minhash;
  DedupKeyer keyer(opt);
  std::mt19937_64 rng(7);
  int high = 0, high_found = 0, low = 0, low_found = 0;
  // Each edit destroys up to 5 of ~400 shingles: 3-6 edits give Jaccard near 0.9, 35+ give ≤ 0.5.
  for (int trial = 0; trial < 1200; ++trial) {
    std::string a = random_text(rng, 400);
    size_t edits = trial % 2 == 0 ? 3 + size_t(trial % 4) : 35 + size_t(trial % 30);
    std::string b = mutate(rng, a, edits);
    double j = ngram_jaccard(a, b, 5);
    bool found = share_key(keyer, a, b);
    if (j >= 0.88 && j <= 0.92) {
      ++high;
      high_found += found;
    } else if (j <= 0.5) {
      ++low;
      low_found += found;
    }
  }
  ASSERT_GT(high, 200);
  ASSERT_GT(low, 200);
  double recall = double(high_found) / high, fpr = double(low_found) / low;
  RecordProperty("recall_at_0.9", std::to_string(recall));
  RecordProperty("fpr_at_le_0.5", std::to_string(fpr));
  EXPECT_GE(recall, 0.95) << high_found << "/" << high;
  EXPECT_LE(fpr, 0.01) << low_found << "/" << low;
}

TEST(Dedup, SignatureEstimatesJaccard) {
  DedupOptions opt;
  opt.mode = DedupMode::minhash;
  opt.bands = 32;
  opt.rows = 16;  // 512 hashes: standard error ≈ 0.02
  DedupKeyer keyer(opt);
  std::mt19937_64 rng(3);
  std::string a = random_text(rng, 2000);
  std::string b = mutate(rng, a, 120);
  std::vector<uint32_t> sa, sb;
  keyer.signature(a, sa);
  keyer.signature(b, sb);
  EXPECT_NEAR(estimate_jaccard(sa, sb), ngram_jaccard(a, b, 5), 0.07);
}

TEST(Dedup, ExactKeysIgnoreWhitespaceDifferencesOnly) {
  DedupOptions opt;
  opt.mode = DedupMode::exact;
  DedupKeyer k(opt);
  std::vector<uint64_t> a, b, c, e;
  k.keys("吾輩は 猫である。\r\n名前はまだ無い。", a);
  k.keys("  吾輩は猫である。 名前はまだ無い。", b);
  k.keys("吾輩は  猫である。\n名前はまだ無い。 ", c);
  k.keys(" \n ", e);
  ASSERT_EQ(a.size(), 1u);
  EXPECT_NE(a[0], b[0]);  // removing a space inside changes the text
  EXPECT_EQ(a[0], c[0]);
  EXPECT_TRUE(e.empty());
}

TEST(Dedup, ShortAndEmptyTexts) {
  DedupOptions opt;
  opt.mode = DedupMode::minhash;
  DedupKeyer k(opt);
  std::vector<uint64_t> a, b, e;
  k.keys("abc", a);
  k.keys("abc", b);
  k.keys("", e);
  EXPECT_EQ(a.size(), size_t(opt.bands));
  EXPECT_EQ(a, b);
  EXPECT_TRUE(e.empty());
  EXPECT_NEAR(opt.threshold(), 0.779, 0.01);
}
