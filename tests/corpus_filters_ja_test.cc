// Japanese corpus filters (line_filter_ja, accept_japanese, char_ratio, kuten_run,
// sentence_length_ja, ng_words), the Aho–Corasick automaton, the built-in word lists and
// the llm-jp-v1-ja / swallow-ja presets. Filters are built through make_filter() so the
// registry and parameter checking are exercised too.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "corpus/filter.h"
#include "corpus/filters/ngwords.h"
#include "corpus/profile.h"
#include "test_util.h"
#include "text/aho_corasick.h"
#include "text/utf8.h"
#include "util/error.h"

using namespace tsumugi;
using namespace tsumugi::corpus;
using nlohmann::json;

namespace {

struct Outcome {
  bool kept;
  std::string reason;
  std::string text;
};

Outcome run(const json& spec, const std::string& text) {
  auto f = make_filter(spec);
  Document d;
  d.text = text;
  std::string reason;
  bool kept = f->apply(d, reason);
  return {kept, reason, d.text};
}

bool keeps(const json& spec, const std::string& text) { return run(spec, text).kept; }

std::string rep(const std::string& s, size_t n) {
  std::string r;
  for (size_t i = 0; i < n; ++i) r += s;
  return r;
}

const std::string kFamily = "\U0001F468\u200D\U0001F469\u200D\U0001F467";  // 👨‍👩‍👧: 5 code points

}  // namespace

// ---------------------------------------------------------------------------------------
// Aho–Corasick

TEST(JaAhoCorasick, ReportsEveryOverlappingOccurrenceByEnd) {
  text::AhoCorasick ac({"he", "she", "his", "hers"});
  std::vector<std::tuple<uint32_t, size_t, size_t>> got;
  ac.for_each_match("ushers", [&](uint32_t id, size_t b, size_t e) { got.emplace_back(id, b, e); });
  std::vector<std::tuple<uint32_t, size_t, size_t>> want = {{1, 1, 4}, {0, 2, 4}, {3, 2, 6}};
  EXPECT_EQ(got, want);
  EXPECT_TRUE(ac.contains_any("this"));
  EXPECT_FALSE(ac.contains_any("hxsx"));
  EXPECT_EQ(ac.pattern_count(), 4u);
}

TEST(JaAhoCorasick, Utf8PatternsAndAsciiCaseFolding) {
  text::AhoCorasick ac({"送料無料", "OFF", "ｱｲｳ"}, true);
  std::vector<uint32_t> ids;
  std::string t = "本日送料無料、全品off！ｱｲｳｴｵ";
  ac.for_each_match(t, [&](uint32_t id, size_t b, size_t e) {
    ids.push_back(id);
    EXPECT_EQ(t.substr(b, e - b).size(), ac.pattern_length(id));
  });
  EXPECT_EQ(ids, (std::vector<uint32_t>{0, 1, 2}));
  text::AhoCorasick exact({"OFF"}, false);
  EXPECT_FALSE(exact.contains_any("off"));
  EXPECT_TRUE(exact.contains_any("xOFFx"));
}

TEST(JaAhoCorasick, StopsWhenCallbackReturnsFalse) {
  text::AhoCorasick ac({"a"});
  int calls = 0;
  ac.for_each_match("aaaa", [&](uint32_t, size_t, size_t) { return ++calls < 2; });
  EXPECT_EQ(calls, 2);
}

TEST(JaAhoCorasick, AgreesWithNaiveSearchOnRandomInput) {
  std::mt19937 rng(7);
  const std::string alphabet[] = {"a", "b", "あ", "ア", "\xE3\x81"};  // incl. a partial sequence
  for (int round = 0; round < 30; ++round) {
    std::vector<std::string> pats;
    int np = 1 + rng() % 12;
    for (int i = 0; i < np; ++i) {
      std::string p;
      int len = 1 + rng() % 4;
      for (int k = 0; k < len; ++k) p += alphabet[rng() % 5];
      pats.push_back(p);
    }
    // Short texts, and long ones that the unordered scan cuts into four lanes.
    std::string t;
    int len = round % 2 ? 300 : 1500 + rng() % 3000;
    for (int k = 0; k < len; ++k) t += alphabet[rng() % 5];
    text::AhoCorasick ac(pats);
    std::multiset<std::tuple<uint32_t, size_t, size_t>> got, got_unordered, want;
    size_t last_end = 0;
    ac.for_each_match(t, [&](uint32_t id, size_t b, size_t e) {
      EXPECT_GE(e, last_end);
      last_end = e;
      got.emplace(id, b, e);
    });
    ac.for_each_match_unordered(t, [&](uint32_t id, size_t b, size_t e) { got_unordered.emplace(id, b, e); });
    for (uint32_t id = 0; id < pats.size(); ++id)
      for (size_t pos = t.find(pats[id]); pos != std::string::npos; pos = t.find(pats[id], pos + 1))
        want.emplace(id, pos, pos + pats[id].size());
    ASSERT_EQ(got, want) << "round " << round;
    ASSERT_EQ(got_unordered, want) << "round " << round;
  }
}

TEST(JaAhoCorasick, EmptyAutomatonAndEmptyPattern) {
  text::AhoCorasick none;
  EXPECT_FALSE(none.contains_any("anything"));
  int calls = 0;
  none.for_each_match_unordered(std::string(5000, 'a'), [&](uint32_t, size_t, size_t) { ++calls; });
  EXPECT_EQ(calls, 0);
  text::AhoCorasick no_patterns(std::vector<std::string>{});
  EXPECT_FALSE(no_patterns.contains_any("anything"));
  EXPECT_THROW(text::AhoCorasick({"ok", ""}), Error);
}

// ---------------------------------------------------------------------------------------
// line_filter_ja

TEST(JaLineFilter, KeepsKanaLinesWithTheirOwnLineEndings) {
  auto r = run({{"type", "line_filter_ja"}}, "こんにちは\nhello world\n世界です\r\nabc\nカタカナ");
  EXPECT_TRUE(r.kept);
  EXPECT_EQ(r.text, "こんにちは\n世界です\r\nカタカナ");
  // A kept line followed only by dropped lines keeps its own '\n'.
  r = run({{"type", "line_filter_ja"}}, "ひらがな\r\nEnglish only\n");
  EXPECT_EQ(r.text, "ひらがな\r\n");
  // Nothing dropped: the text is untouched byte for byte.
  std::string all = "あ\r\n\xE3\x82\xA2\nか\u3099\n";
  EXPECT_EQ(run({{"type", "line_filter_ja"}}, all).text, all);
}

TEST(JaLineFilter, DropsLinesWithUrls) {
  auto r = run({{"type", "line_filter_ja"}},
               "詳しくは https://example.jp/a を見てください\nこれは本文です\nリンク http://x.y\n"
               "サイト www.example.com です\nURLは HTTPS://EXAMPLE.COM です");
  EXPECT_EQ(r.text, "これは本文です\n");
  r = run({{"type", "line_filter_ja"}, {"drop_urls", false}}, "詳しくは https://example.jp を見て");
  EXPECT_TRUE(r.kept);
  EXPECT_EQ(r.text, "詳しくは https://example.jp を見て");
  // "http" without "://" is not a URL.
  EXPECT_TRUE(keeps({{"type", "line_filter_ja"}}, "httpとwwwの話です"));
}

TEST(JaLineFilter, AsciiRunBoundaryExcludesCrOfCrlf) {
  const json f = {{"type", "line_filter_ja"}};
  EXPECT_EQ(run(f, "あ" + std::string(99, 'x') + "い").text, "あ" + std::string(99, 'x') + "い");
  EXPECT_FALSE(run(f, "あ" + std::string(100, 'x') + "い").kept);
  // Spaces and punctuation are ASCII too (LLM-jp's [\u0000-\u007F]{100,}).
  EXPECT_FALSE(run(f, "あ" + rep("a b.", 25)).kept);
  // The '\r' of a CRLF line ending is not content: 99 ASCII + CR stays.
  std::string crlf = "あ" + std::string(99, 'x') + "\r\nい\r\n";
  EXPECT_EQ(run(f, crlf).text, crlf);
  // A run is broken by any non-ASCII character (full-width letters included).
  EXPECT_TRUE(run(f, "あ" + std::string(60, 'x') + "Ａ" + std::string(60, 'x')).kept);
  EXPECT_TRUE(run({{"type", "line_filter_ja"}, {"max_ascii_run", 0}}, "あ" + std::string(500, 'x')).kept);
  EXPECT_FALSE(run({{"type", "line_filter_ja"}, {"max_ascii_run", 5}}, "あabcde").kept);
  EXPECT_TRUE(run({{"type", "line_filter_ja"}, {"max_ascii_run", 5}}, "あabcd").kept);
}

TEST(JaLineFilter, KanaClassesEdgeCases) {
  const json f = {{"type", "line_filter_ja"}};
  EXPECT_TRUE(keeps(f, "ｱｲｳ"));                       // half-width katakana
  EXPECT_TRUE(keeps(f, "ー"));                         // long vowel mark (LLM-jp lists it)
  EXPECT_TRUE(keeps(f, "ゝ"));                         // hiragana iteration mark
  EXPECT_FALSE(keeps(f, "ＡＢＣ１２３"));               // full-width ASCII
  EXPECT_FALSE(keeps(f, "漢字"));                       // kanji only
  EXPECT_TRUE(keeps(f, "漢字だけ"));
  EXPECT_FALSE(keeps(f, "・・・"));                     // katakana middle dot is punctuation
  EXPECT_FALSE(keeps(f, "\u3099"));                    // a lone combining voiced mark is not kana
  EXPECT_TRUE(keeps(f, "か\u3099"));
  EXPECT_FALSE(keeps(f, kFamily + " 家族"));
  EXPECT_TRUE(keeps(f, kFamily + " かぞく"));
  EXPECT_EQ(run(f, "写真 " + kFamily + "\nです").text, "です");
}

TEST(JaLineFilter, RejectsWhenNoLineIsLeft) {
  auto r = run({{"type", "line_filter_ja"}}, "");
  EXPECT_FALSE(r.kept);
  EXPECT_EQ(r.reason, "no line left (empty text)");
  r = run({{"type", "line_filter_ja"}}, "abc\n\nhttp://a.b です\n" + std::string(120, 'z') + "\n");
  EXPECT_FALSE(r.kept);
  EXPECT_EQ(r.reason, "no line left (4 lines: 2 without kana, 1 with a URL, 1 with an ASCII run >= 100)");
  r = run({{"type", "line_filter_ja"}, {"require_kana", false}}, "abc\n\ndef");
  EXPECT_TRUE(r.kept);
  EXPECT_EQ(r.text, "abc\n\ndef");
  EXPECT_THROW(make_filter({{"type", "line_filter_ja"}, {"max_ascii_run", -1}}), Error);
  EXPECT_THROW(make_filter({{"type", "line_filter_ja"}, {"drop_url", true}}), Error);  // misspelled
}

TEST(JaLineFilter, ModeAndJoinParamsAreChecked) {
  EXPECT_THROW(make_filter({{"type", "line_filter_ja"}, {"mode", "cutt"}}), Error);
  EXPECT_THROW(make_filter({{"type", "line_filter_ja"}, {"join", "newline"}}), Error);
  EXPECT_NO_THROW(make_filter({{"type", "line_filter_ja"}, {"mode", "cut"}, {"join", "none"}}));
  EXPECT_NO_THROW(make_filter({{"type", "line_filter_ja"}, {"mode", "drop_line"}, {"join", "keep"}}));
}

TEST(JaLineFilter, DropLineModeJoinNoneConcatenatesLineContents) {
  const json f = {{"type", "line_filter_ja"}, {"join", "none"}};
  auto r = run(f, "こんにちは\r\nhello world\n世界です\nhttp://a.jp です\nカタカナ\n");
  EXPECT_TRUE(r.kept);
  EXPECT_EQ(r.text, "こんにちは世界ですカタカナ");  // CR of the CRLF is part of the line ending here
  r = run({{"type", "line_filter_ja"}, {"join", "none"}, {"require_kana", false}}, "\n\r\n");
  EXPECT_FALSE(r.kept);
  EXPECT_EQ(r.reason, "no text left (2 empty lines kept)");
}

TEST(JaLineFilterCut, CutsUrlSpansAndKeepsTheLine) {
  const json f = {{"type", "line_filter_ja"}, {"mode", "cut"}};
  auto r = run(f, "詳しくは https://example.jp/a?b=c&d=(e)#f~g%20+h を見てください\nこれは本文です\n");
  EXPECT_TRUE(r.kept);
  EXPECT_EQ(r.text, "詳しくは  を見てください\nこれは本文です\n");
  // Case-sensitive scheme; no "www." rule; "http://" with nothing after it is no match.
  for (std::string s : {"URLは HTTPS://EXAMPLE.COM です", "サイト www.example.com です", "httpとwwwの話です",
                        "http:// だけ", "https:/ ではない", "ftp://example.com です"})
    EXPECT_EQ(run(f, s).text, s) << s;
  // Every match in a line goes; a match starts anywhere (no word boundary before it).
  EXPECT_EQ(run(f, "あhttp://a.b/ いxhttps://c.d う").text, "あ いx う");
  // The URL class stops at characters outside [\w/:%#$&?()~.=+-] ...
  EXPECT_EQ(run(f, "見て<http://a.jp/x>と[https://b.jp]と\"http://c.jp\"です").text, "見て<>と[]と\"\"です");
  // ... but \w is Unicode: kanji and kana right after a URL are eaten up to a space, 、, 。,
  // 「, ・ or U+3000 (what LLM-jp's regex did).
  EXPECT_EQ(run(f, "リンクhttps://example.jp/ページです。次の文").text, "リンク。次の文");
  EXPECT_EQ(run(f, "出典は:http://a.jp/記事、参照").text, "出典は:、参照");
  EXPECT_EQ(run(f, "http://a.jp漢字ひらがなカタカナーＡ１_ｶﾀ\u3000残る").text, "\u3000残る");
  EXPECT_EQ(run(f, "http://a.jp/x・y「あ」").text, "・y「あ」");
  EXPECT_EQ(run(f, "あhttp://a.jpé\u0301ⅷ\u200dⒶ²").text, "あ²");  // letters, marks, Nl, ZWJ, circled A; not ²
  // The kana test reads the line before cutting: kana inside a URL still keeps the line.
  r = run(f, "http://a.jp/です\nこんにちは");
  EXPECT_TRUE(r.kept);
  EXPECT_EQ(r.text, "\nこんにちは");
  // drop_urls = false leaves URLs alone.
  EXPECT_EQ(run({{"type", "line_filter_ja"}, {"mode", "cut"}, {"drop_urls", false}}, "見て https://a.jp/ね").text,
            "見て https://a.jp/ね");
}

TEST(JaLineFilterCut, AsciiRunsAreMeasuredAfterUrlRemoval) {
  const json f = {{"type", "line_filter_ja"}, {"mode", "cut"}};
  const std::string x49(49, 'x'), x50(50, 'x'), y50(50, 'y');
  const std::string y49(49, 'y');
  // 50 + 1 + 49 ASCII around a URL become one run of 100 once the URL is gone.
  EXPECT_EQ(run(f, "あ" + x50 + "http://example.com/ " + y49 + "い").text, "あい");
  EXPECT_EQ(run(f, "あ" + x49 + "http://example.com/ " + y49 + "い").text, "あ" + x49 + " " + y49 + "い");
  // Without the space the URL would eat the y's and the い (\\w) as well.
  EXPECT_EQ(run(f, "あ" + x50 + "http://example.com/" + y50 + "い。").text, "あ" + x50 + "。");
  // A URL that ends in Japanese text: the ASCII after it joins the run before it.
  EXPECT_EQ(run(f, "あ" + x50 + "http://a.jp/です " + y49 + "。").text, "あ。");
  // Every long run goes, wherever it is in the line; short ones stay.
  EXPECT_EQ(run(f, std::string(120, 'a') + "か" + std::string(30, 'b') + "き" + std::string(100, ' ')).text,
            "か" + std::string(30, 'b') + "き");
  // Runs are per line, even when join = "none" puts two lines' ASCII side by side.
  EXPECT_EQ(run({{"type", "line_filter_ja"}, {"mode", "cut"}, {"join", "none"}}, "あ" + x50 + "\n" + y50 + "い").text,
            "あ" + x50 + y50 + "い");
  // max_ascii_run is configurable; 0 disables.
  EXPECT_EQ(run({{"type", "line_filter_ja"}, {"mode", "cut"}, {"max_ascii_run", 5}}, "あabcdeいabcd").text,
            "あいabcd");
  EXPECT_EQ(run({{"type", "line_filter_ja"}, {"mode", "cut"}, {"max_ascii_run", 0}}, "あ" + std::string(500, 'x')).text,
            "あ" + std::string(500, 'x'));
}

TEST(JaLineFilterCut, AsciiRunBoundary99And100) {
  const json f = {{"type", "line_filter_ja"}, {"mode", "cut"}};
  const std::string x99(99, 'x'), x100(100, 'x');
  EXPECT_EQ(run(f, "あ" + x99 + "い").text, "あ" + x99 + "い");
  EXPECT_EQ(run(f, "あ" + x100 + "い").text, "あい");
  EXPECT_EQ(run(f, x99 + "あ").text, x99 + "あ");
  EXPECT_EQ(run(f, x100 + "あ").text, "あ");
  EXPECT_EQ(run(f, "あ" + x99).text, "あ" + x99);
  EXPECT_EQ(run(f, "あ" + x100).text, "あ");
  // Spaces, punctuation and control characters are ASCII too ([\x00-\x7f]).
  EXPECT_EQ(run(f, "あ" + rep("a b.\t", 20) + "い").text, "あい");
  EXPECT_EQ(run(f, "あ" + rep("a b.\t", 19) + "abcい").text, "あ" + rep("a b.\t", 19) + "abcい");
  // A run is broken by any non-ASCII character (full-width letters included).
  EXPECT_EQ(run(f, "あ" + std::string(60, 'x') + "Ａ" + std::string(60, 'x')).text,
            "あ" + std::string(60, 'x') + "Ａ" + std::string(60, 'x'));
}

TEST(JaLineFilterCut, JoinKeepAndNone) {
  const std::string in = "一行目です\nEnglish only\n二行目 http://a.jp/ です\n\nカタカナ\n";
  auto keep = run({{"type", "line_filter_ja"}, {"mode", "cut"}}, in);
  EXPECT_TRUE(keep.kept);
  EXPECT_EQ(keep.text, "一行目です\n二行目  です\nカタカナ\n");
  auto none = run({{"type", "line_filter_ja"}, {"mode", "cut"}, {"join", "none"}}, in);
  EXPECT_TRUE(none.kept);
  EXPECT_EQ(none.text, "一行目です二行目  ですカタカナ");  // LLM-jp: "".join(lines)
  // A last line without '\n' gets none added; nothing dropped and nothing cut: untouched.
  EXPECT_EQ(run({{"type", "line_filter_ja"}, {"mode", "cut"}}, "あ\nい").text, "あ\nい");
  const std::string all = "あ\r\n\xE3\x82\xA2\nか\u3099\n";
  EXPECT_EQ(run({{"type", "line_filter_ja"}, {"mode", "cut"}}, all).text, all);
}

TEST(JaLineFilterCut, CrlfCrIsLineContentAsInPythonSplit) {
  const json keep = {{"type", "line_filter_ja"}, {"mode", "cut"}};
  const json none = {{"type", "line_filter_ja"}, {"mode", "cut"}, {"join", "none"}};
  EXPECT_EQ(run(keep, "あ\r\nabc\r\nい\r\n").text, "あ\r\nい\r\n");
  EXPECT_EQ(run(none, "あ\r\nabc\r\nい\r\n").text, "あ\rい\r");  // what "".join(text.split("\n")) keeps
  // The '\r' counts toward an ASCII run and goes with it: 99 x + CR is a run of 100.
  const std::string x98(98, 'x'), x99(99, 'x');
  EXPECT_EQ(run(keep, "あ" + x99 + "\r\nい\r\n").text, "あ\nい\r\n");
  EXPECT_EQ(run(none, "あ" + x99 + "\r\nい\r\n").text, "あい\r");
  EXPECT_EQ(run(keep, "あ" + x98 + "\r\nい").text, "あ" + x98 + "\r\nい");
  // A URL stops at the '\r'.
  EXPECT_EQ(run(keep, "見て http://a.jp/x\r\nね").text, "見て \r\nね");
}

TEST(JaLineFilterCut, RejectsWhenOnlyWhitespaceIsLeft) {
  const json f = {{"type", "line_filter_ja"}, {"mode", "cut"}};
  auto r = run(f, "");
  EXPECT_FALSE(r.kept);
  EXPECT_EQ(r.reason, "empty text");
  r = run(f, "abc\n\n漢字\n");
  EXPECT_FALSE(r.kept);
  EXPECT_EQ(r.reason, "no line with kana (4 lines)");
  // Kana only inside URLs: the lines are kept, but nothing but whitespace (U+3000, \t, \r,
  // the kept '\n') is left.
  r = run(f, "\u3000http://a.jp/です \t\r\nhttps://b.jp/ページ\u00a0\n" + std::string(150, ' ') + "http://c.jp/ー");
  EXPECT_FALSE(r.kept);
  EXPECT_EQ(r.reason, "only whitespace left after cutting URLs and ASCII runs (3 of 3 lines kept)");
  EXPECT_FALSE(run({{"type", "line_filter_ja"}, {"mode", "cut"}, {"join", "none"}}, "http://a.jp/です\nhttp://b.jp/ね").kept);
  // One visible character is enough.
  r = run(f, "http://a.jp/です 。");
  EXPECT_TRUE(r.kept);
  EXPECT_EQ(r.text, " 。");
  // require_kana = false keeps every line.
  r = run({{"type", "line_filter_ja"}, {"mode", "cut"}, {"require_kana", false}}, "abc\n\nhttp://x.y def");
  EXPECT_TRUE(r.kept);
  EXPECT_EQ(r.text, "abc\n\n def");
}

TEST(JaLineFilterCut, KanaIsUnicodeScriptHiraganaKatakanaOrChoonpu) {
  for (const char* mode : {"cut", "drop_line"}) {
    const json f = {{"type", "line_filter_ja"}, {"mode", mode}};
    EXPECT_TRUE(keeps(f, "ｱ")) << mode;
    EXPECT_TRUE(keeps(f, "ー")) << mode;
    EXPECT_TRUE(keeps(f, "ゟ")) << mode;           // U+309F hiragana digraph yori
    EXPECT_TRUE(keeps(f, "ヿ")) << mode;           // U+30FF katakana digraph koto
    EXPECT_TRUE(keeps(f, "\u32D0")) << mode;       // ㋐ circled katakana
    EXPECT_TRUE(keeps(f, "\u3300")) << mode;       // ㌀ squared katakana
    EXPECT_TRUE(keeps(f, "\U0001B001")) << mode;   // hentaigana
    EXPECT_TRUE(keeps(f, "\U0001F200")) << mode;   // 🈀 squared hiragana hoka
    EXPECT_FALSE(keeps(f, "ｰ")) << mode;           // U+FF70 half-width prolonged mark: Common script
    EXPECT_FALSE(keeps(f, "ﾞﾟ")) << mode;          // half-width sound marks: Common
    EXPECT_FALSE(keeps(f, "゛゜\u30A0")) << mode;  // ゛ ゜ ゠: Common
    EXPECT_FALSE(keeps(f, "\u32FF")) << mode;      // ㋿ (Reiwa): Common
    EXPECT_TRUE(keeps(f, "漢字\U0001B122")) << mode;
    EXPECT_FALSE(keeps(f, "漢字\u3099\u309A")) << mode;  // combining sound marks: Inherited
  }
}

// A direct (slow) transcription of LLM-jp's extract_japanese_text over code points, for an
// alphabet whose kana / \w / ASCII classes are spelled out here, compared with the filter
// on random texts.
TEST(JaLineFilterCut, AgreesWithAReferenceOnRandomTexts) {
  struct Ch {
    const char* utf8;
    char32_t cp;
    bool kana, word;
  };
  const std::vector<Ch> alphabet = {
      {"a", 'a', false, true},   {"h", 'h', false, true},      {"t", 't', false, true},
      {"p", 'p', false, true},   {"s", 's', false, true},      {":", ':', false, false},
      {"/", '/', false, false},  {".", '.', false, false},     {" ", ' ', false, false},
      {"_", '_', false, true},   {"%", '%', false, false},     {"<", '<', false, false},
      {"\r", '\r', false, false}, {"\n", '\n', false, false},  {"あ", 0x3042, true, true},
      {"ー", 0x30FC, true, true}, {"ｰ", 0xFF70, false, true},   {"・", 0x30FB, false, false},
      {"。", 0x3002, false, false}, {"漢", 0x6F22, false, true}, {"\u3000", 0x3000, false, false},
      {"é", 0xE9, false, true},  {"²", 0xB2, false, false},    {"ｱ", 0xFF71, true, true}};
  auto is_url_char = [&](const Ch& c) {
    return c.word || std::string_view("/:%#$&?()~.=+-").find(char(c.cp)) != std::string_view::npos;
  };
  std::mt19937 rng(7);
  const size_t run_len = 6;  // small, so random texts hit it often
  for (bool keep_join : {true, false}) {
    const json f = {{"type", "line_filter_ja"}, {"mode", "cut"}, {"join", keep_join ? "keep" : "none"},
                    {"max_ascii_run", run_len}};
    for (int iter = 0; iter < 3000; ++iter) {
      std::vector<const Ch*> in;
      const size_t n = rng() % 40;
      for (size_t i = 0; i < n; ++i) {
        if (rng() % 6 == 0) {  // plant "http://" or "https://"
          for (size_t k : {1, 2, 2, 3}) in.push_back(&alphabet[k]);
          if (rng() % 2) in.push_back(&alphabet[4]);
          for (size_t k : {5, 6, 6}) in.push_back(&alphabet[k]);
        }
        in.push_back(&alphabet[rng() % alphabet.size()]);
      }
      std::string text;
      for (auto* c : in) text += c->utf8;
      // Reference: split on '\n'; kana test; URL cut; ASCII-run cut; join.
      std::vector<std::vector<const Ch*>> lines(1);
      for (auto* c : in) {
        if (c->cp == '\n') lines.emplace_back();
        else lines.back().push_back(c);
      }
      std::string expect;
      for (size_t li = 0; li < lines.size(); ++li) {
        const auto& l = lines[li];
        if (!std::any_of(l.begin(), l.end(), [](const Ch* c) { return c->kana; })) continue;
        std::vector<const Ch*> cut;
        for (size_t i = 0; i < l.size();) {
          auto at = [&](size_t k, char c) { return k < l.size() && l[k]->cp == char32_t(c); };
          size_t j = i;
          bool scheme = at(j, 'h') && at(j + 1, 't') && at(j + 2, 't') && at(j + 3, 'p');
          if (scheme) {
            j += 4;
            if (at(j, 's') && at(j + 1, ':') && at(j + 2, '/') && at(j + 3, '/')) j += 4;
            else if (at(j, ':') && at(j + 1, '/') && at(j + 2, '/')) j += 3;
            else scheme = false;
          }
          if (scheme) {
            size_t k = j;
            while (k < l.size() && is_url_char(*l[k])) ++k;
            if (k > j) {
              i = k;
              continue;
            }
          }
          cut.push_back(l[i++]);
        }
        std::string line;
        for (size_t i = 0; i < cut.size();) {
          size_t j = i;
          while (j < cut.size() && cut[j]->cp < 0x80) ++j;
          if (j > i) {
            if (j - i < run_len)
              for (size_t k = i; k < j; ++k) line += cut[k]->utf8;
            i = j;
          } else {
            line += cut[i++]->utf8;
          }
        }
        expect += line;
        if (keep_join && li + 1 < lines.size()) expect += "\n";
      }
      auto r = run(f, text);
      bool only_space = true;
      for (size_t i = 0; i < expect.size();) {
        if (expect.compare(i, 3, "\u3000") == 0) i += 3;
        else if (expect[i] == ' ' || expect[i] == '\r' || expect[i] == '\n') ++i;
        else {
          only_space = false;
          break;
        }
      }
      ASSERT_EQ(r.kept, !only_space) << json(text).dump() << " expect " << json(expect).dump();
      if (r.kept) {
        ASSERT_EQ(r.text, expect) << json(text).dump();
      }
    }
  }
}

// ---------------------------------------------------------------------------------------
// accept_japanese

TEST(JaAcceptJapanese, KanaWithinTheFirst50CodePoints) {
  const json f = {{"type", "accept_japanese"}};
  EXPECT_TRUE(keeps(f, std::string(49, 'a') + "あ"));
  auto r = run(f, std::string(50, 'a') + "あ");  // HojiChar's own doctest
  EXPECT_FALSE(r.kept);
  EXPECT_EQ(r.reason, "no hiragana/katakana in the first 50 chars");
  EXPECT_TRUE(keeps(f, rep("漢", 49) + "あ"));  // code points, not bytes
  EXPECT_FALSE(keeps(f, rep("漢", 50) + "あ"));
  EXPECT_TRUE(keeps(f, rep(kFamily, 9) + "あ"));   // 45 code points before
  EXPECT_FALSE(keeps(f, rep(kFamily, 10) + "あ"));  // 50 code points before
  EXPECT_FALSE(keeps(f, "This is English document"));
  EXPECT_FALSE(keeps(f, ""));
  EXPECT_TRUE(keeps({{"type", "accept_japanese"}, {"within_chars", 3}}, "abア"));
  EXPECT_FALSE(keeps({{"type", "accept_japanese"}, {"within_chars", 3}}, "abcア"));
  EXPECT_THROW(make_filter({{"type", "accept_japanese"}, {"within_chars", 0}}), Error);
}

TEST(JaAcceptJapanese, UsesHojiCharKanaRanges) {
  const json f = {{"type", "accept_japanese"}};
  EXPECT_TRUE(keeps(f, "ん"));    // U+3093, last of [ぁ-ん]
  EXPECT_TRUE(keeps(f, "ン"));    // U+30F3, last of [ァ-ン]
  EXPECT_FALSE(keeps(f, "ゔ"));   // U+3094
  EXPECT_FALSE(keeps(f, "ヴ"));   // U+30F4
  EXPECT_FALSE(keeps(f, "ー"));
  EXPECT_FALSE(keeps(f, "ｱｲｳ"));  // half-width katakana is outside HojiChar's ranges
  EXPECT_FALSE(keeps(f, "ＡＢＣ１２３"));
  EXPECT_TRUE(keeps(f, "か\u3099"));
}

// ---------------------------------------------------------------------------------------
// char_ratio

TEST(JaCharRatio, FractionsOverAllCodePointsWithExactBoundaries) {
  const json f = {{"type", "char_ratio"}, {"min_hiragana", 0.2}};
  EXPECT_TRUE(keeps(f, "あ漢漢漢漢"));  // exactly 0.2
  auto r = run(f, "あ漢漢漢漢漢");
  EXPECT_FALSE(r.kept);
  EXPECT_EQ(r.reason, "hiragana fraction 0.167 < 0.2");
  r = run({{"type", "char_ratio"}, {"max_katakana", 0.5}}, "ｱｲｳあ");  // half-width katakana counts
  EXPECT_FALSE(r.kept);
  EXPECT_EQ(r.reason, "katakana fraction 0.75 > 0.5");
  EXPECT_TRUE(keeps({{"type", "char_ratio"}, {"max_katakana", 0.5}}, "カナかな"));
  r = run({{"type", "char_ratio"}, {"min_japanese", 0.5}}, "ＡＢＣ１２３");
  EXPECT_FALSE(r.kept);
  EXPECT_EQ(r.reason, "Japanese fraction 0 < 0.5");
  // Emoji ZWJ sequences count as their code points: 5 + 5 Japanese = 0.5.
  EXPECT_TRUE(keeps({{"type", "char_ratio"}, {"min_japanese", 0.5}}, kFamily + "日本語です"));
  EXPECT_FALSE(keeps({{"type", "char_ratio"}, {"min_japanese", 0.5}}, kFamily + "日本語で"));
  // か + U+3099 are two hiragana code points.
  EXPECT_TRUE(keeps({{"type", "char_ratio"}, {"min_hiragana", 1.0}}, "か\u3099"));
  // A value just below the bound never prints as the bound itself.
  r = run({{"type", "char_ratio"}, {"min_hiragana", 0.2}}, rep("あ", 19999) + std::string(80001, 'a'));
  EXPECT_EQ(r.reason, "hiragana fraction 0.19999 < 0.2");
}

TEST(JaCharRatio, SwallowDenominatorAndPunctuation) {
  // Swallow: hiragana / (kana + kanji + 、，。．！？), Japanese / all.
  json f = {{"type", "char_ratio"}, {"denominator", "japanese"}, {"punctuation_is_japanese", true},
            {"min_hiragana", 0.2}, {"max_katakana", 0.5}, {"min_japanese", 0.5}};
  // あ漢。 are 3 Japanese chars of 6: hiragana 1/3, Japanese 3/6 = 0.5.
  EXPECT_TRUE(keeps(f, "あ漢。abc"));
  auto r = run(f, "あ漢。abcd");
  EXPECT_FALSE(r.kept);
  EXPECT_EQ(r.reason, "Japanese fraction 0.429 < 0.5");
  r = run(f, "あ漢漢漢漢漢。");  // 1/7 of Japanese chars
  EXPECT_EQ(r.reason, "hiragana fraction of Japanese chars 0.143 < 0.2");
  // Without punctuation counted, 。 is not Japanese.
  json g = {{"type", "char_ratio"}, {"min_japanese", 0.5}};
  EXPECT_FALSE(keeps(g, "あ。。"));
  EXPECT_TRUE(keeps({{"type", "char_ratio"}, {"min_japanese", 0.5}, {"punctuation_is_japanese", true}}, "あ。。"));
}

TEST(JaCharRatio, MinJapaneseCharsEmptyTextAndParamChecks) {
  json f = {{"type", "char_ratio"}, {"min_japanese_chars", 400}};
  EXPECT_TRUE(keeps(f, rep("あ", 400)));
  auto r = run(f, rep("あ", 399) + "a");
  EXPECT_FALSE(r.kept);
  EXPECT_EQ(r.reason, "Japanese chars 399 < 400");
  // Empty text: every fraction is 0.
  EXPECT_FALSE(keeps({{"type", "char_ratio"}, {"min_hiragana", 0.2}}, ""));
  EXPECT_TRUE(keeps({{"type", "char_ratio"}, {"max_katakana", 0.5}}, ""));
  EXPECT_THROW(make_filter({{"type", "char_ratio"}}), Error);
  EXPECT_THROW(make_filter({{"type", "char_ratio"}, {"min_hiragana", 1.5}}), Error);
  EXPECT_THROW(make_filter({{"type", "char_ratio"}, {"min_hiragana", 0.6}, {"max_hiragana", 0.5}}), Error);
  EXPECT_THROW(make_filter({{"type", "char_ratio"}, {"min_hiragana", 0.2}, {"denominator", "kana"}}), Error);
  EXPECT_THROW(make_filter({{"type", "char_ratio"}, {"min_hiragna", 0.2}}), Error);
}

// ---------------------------------------------------------------------------------------
// kuten_run

TEST(JaKutenRun, MatchesHojiCharDiscardRareKuten) {
  json f = {{"type", "kuten_run"}, {"max_average_run", 4}};
  EXPECT_TRUE(keeps(f, "おはよ。"));  // HojiChar doctests
  auto r = run(f, "おはよう。");
  EXPECT_FALSE(r.kept);
  EXPECT_EQ(r.reason, "average run 5 chars per '。' > 4 (5 chars, 1 '。')");
  // Default 250 (LLM-jp v1): exactly 250 chars per kuten passes.
  EXPECT_TRUE(keeps({{"type", "kuten_run"}}, rep("あ", 249) + "。"));
  EXPECT_FALSE(keeps({{"type", "kuten_run"}}, rep("あ", 250) + "。"));
  EXPECT_TRUE(keeps({{"type", "kuten_run"}}, rep(rep("あ", 100) + "。", 2) + rep("い", 298)));  // 500 / 2
  EXPECT_FALSE(keeps({{"type", "kuten_run"}}, rep(rep("あ", 100) + "。", 2) + rep("い", 299)));
  r = run({{"type", "kuten_run"}}, "句点のない文");
  EXPECT_EQ(r.reason, "no '。' in 6 chars (average run > 250)");
  EXPECT_TRUE(keeps({{"type", "kuten_run"}}, ""));  // HojiChar keeps an empty text
  // Full-width period and half-width 。 (U+FF61) are not kuten.
  EXPECT_FALSE(keeps(f, "あいう．えおか．"));
  EXPECT_FALSE(keeps(f, "あいう｡えおか｡"));
  // Every code point counts, line breaks included (len() in Python).
  EXPECT_TRUE(keeps(f, "あ\r\n。"));
  EXPECT_FALSE(keeps(f, "あい\r\n。"));
}

TEST(JaKutenRun, MinAverageRunAndParamChecks) {
  json f = {{"type", "kuten_run"}, {"min_average_run", 2}};
  EXPECT_FALSE(keeps(f, "。。。"));
  EXPECT_TRUE(keeps(f, "あ。あ。"));
  EXPECT_THROW(make_filter({{"type", "kuten_run"}, {"max_average_run", 0}}), Error);
  EXPECT_THROW(make_filter({{"type", "kuten_run"}, {"min_average_run", 300}}), Error);
}

// ---------------------------------------------------------------------------------------
// sentence_length_ja

TEST(JaSentenceLength, MeanBoundsAreInclusive) {
  const json f = {{"type", "sentence_length_ja"}};  // Swallow defaults 20..90
  auto s = [](size_t n) { return rep("あ", n - 1) + "。"; };
  EXPECT_TRUE(keeps(f, s(20) + s(20)));
  auto r = run(f, s(19) + s(20));
  EXPECT_FALSE(r.kept);
  EXPECT_EQ(r.reason, "mean sentence length 19.5 < 20 (2 sentences)");
  EXPECT_TRUE(keeps(f, s(90)));
  r = run(f, s(91));
  EXPECT_EQ(r.reason, "mean sentence length 91 > 90 (1 sentence)");
  r = run(f, "あいうえお。かきくけこ。");
  EXPECT_EQ(r.reason, "mean sentence length 6 < 20 (2 sentences)");
}

TEST(JaSentenceLength, SplittingRulesFollowSwallow) {
  const json exact20 = {{"type", "sentence_length_ja"}, {"min_mean", 20}, {"max_mean", 20}};
  // Line breaks end sentences; the '\r' of CRLF is not counted.
  EXPECT_TRUE(keeps(exact20, rep("あ", 20) + "\r\n" + rep("い", 20)));
  EXPECT_TRUE(keeps(exact20, rep("あ", 20) + "\n\n\n" + rep("い", 20) + "\n"));
  // All six terminators, each counted in its sentence.
  for (std::string t : {"。", "．", "！", "？", "!", "?"})
    EXPECT_TRUE(keeps(exact20, rep("あ", 19) + t + rep("い", 19) + t)) << t;
  // A terminator with nothing before it belongs to no sentence (Swallow's regex).
  EXPECT_TRUE(keeps(exact20, rep("あ", 19) + "。。。！" + rep("い", 19) + "？"));
  // Half-width katakana and emoji are one char per code point; a ZWJ family is 5.
  EXPECT_TRUE(keeps(exact20, rep("ｱ", 19) + "。"));
  EXPECT_TRUE(keeps(exact20, kFamily + rep("ａ", 14) + "。"));
  auto r = run({{"type", "sentence_length_ja"}}, "");
  EXPECT_FALSE(r.kept);
  EXPECT_EQ(r.reason, "no sentence");
  EXPECT_TRUE(keeps({{"type", "sentence_length_ja"}, {"min_mean", 0}}, "。。\n"));
}

TEST(JaSentenceLength, LongestSentenceAndEllipsis) {
  json f = {{"type", "sentence_length_ja"}, {"min_mean", 0}, {"max_mean", 1000}, {"max_sentence_chars", 200}};
  EXPECT_TRUE(keeps(f, rep("あ", 199) + "。"));
  auto r = run(f, rep("あ", 200) + "。短い。");
  EXPECT_FALSE(r.kept);
  EXPECT_EQ(r.reason, "longest sentence 201 chars > 200");
  json g = {{"type", "sentence_length_ja"}, {"min_mean", 0}, {"max_ellipsis_fraction", 0.2}};
  // 1 of 5 sentences ends with an ellipsis (trailing spaces ignored, like strip()).
  EXPECT_TRUE(keeps(g, "あ。い。う。え。それは…　\n"));
  r = run(g, "あ。い。う。それは…\nそして・・・");
  EXPECT_FALSE(r.kept);
  EXPECT_EQ(r.reason, "sentences ending with an ellipsis 0.4 > 0.2 (2 of 5)");
  // Ellipsis followed by a terminator is not an ellipsis ending.
  EXPECT_TRUE(keeps(g, "それは…。あれは…。"));
  EXPECT_THROW(make_filter({{"type", "sentence_length_ja"}, {"min_mean", 50}, {"max_mean", 40}}), Error);
  EXPECT_THROW(make_filter({{"type", "sentence_length_ja"}, {"max_sentence_chars", 0}}), Error);
}

// ---------------------------------------------------------------------------------------
// ng_words

TEST(JaNgWords, KatakanaWordsMatchOnlyStandalone) {
  const json f = {{"type", "ng_words"}, {"words", {"アス", "セックス"}}};  // max_count 0: any match rejects
  EXPECT_TRUE(keeps(f, "アスパラガスを食べた"));  // inside a longer katakana word
  EXPECT_TRUE(keeps(f, "ガスアス"));
  EXPECT_TRUE(keeps(f, "アスー"));                // followed by ー
  EXPECT_TRUE(keeps(f, "ーアス"));
  EXPECT_TRUE(keeps(f, "アスｶ"));                 // half-width katakana neighbour
  EXPECT_TRUE(keeps(f, "アス\u3099"));             // a combining mark turns ス into ズ
  EXPECT_TRUE(keeps(f, "ヽアス"));
  EXPECT_FALSE(keeps(f, "アス"));                  // whole text
  EXPECT_FALSE(keeps(f, "アスは明日"));            // text start
  EXPECT_FALSE(keeps(f, "明日はアス"));            // text end
  EXPECT_FALSE(keeps(f, "あアスあ"));              // hiragana neighbours are fine
  EXPECT_FALSE(keeps(f, "・アス・"));              // ・ separates words
  EXPECT_FALSE(keeps(f, "🔞セックス🔞"));
  EXPECT_FALSE(keeps(f, kFamily + "セックス"));
  auto r = run(f, "アス、アス");
  EXPECT_FALSE(r.kept);
  EXPECT_EQ(r.reason, "2 NG-word matches > 0 (アス×2)");
  // Without the standalone rule the substring matches (HojiChar's DiscardAds, Swallow).
  EXPECT_FALSE(keeps({{"type", "ng_words"}, {"words", {"アス"}}, {"katakana_standalone", false}}, "アスパラガス"));
}

TEST(JaNgWords, NonKatakanaWordsMatchAnywhere) {
  const json f = {{"type", "ng_words"}, {"words", {"殺す", "アイ子"}}};
  EXPECT_FALSE(keeps(f, "殺すな"));
  EXPECT_FALSE(keeps(f, "マリアイ子"));  // mixed-script word: no standalone rule
  EXPECT_TRUE(keeps(f, "殺害"));
}

TEST(JaNgWords, CountThresholdIsStrictlyGreater) {
  const json f = {{"type", "ng_words"}, {"words", {"殺す", "死ね"}}, {"max_count", 3}};
  EXPECT_TRUE(keeps(f, "殺す殺す。死ね"));
  EXPECT_TRUE(keeps(f, rep("殺す。", 3)));  // exactly at the limit
  auto r = run(f, rep("殺す。", 3) + "死ね");
  EXPECT_FALSE(r.kept);
  EXPECT_EQ(r.reason, "4 NG-word matches > 3 (殺す×3, 死ね)");
  // Distinct words: 2 distinct <= 3.
  json d = f;
  d["count"] = "distinct";
  EXPECT_TRUE(keeps(d, rep("殺す。", 10) + rep("死ね", 10)));
  d["max_count"] = 1;
  r = run(d, rep("殺す。", 10) + "死ね");
  EXPECT_EQ(r.reason, "2 distinct NG words > 1 (殺す×10, 死ね)");
  EXPECT_THROW(make_filter({{"type", "ng_words"}, {"words", {"a"}}, {"count", "unique"}}), Error);
  EXPECT_THROW(make_filter({{"type", "ng_words"}, {"words", {"a"}}, {"max_count", -1}}), Error);
  EXPECT_THROW(make_filter({{"type", "ng_words"}}), Error);  // no words at all
}

TEST(JaNgWords, NonOverlappingLeftmostMatchesLikeRegexFindall) {
  // Python: len(re.findall("ab|abcd|cd", "abcd")) == 2 (first alternative wins, then resume).
  json first = {{"type", "ng_words"}, {"words", {"ab", "abcd", "cd"}}, {"max_count", 1}, {"ascii_boundary", false}};
  EXPECT_FALSE(keeps(first, "abcd"));
  json longest = first;
  longest["pick"] = "longest";  // Swallow's trie: the longest word at a position
  EXPECT_TRUE(keeps(longest, "abcd"));
  // Overlapping occurrences count once: "ああ" in "あああ" is one match, not two.
  json f = {{"type", "ng_words"}, {"words", {"ああ"}}, {"max_count", 1}};
  EXPECT_TRUE(keeps(f, "あああ"));
  EXPECT_FALSE(keeps(f, "ああああ"));
  // HojiChar puts non-katakana words before katakana words in the alternation.
  auto r = run({{"type", "ng_words"}, {"words", {"アイ", "アイ子"}}}, "アイ子");
  EXPECT_EQ(r.reason, "1 NG-word match > 0 (アイ子)");
  EXPECT_THROW(make_filter({{"type", "ng_words"}, {"words", {"a"}}, {"pick", "shortest"}}), Error);
}

TEST(JaNgWords, AsciiWordsUseWordBoundariesAndIgnoreCase) {
  const json f = {{"type", "ng_words"}, {"words", {"cock", "AV女優"}}};
  EXPECT_TRUE(keeps(f, "a cocktail party"));
  EXPECT_TRUE(keeps(f, "peacock"));
  EXPECT_FALSE(keeps(f, "Cock!"));
  EXPECT_FALSE(keeps(f, "(COCK)"));
  EXPECT_FALSE(keeps(f, "人気av女優"));        // ASCII case folded, kanji neighbour is fine
  EXPECT_TRUE(keeps(f, "NAV女優"));             // preceded by a letter
  EXPECT_TRUE(keeps(f, "ＡＶ女優"));            // full-width letters are different bytes (no NFKC here)
  EXPECT_FALSE(keeps({{"type", "ng_words"}, {"words", {"cock"}}, {"ascii_boundary", false}}, "cocktail"));
  EXPECT_TRUE(keeps({{"type", "ng_words"}, {"words", {"cock"}}, {"ignore_case", false}}, "COCK"));
}

TEST(JaNgWords, CharFractionLikeSwallow) {
  // 10 Japanese chars, 1 of them in an NG word: 0.1.
  json f = {{"type", "ng_words"}, {"words", {"殺"}}, {"max_char_fraction", 0.1}};
  EXPECT_TRUE(keeps(f, "殺あいうえおかきくけ abc"));
  auto r = run(f, "殺あいうえおかきく。");  // 。 counts as Japanese: still 1/10
  EXPECT_TRUE(r.kept);
  r = run(f, "殺あいうえおかきく");
  EXPECT_FALSE(r.kept);
  EXPECT_EQ(r.reason, "NG-word chars 0.1111 of Japanese chars > 0.1 (1 of 9; 殺)");
  // Only a fraction given: the number of matches is not limited.
  EXPECT_TRUE(keeps(f, "殺殺" + rep("あ", 18)));
  json all = f;
  all["char_fraction_of"] = "all";
  EXPECT_FALSE(keeps(all, "殺あいうえおかきく"));
  EXPECT_TRUE(keeps(all, "殺あいうえおかきくa"));
  // No Japanese character at all: the fraction is 0 (Swallow), whatever matched.
  EXPECT_TRUE(keeps({{"type", "ng_words"}, {"words", {"xx"}}, {"max_char_fraction", 0.1}}, "xx yy"));
  EXPECT_THROW(make_filter({{"type", "ng_words"}, {"words", {"a"}}, {"max_char_fraction", 2}}), Error);
}

TEST(JaNgWords, BuiltInListsAndUserFiles) {
  auto names = builtin_word_lists();
  for (std::string n : {"adult_ja", "adult_en", "ads_ja", "discrimination_ja", "violence_ja"}) {
    ASSERT_TRUE(std::find(names.begin(), names.end(), n) != names.end()) << n;
    auto words = builtin_word_list(n);
    EXPECT_GE(words.size(), 50u) << n;
    std::set<std::string> unique(words.begin(), words.end());
    EXPECT_EQ(unique.size(), words.size()) << n << " has duplicates";
    for (const auto& w : words) {
      EXPECT_TRUE(text::is_valid_utf8(w)) << n;
      EXPECT_NE(w[0], '#') << n;
      EXPECT_EQ(w.find_first_of("\t\r\n"), std::string::npos) << n << ": " << w;
      EXPECT_TRUE(w.front() != ' ' && w.back() != ' ') << n << ": " << w;
      if (n != "adult_en") {
        EXPECT_EQ(w.find(' '), std::string::npos) << n << ": " << w;
      }
    }
  }
  EXPECT_FALSE(keeps({{"type", "ng_words"}, {"lists", {"ads_ja"}}}, "全品送料無料"));
  EXPECT_FALSE(keeps({{"type", "ng_words"}, {"lists", "adult_en"}}, "Free PORN here"));
  try {
    make_filter({{"type", "ng_words"}, {"lists", {"nope_ja"}}});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("adult_ja"), std::string::npos) << e.what();
  }

  tsumugi::testing::TempDir dir;
  std::string path = dir.file("words.txt");
  tsumugi::testing::write_bytes(path, "\xEF\xBB\xBF# my list\r\n  ほうじ茶 \r\n\r\n   # indented comment\nアス\n");
  EXPECT_EQ(parse_word_list("\xEF\xBB\xBF# c\r\n  ほうじ茶 \r\n\n  # x\nアス"), (std::vector<std::string>{"ほうじ茶", "アス"}));
  json f = {{"type", "ng_words"}, {"files", {path}}, {"max_count", 1}};
  EXPECT_TRUE(keeps(f, "ほうじ茶とアスパラガス"));
  EXPECT_FALSE(keeps(f, "ほうじ茶とアス"));
  EXPECT_THROW(make_filter({{"type", "ng_words"}, {"files", {dir.file("missing.txt")}}}), Error);
}

TEST(JaNgWords, AutomatonIsSharedAndThreadSafe) {
  NgWordOptions opt;
  auto a = shared_ng_matcher({"殺す", "死ね"}, opt);
  auto b = shared_ng_matcher({"殺す", "死ね"}, opt);
  EXPECT_EQ(a.get(), b.get());
  opt.pick = NgWordOptions::Pick::longest;
  EXPECT_NE(shared_ng_matcher({"殺す", "死ね"}, opt).get(), a.get());

  auto f = make_filter({{"type", "ng_words"}, {"lists", {"violence_ja"}}, {"max_count", 2}});
  std::vector<std::string> docs;
  for (int i = 0; i < 200; ++i) docs.push_back(rep("今日はいい天気。", i % 7) + rep("殺す", i % 5));
  std::vector<int> expected;
  for (auto& t : docs) {
    Document d;
    d.text = t;
    std::string reason;
    expected.push_back(f->apply(d, reason));
  }
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int th = 0; th < 4; ++th)
    threads.emplace_back([&, th] {
      for (int round = 0; round < 20; ++round)
        for (size_t i = 0; i < docs.size(); ++i) {
          Document d;
          d.text = docs[i];
          std::string reason;
          if (int(f->apply(d, reason)) != expected[i]) ++mismatches[th];
        }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(mismatches, std::vector<int>(4, 0));
  EXPECT_EQ(expected[2], 1);  // 2 matches <= 2
  EXPECT_EQ(expected[3], 0);  // 3 matches > 2
}

// ---------------------------------------------------------------------------------------
// robustness

TEST(JaRobustness, TruncatedUtf8AtTheEndIsNotReadPast) {
  // The JSONL reader only lets valid UTF-8 through; filters must still not read past a
  // sequence cut off by the end of the text.
  const std::string t = "あいう\xE3\x81";
  EXPECT_TRUE(keeps({{"type", "accept_japanese"}}, t));
  EXPECT_FALSE(keeps({{"type", "accept_japanese"}}, "abc\xE3"));
  EXPECT_TRUE(keeps({{"type", "char_ratio"}, {"min_hiragana", 0.5}}, t));  // 3 of 4 code points
  EXPECT_TRUE(keeps({{"type", "sentence_length_ja"}, {"min_mean", 4}, {"max_mean", 4}}, t));
  EXPECT_TRUE(keeps({{"type", "kuten_run"}, {"max_average_run", 10}}, "あ。\xE3\x80"));
  EXPECT_FALSE(keeps({{"type", "ng_words"}, {"words", {"いう"}}}, t));
  EXPECT_FALSE(keeps({{"type", "ng_words"}, {"words", {"いう"}}, {"max_char_fraction", 0.1}}, t));
  EXPECT_EQ(run({{"type", "line_filter_ja"}}, "abc\nあ\xE3").text, "あ\xE3");
  const json cut = {{"type", "line_filter_ja"}, {"mode", "cut"}};
  EXPECT_EQ(run(cut, "abc\nあ\xE3").text, "あ\xE3");
  // A cut-off sequence reads as U+FFFD (not \\w): the URL stops before it.
  EXPECT_EQ(run(cut, "あhttp://a\xE3").text, "あ\xE3");
  EXPECT_EQ(run(cut, "あhttp://a\xE3\x81\nい").text, "あ\xE3\x81\nい");
}

// ---------------------------------------------------------------------------------------
// presets

TEST(JaPresets, BuildAndRunTheLlmJpChain) {
  Profile p = load_preset("llm-jp-v1-ja");
  std::vector<std::unique_ptr<Filter>> chain;
  for (const auto& f : p.filters) chain.push_back(make_filter(f));
  std::vector<std::string> names;
  for (const auto& f : chain) names.push_back(f->name());
  // LLM-jp's order: the document filters read the original text, the line cleaning runs last.
  EXPECT_EQ(names, (std::vector<std::string>{"accept_japanese", "ng_ads", "ng_adult", "ng_discrimination",
                                             "ng_violence", "kuten_run", "compression_ratio", "line_filter_ja"}));
  const json& lf = p.filters.back();
  EXPECT_EQ(lf.value("mode", ""), "cut");
  EXPECT_EQ(lf.value("join", ""), "keep");
  auto run_chain = [&](std::string& text, std::string& reason, std::string& by) {
    Document d;
    d.text = text;
    for (const auto& f : chain)
      if (!f->apply(d, reason)) {
        by = f->name();
        return false;
      }
    text = d.text;
    return true;
  };
  std::string reason, by;
  std::string good =
      "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。何でも薄暗いじめじめした所で"
      "ニャーニャー泣いていた事だけは記憶している。\nhttps://example.com/cat\n"
      "吾輩はここで始めて人間というものを見た。しかもあとで聞くとそれは書生という人間中で一番獰悪な種族"
      "であったそうだ。詳しくは https://example.com/shosei を見よ。この書生というのは時々我々を捕えて煮て"
      "食うという話である。";
  ASSERT_TRUE(run_chain(good, reason, by)) << by << ": " << reason;
  EXPECT_EQ(good,
            "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。何でも薄暗いじめじめした所で"
            "ニャーニャー泣いていた事だけは記憶している。\n"
            "吾輩はここで始めて人間というものを見た。しかもあとで聞くとそれは書生という人間中で一番獰悪な種族"
            "であったそうだ。詳しくは  を見よ。この書生というのは時々我々を捕えて煮て食うという話である。");
  std::string ad = "【期間限定】送料無料！今すぐ購入。税込価格で最安値。クーポン配布中、ポイント10倍。"
                   "在庫あり、即日発送。会員登録でさらに割引。楽天市場より激安。タイムセール開催中。";
  EXPECT_FALSE(run_chain(ad, reason, by));
  EXPECT_EQ(by, "ng_ads") << reason;
  std::string english = "English only\nno Japanese here";
  EXPECT_FALSE(run_chain(english, reason, by));
  EXPECT_EQ(by, "accept_japanese");
  // accept_japanese reads the original text: a first line of 60 ASCII characters hides the
  // kana from it, although the line cleaning would have removed that line.
  std::string late = std::string(60, '-') + "\n" + good;
  EXPECT_FALSE(run_chain(late, reason, by));
  EXPECT_EQ(by, "accept_japanese") << reason;
  // Every document filter passes on the original text; the line cleaning then leaves only
  // whitespace (the kana are inside URLs, the lone 。 line has no kana), so it rejects last.
  const std::vector<std::string> s = {"吾輩は猫である名前はまだ無い", "どこで生れたかとんと見当がつかぬ",
                                      "何でも薄暗いじめじめした所でニャーニャー泣いていた"};
  std::string urls;
  for (int k = 0; k < 2; ++k)
    for (const auto& x : s) urls += "https://example.jp/" + x + "\n";
  urls += "\u3002";
  EXPECT_FALSE(run_chain(urls, reason, by));
  EXPECT_EQ(by, "line_filter_ja") << reason;
  EXPECT_EQ(reason, "only whitespace left after cutting URLs and ASCII runs (6 of 7 lines kept)");
}

TEST(JaPresets, SwallowPresetBuilds) {
  Profile p = load_preset("swallow-ja");
  std::vector<std::string> types;
  for (const auto& f : p.filters) {
    auto filter = make_filter(f);  // throws on unknown types or parameters
    types.push_back(f["type"].get<std::string>());
  }
  EXPECT_EQ(types, (std::vector<std::string>{"accept_japanese", "length", "repetition", "char_ratio",
                                             "sentence_length_ja", "ng_words"}));
}

// ---------------------------------------------------------------------------------------
// throughput (run with --gtest_also_run_disabled_tests --gtest_filter='*JaThroughput*')

TEST(JaThroughput, DISABLED_LineFilterAndNgWords) {
  std::mt19937 rng(1);
  const std::vector<std::string> pieces = {
      "今日は", "とても", "良い", "天気", "です", "。", "私たち", "は", "東京", "の", "駅前", "で", "コーヒー",
      "を", "飲み", "ました", "、", "そして", "新しい", "プロジェクト", "について", "話し合い", "技術",
      "開発", "データ", "が", "重要", "だと", "考えて", "います", "ユーザー", "サービス", "2024年", "ABC"};
  std::string doc;
  std::vector<std::string> docs;
  size_t bytes = 0;
  while (bytes < (64u << 20)) {
    doc.clear();
    int lines = 5 + rng() % 20;
    for (int l = 0; l < lines; ++l) {
      int n = 10 + rng() % 40;
      for (int k = 0; k < n; ++k) doc += pieces[rng() % pieces.size()];
      if (rng() % 10 == 0) doc += " https://example.com/page";
      doc += "\n";
    }
    bytes += doc.size();
    docs.push_back(doc);
  }
  // Runs the chain over all documents; prints the total rate and each filter's share.
  auto measure = [&](const std::vector<json>& specs, const char* label) {
    std::vector<std::unique_ptr<Filter>> chain;
    for (const auto& s : specs) chain.push_back(make_filter(s));
    std::vector<double> spent(chain.size(), 0.0);
    auto work = docs;
    size_t kept = 0;
    auto t0 = std::chrono::steady_clock::now();
    for (auto& t : work) {
      Document d;
      d.text = std::move(t);
      std::string reason;
      bool ok = true;
      for (size_t k = 0; k < chain.size() && ok; ++k) {
        auto a = std::chrono::steady_clock::now();
        ok = chain[k]->apply(d, reason);
        spent[k] += std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count();
      }
      kept += ok;
    }
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%-40s %7.1f MB/s (%zu of %zu docs kept)\n", label, double(bytes) / s / 1e6, kept, docs.size());
    if (chain.size() > 1)
      for (size_t k = 0; k < chain.size(); ++k)
        std::printf("    %-36s %6.1f%% of the time\n", chain[k]->name().c_str(), 100.0 * spent[k] / s);
  };
  measure({{{"type", "line_filter_ja"}}}, "line_filter_ja");
  measure({{{"type", "line_filter_ja"}, {"mode", "cut"}}}, "line_filter_ja mode=cut");
  measure({{{"type", "line_filter_ja"}, {"mode", "cut"}, {"join", "none"}}}, "line_filter_ja mode=cut join=none");
  measure({{{"type", "ng_words"}, {"lists", {"adult_ja"}}, {"max_count", 3}}}, "ng_words adult_ja");
  measure({{{"type", "ng_words"},
            {"lists", {"adult_ja", "discrimination_ja", "violence_ja", "ads_ja", "adult_en"}},
            {"max_count", 1000}}},
          "ng_words all lists in one automaton");
  std::vector<json> chain = {{{"type", "line_filter_ja"}}};
  for (auto l : {"ads_ja", "adult_ja", "discrimination_ja", "violence_ja"})
    chain.push_back({{"type", "ng_words"}, {"lists", {l}}, {"max_count", 1000}});
  measure(chain, "line_filter_ja + 4 ng_words");
  std::vector<json> full;
  for (const auto& f : load_preset("llm-jp-v1-ja").filters) full.push_back(f);
  measure(full, "llm-jp-v1-ja preset (all rules)");
  for (int level : {1, 6, 9})
    measure({{{"type", "compression_ratio"}, {"min", 0.0}, {"max", 1.0}, {"level", level}}},
            level == 1 ? "compression_ratio level 1" : level == 6 ? "compression_ratio level 6" : "compression_ratio level 9");
}
