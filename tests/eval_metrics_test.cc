// llm-jp-eval's metrics against the libraries it uses: char_f1 against fuzzywuzzy +
// python-Levenshtein, pearson/spearman against scipy, BLEU against sacrebleu; and the answer
// normalization cases (full-width digits, whitespace, multi-line answers).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <random>
#include <sstream>

#include "eval/metrics.h"
#include "eval/prompt.h"
#include "test_util.h"
#include "util/error.h"

using namespace tsumugi;
using namespace tsumugi::eval;
using tsumugi::testing::run_command;
using tsumugi::testing::TempDir;
using tsumugi::testing::write_bytes;
using nlohmann::json;

namespace {

// Pieces that exercise every branch of the processing: ASCII words and punctuation, Latin-1
// (dropped by fuzzywuzzy's force_ascii), full-width forms, kana, kanji, the long-vowel mark (a
// modifier letter), Greek capital sigma (Python's final-sigma lowering), U+0130, odd spaces.
const std::vector<std::string> kPieces = {
    "ls", "LS", "grep", "File", "files", "ディレクトリ", "の", "内容", "を", "一覧", "表示", "する", "ファイル",
    "コピー", "ー", "東京", "都", "１２３", "123", "3.5", "1,000", "a-b", "5-3", "Ｆｏｏ", "café", "naïve", "×",
    "ΣΑΣ", "İstanbul", "_x_", "(", ")", ".", ",", "!", "?", "\"", "'", "&amp;", "<skipped>", "/", "—", "、", "。",
    "「", "」", " ", " ", "  ", "\u3000", "\t", "\n", "\u00a0", "-\n", "ｶﾀｶﾅ", "①", "〇", "Ⅻ", "x²", "٣"};

std::string random_text(std::mt19937& rng, int max_pieces) {
  std::uniform_int_distribution<int> n(0, max_pieces), pick(0, static_cast<int>(kPieces.size()) - 1);
  std::string s;
  const int k = n(rng);
  for (int i = 0; i < k; ++i) {
    s += kPieces[pick(rng)];
    if (rng() % 3 == 0) s += " ";
  }
  return s;
}

// A variant of `s` by piece-level edits, so that pairs span the whole range of similarity.
std::string mutate(std::mt19937& rng, const std::string& s) {
  std::string t = s;
  const int edits = static_cast<int>(rng() % 4);
  for (int e = 0; e < edits; ++e) {
    const std::size_t at = t.empty() ? 0 : rng() % (t.size() + 1);
    // Insert at a character boundary.
    std::size_t pos = at;
    while (pos < t.size() && (static_cast<unsigned char>(t[pos]) & 0xC0) == 0x80) ++pos;
    t.insert(pos, kPieces[rng() % kPieces.size()]);
  }
  if (rng() % 4 == 0) t = " " + t + "  ";
  return t;
}

nlohmann::json run_oracle(const nlohmann::json& req) {
  TempDir dir;
  write_bytes(dir.file("req.json"), req.dump());
  std::string out;
  const int st = run_command("/usr/bin/python3 " TSUMUGI_SOURCE_DIR "/tests/eval/metrics_oracle.py " + dir.file("req.json") +
                                 " 2>" + dir.file("err"),
                             out);
  if (st != 0) {
    std::string err;
    run_command("cat " + dir.file("err"), err);
    ADD_FAILURE() << "the metrics oracle failed (install what it names; `make test` does): " << err << out;
    return nullptr;
  }
  return nlohmann::json::parse(out);
}

}  // namespace

TEST(EvalMetrics, CharF1EqualsFuzzywuzzyTokenSortRatio) {
  std::mt19937 rng(11);
  std::vector<std::pair<std::string, std::string>> pairs = {
      {"", ""}, {"", "a"}, {"!!!", "???"}, {"東京都", "東京"}, {"abc", "ABC"}, {"b a", "a b"},
      {"ΣΑΣ ΣΑΣ", "σας"}, {"İ", "i̇"}, {"café", "caf"}, {"１２３", "123"}};
  for (int i = 0; i < 400; ++i) {
    std::string a = random_text(rng, 8);
    pairs.emplace_back(a, rng() % 3 ? mutate(rng, a) : random_text(rng, 8));
  }
  nlohmann::json req = {{"pairs", pairs}};
  auto ref = run_oracle(req);
  ASSERT_FALSE(ref.is_null());
  int differ = 0;
  for (std::size_t i = 0; i < pairs.size(); ++i) {
    const int ours = token_sort_ratio(pairs[i].first, pairs[i].second);
    const int theirs = ref["token_sort_ratio"][i].get<int>();
    if (ours != theirs && ++differ <= 10)
      ADD_FAILURE() << "pair " << i << ": '" << pairs[i].first << "' vs '" << pairs[i].second << "': ours " << ours
                    << ", fuzzywuzzy " << theirs << " (processed: '" << fuzz_process_and_sort(pairs[i].first) << "' / '"
                    << fuzz_process_and_sort(pairs[i].second) << "')";
    EXPECT_NEAR(char_f1(pairs[i].first, pairs[i].second), theirs / 100.0, 5e-5);
  }
  EXPECT_EQ(differ, 0);
}

TEST(EvalMetrics, SentenceBleuEqualsSacrebleu) {
  std::mt19937 rng(5);
  const std::vector<std::string> words = {"the", "cat", "sat", "on", "a", "mat", "3.5", "1,000", "end.", "it's",
                                          "(see", "ls(1))", "x-y", "9-3", "&quot;q&quot;", "東京", "は", "—", "A",
                                          "Cat", "\"quoted\"", "e.g.", "U.S.", "5.", ",x", "$10", "100%"};
  std::vector<std::pair<std::string, std::string>> pairs = {{"the cat", "the cat"}, {"a", "b"}, {"x", "x y z w"}};
  for (int i = 0; i < 300; ++i) {
    auto sentence = [&](int len) {
      std::string s;
      for (int k = 0; k < len; ++k) s += (k ? " " : "") + words[rng() % words.size()];
      return s;
    };
    std::string ref = sentence(1 + static_cast<int>(rng() % 12));
    std::string hyp = rng() % 4 ? ref : sentence(1 + static_cast<int>(rng() % 12));
    // Drop, swap and insert words to spread the n-gram overlaps.
    std::vector<std::string> toks;
    std::stringstream ss(hyp);
    for (std::string w; ss >> w;) toks.push_back(w);
    if (toks.size() > 2 && rng() % 2) toks.erase(toks.begin() + static_cast<long>(rng() % toks.size()));
    if (toks.size() > 2 && rng() % 2) std::swap(toks[0], toks[1]);
    if (rng() % 2) toks.insert(toks.begin() + static_cast<long>(rng() % (toks.size() + 1)), words[rng() % words.size()]);
    hyp.clear();
    for (std::size_t k = 0; k < toks.size(); ++k) hyp += (k ? " " : "") + toks[k];
    if (hyp.empty()) hyp = "a";
    pairs.emplace_back(hyp, ref);
  }
  auto ref = run_oracle({{"pairs", pairs}});
  ASSERT_FALSE(ref.is_null());
  for (std::size_t i = 0; i < pairs.size(); ++i) {
    EXPECT_EQ(tokenize_13a(pairs[i].first), ref["tokens_13a"][i].get<std::string>()) << pairs[i].first;
    EXPECT_NEAR(sentence_bleu(pairs[i].first, pairs[i].second), ref["bleu"][i].get<double>(), 1e-9)
        << "'" << pairs[i].first << "' vs '" << pairs[i].second << "'";
  }
}

TEST(EvalMetrics, PearsonAndSpearmanEqualScipy) {
  std::mt19937 rng(3);
  json xy = json::array();
  std::vector<std::pair<std::vector<double>, std::vector<double>>> sets;
  for (int trial = 0; trial < 12; ++trial) {
    std::vector<double> x, y;
    const int n = 5 + trial * 7;
    for (int i = 0; i < n; ++i) {
      x.push_back(static_cast<double>(rng() % 6) * 0.8);  // ties, as JSTS's 0-5 scores have
      y.push_back(trial % 2 ? x.back() * 0.5 + static_cast<double>(rng() % 100) / 37.0 : static_cast<double>(rng() % 5));
    }
    sets.emplace_back(x, y);
    xy.push_back({x, y});
  }
  auto ref = run_oracle({{"pairs", json::array()}, {"xy", xy}});
  ASSERT_FALSE(ref.is_null());
  for (std::size_t t = 0; t < sets.size(); ++t) {
    EXPECT_NEAR(pearson(sets[t].first, sets[t].second), ref["pearson"][t].get<double>(), 1e-12) << "trial " << t;
    EXPECT_NEAR(spearman(sets[t].first, sets[t].second), ref["spearman"][t].get<double>(), 1e-12) << "trial " << t;
  }
  // Constant predictions: scipy gives NaN, llm-jp-eval reports 0.
  EXPECT_EQ(pearson({1, 2, 3}, {2, 2, 2}), 0.0);
  EXPECT_EQ(spearman({1, 2, 3}, {2, 2, 2}), 0.0);
}

TEST(EvalMetrics, ParseFloatAsLlmJpEval) {
  EXPECT_EQ(parse_float("3.5"), 3.5);
  EXPECT_EQ(parse_float("答え: 4"), 4.0);
  EXPECT_EQ(parse_float("-1.5"), 1.5);  // the sign is dropped with every other non-digit
  EXPECT_EQ(parse_float("no number"), -2.0);
  EXPECT_EQ(parse_float("1.2.3"), -2.0);
  EXPECT_EQ(parse_gold_float(" 2.25 "), 2.25);
  EXPECT_THROW(parse_gold_float("two"), Error);
}

TEST(EvalMetrics, SetF1SplitsLinesAsLlmJpEval) {
  EXPECT_DOUBLE_EQ(set_f1("a\nb", "a\nb"), 1.0);
  EXPECT_DOUBLE_EQ(set_f1("a\na\nc", "a\nb"), 0.5);  // pred set {a, c}: P = 1/2, R = 1/2
  EXPECT_DOUBLE_EQ(set_f1(" a \n", "a"), 2.0 * (0.5 * 1.0) / 1.5);  // lines " a " and "" → {a, ""}
  EXPECT_DOUBLE_EQ(set_f1("x", "a\nb"), 0.0);
}

TEST(EvalNormalization, ExactMatchAfterNfkcStripAndAnswerCut) {
  const PromptFormat v13 = prompt_format("v1.3"), v10 = prompt_format("v1.0");
  // Full-width digits and letters become ASCII; trailing whitespace goes.
  EXPECT_EQ(extract_answer(v13, "１２３ "), "123");
  EXPECT_EQ(exact_match(extract_answer(v13, "１２３ \n"), normalize_gold("123")), 1.0);
  EXPECT_EQ(extract_answer(v13, "  ＡＢＣ\t"), "ABC");
  EXPECT_EQ(extract_answer(v13, "ｶﾀｶﾅ"), "カタカナ");
  // v1.3 keeps everything before the first blank line (set_f1 answers span lines) ...
  EXPECT_EQ(extract_answer(v13, "entailment\n\n### 入力:\nnext"), "entailment");
  EXPECT_EQ(extract_answer(v13, "a\nb\n\nc"), "a\nb");
  // ... v1.0 only the first line.
  EXPECT_EQ(extract_answer(v10, "entailment\n### 入力：\nnext"), "entailment");
  EXPECT_EQ(extract_answer(v10, "ｌｓ \nmore"), "ls");
  EXPECT_EQ(extract_answer(v13, ""), "");
  // A generation cut inside a character is repaired, not an error.
  EXPECT_EQ(extract_answer(v13, std::string("ab\xE3\x81")), "ab\xEF\xBF\xBD");
  EXPECT_EQ(normalize_gold("ＡＢ１"), "AB1");
  EXPECT_EQ(exact_match("contradiction", "contradiction"), 1.0);
  EXPECT_EQ(exact_match("contradiction", "Contradiction"), 0.0);
}
