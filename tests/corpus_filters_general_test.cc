// Tests for the general, English and code filters (length, compression_ratio, repetition,
// pii_mask, nfkc, language, gopher_quality, c4_lines, code_quality) and the en/code presets.
#include <gtest/gtest.h>
#include <zlib.h>

#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "corpus/filter.h"
#include "corpus/profile.h"
#include "text/langid.h"
#include "text/words.h"
#include "util/error.h"

namespace {

using nlohmann::json;
using tsumugi::corpus::Document;
using tsumugi::corpus::make_filter;

struct Outcome {
  bool kept;
  std::string text;
  std::string reason;
};

Outcome run(const tsumugi::corpus::Filter& f, const std::string& text) {
  Document d;
  d.text = text;
  std::string reason;
  bool kept = f.apply(d, reason);
  return {kept, d.text, reason};
}

Outcome run(const json& spec, const std::string& text) { return run(*make_filter(spec), text); }

// Kept and unchanged.
void expect_kept(const json& spec, const std::string& text) {
  Outcome o = run(spec, text);
  EXPECT_TRUE(o.kept) << spec.dump() << " rejected: " << o.reason;
  EXPECT_EQ(o.text, text);
}

void expect_rejected(const json& spec, const std::string& text, const std::string& reason) {
  Outcome o = run(spec, text);
  EXPECT_FALSE(o.kept) << spec.dump();
  EXPECT_EQ(o.reason, reason) << spec.dump();
}

std::string repeat(const std::string& s, size_t n) {
  std::string r;
  r.reserve(s.size() * n);
  for (size_t i = 0; i < n; ++i) r += s;
  return r;
}

// A one-megabyte single line of distinct words: "w0 w1 w2 ...".
std::string megabyte_of_words() {
  std::string s;
  for (size_t i = 0; s.size() < (1u << 20); ++i) {
    if (i) s += ' ';
    s += "w" + std::to_string(i);
  }
  return s;
}

const char* kEnglish =
    "The river runs through the middle of the old town, and most of the houses that line its banks were "
    "built more than two hundred years ago. Visitors often stop on the stone bridge to watch the boats pass "
    "below, while local children fish from the steps near the mill. In the spring the water rises quickly, "
    "so the town council has to keep a close watch on the flood gates. Many of the families who live here "
    "have done so for generations, and they like to say that the river has a memory of its own.";

// ---------------------------------------------------------------------------------------
// Registry

TEST(GeneralRegistry, AllTypesRegistered) {
  std::vector<std::string> types;
  for (const auto& s : tsumugi::corpus::filter_specs()) types.push_back(s.type);
  for (const char* t : {"length", "compression_ratio", "repetition", "pii_mask", "nfkc", "language",
                        "gopher_quality", "c4_lines", "code_quality"})
    EXPECT_NE(std::find(types.begin(), types.end(), t), types.end()) << t;
}

TEST(GeneralRegistry, UnknownParametersAreRejected) {
  for (const char* t : {"length", "compression_ratio", "repetition", "pii_mask", "nfkc", "gopher_quality",
                        "c4_lines", "code_quality"})
    EXPECT_THROW(make_filter(json{{"type", t}, {"no_such_param", 1}}), tsumugi::Error) << t;
  EXPECT_THROW(make_filter(json{{"type", "language"}, {"languages", {"en"}}, {"no_such_param", 1}}), tsumugi::Error);
  // The list form of the n-gram thresholds is not a parameter; per-n keys are.
  EXPECT_THROW(make_filter(json{{"type", "repetition"}, {"top_ngram_n", {2, 3}}}), tsumugi::Error);
}

// ---------------------------------------------------------------------------------------
// length

TEST(GeneralLength, CountsCodePointsNotBytes) {
  json min3 = {{"type", "length"}, {"min_chars", 3}};
  expect_kept(min3, "あいう");  // 9 bytes, 3 code points
  expect_rejected(min3, "あい", "2 chars < min_chars 3");
  expect_rejected(min3, "", "0 chars < min_chars 3");
  json max3 = {{"type", "length"}, {"max_chars", 3}};
  expect_kept(max3, "😀😀😀");  // 12 bytes
  expect_rejected(max3, "abcd", "4 chars > max_chars 3");
  expect_rejected(max3, "😀😀😀😀", "4 chars > max_chars 3");
}

TEST(GeneralLength, BoundsAreInclusiveAndOptional) {
  json both = {{"type", "length"}, {"min_chars", 2}, {"max_chars", 4}};
  expect_kept(both, "ab");
  expect_kept(both, "abcd");
  expect_rejected(both, "a", "1 chars < min_chars 2");
  expect_rejected(both, "abcde", "5 chars > max_chars 4");
  json none = {{"type", "length"}};
  expect_kept(none, "");
  expect_kept(none, std::string(1 << 20, 'x'));
  // CRLF: '\r' is a code point like any other.
  expect_rejected({{"type", "length"}, {"max_chars", 3}}, "a\r\nb", "4 chars > max_chars 3");
}

TEST(GeneralLength, BadParameters) {
  EXPECT_THROW(make_filter(json{{"type", "length"}, {"min_chars", 5}, {"max_chars", 4}}), tsumugi::Error);
  EXPECT_THROW(make_filter(json{{"type", "length"}, {"min_chars", -1}}), tsumugi::Error);
  EXPECT_THROW(make_filter(json{{"type", "length"}, {"min_chars", "3"}}), tsumugi::Error);
  EXPECT_THROW(make_filter(json{{"type", "length"}, {"min_chars", 2.5}}), tsumugi::Error);
}

// ---------------------------------------------------------------------------------------
// compression_ratio

double zlib_ratio(const std::string& s, int level) {
  uLongf n = compressBound(uLong(s.size()));
  std::vector<Bytef> out(n);
  EXPECT_EQ(compress2(out.data(), &n, reinterpret_cast<const Bytef*>(s.data()), uLong(s.size()), level), Z_OK);
  return double(n) / double(s.size());
}

// Printable ASCII from a fixed LCG: close to incompressible.
std::string noise(size_t n) {
  std::string s;
  uint32_t x = 12345;
  for (size_t i = 0; i < n; ++i) {
    x = x * 1103515245u + 12345u;
    s += char(33 + (x >> 16) % 94);
  }
  return s;
}

TEST(GeneralCompressionRatio, RatioIsCompressedOverOriginal) {
  // Python: len(zlib.compress(b"abc" * 1000, 6)) == 29, so the ratio is 29 / 3000.
  std::string abc = repeat("abc", 1000);
  expect_rejected({{"type", "compression_ratio"}}, abc, "compression ratio 0.01 < 0.30");
  expect_kept({{"type", "compression_ratio"}, {"min", 29.0 / 3000}, {"max", 1.0}}, abc);
  expect_rejected({{"type", "compression_ratio"}, {"min", 30.0 / 3000}, {"max", 1.0}}, abc,
                  "compression ratio 0.0097 < 0.0100");
  // Random-looking text compresses badly: a high ratio is rejected by max.
  std::string rnd = noise(4000);
  double r = zlib_ratio(rnd, 6);
  ASSERT_GT(r, 0.70);
  Outcome o = run(json{{"type", "compression_ratio"}}, rnd);
  EXPECT_FALSE(o.kept);
  EXPECT_EQ(o.reason, "compression ratio " + tsumugi::text::format_pair(r, 0.70).first + " > 0.70");
  // Natural prose sits in between.
  double e = zlib_ratio(kEnglish, 6);
  EXPECT_GT(e, 0.30);
  EXPECT_LT(e, 0.70);
  expect_kept({{"type", "compression_ratio"}}, kEnglish);
}

TEST(GeneralCompressionRatio, MatchesZlibExactlyAtEachLevel) {
  std::string text = std::string(kEnglish) + "\n" + noise(300) + "\n" + repeat("ab", 200);
  for (int level : {1, 6, 9}) {
    double r = zlib_ratio(text, level);
    json at = {{"type", "compression_ratio"}, {"min", r}, {"max", r}, {"level", level}};
    expect_kept(at, text);
    json above = {{"type", "compression_ratio"}, {"min", std::nextafter(r, 2.0)}, {"max", 2.0}, {"level", level}};
    EXPECT_FALSE(run(above, text).kept) << level;
  }
  EXPECT_NE(zlib_ratio(text, 1), zlib_ratio(text, 9));  // the level parameter matters
}

TEST(GeneralCompressionRatio, ReusedStreamGivesSameResults) {
  // Alternating filters with different levels on one thread reuse one z_stream.
  auto f1 = make_filter(json{{"type", "compression_ratio"}, {"min", 0.0}, {"max", 0.5}, {"level", 1}});
  auto f9 = make_filter(json{{"type", "compression_ratio"}, {"min", 0.0}, {"max", 0.5}, {"level", 9}});
  std::vector<std::string> docs = {kEnglish, noise(1000), repeat("xyz", 500), "a", std::string(1 << 20, 'q')};
  for (int round = 0; round < 3; ++round)
    for (const auto& d : docs) {
      EXPECT_EQ(run(*f1, d).kept, zlib_ratio(d, 1) <= 0.5);
      EXPECT_EQ(run(*f9, d).kept, zlib_ratio(d, 9) <= 0.5);
    }
}

TEST(GeneralCompressionRatio, EdgeCases) {
  expect_rejected({{"type", "compression_ratio"}}, "", "empty text (compression ratio undefined)");
  // A short text has zlib's 6 bytes of framing on top: ratio > 1.
  Outcome o = run(json{{"type", "compression_ratio"}}, "hi");
  EXPECT_FALSE(o.kept);
  EXPECT_EQ(o.reason, "compression ratio 5.00 > 0.70");  // 10 bytes / 2
  EXPECT_THROW(make_filter(json{{"type", "compression_ratio"}, {"level", 0}}), tsumugi::Error);
  EXPECT_THROW(make_filter(json{{"type", "compression_ratio"}, {"min", 0.8}, {"max", 0.2}}), tsumugi::Error);
}

// ---------------------------------------------------------------------------------------
// repetition

// Repetition spec with all n-gram rules off (to test the line/paragraph rules alone).
json lines_only(json extra = json::object()) {
  json j = {{"type", "repetition"}};
  for (int n : {2, 3, 4}) j["top_" + std::to_string(n) + "gram_max_frac"] = -1;
  for (int n = 5; n <= 10; ++n) j["dup_" + std::to_string(n) + "gram_max_frac"] = -1;
  for (auto& [k, v] : extra.items()) j[k] = v;
  return j;
}

TEST(GeneralRepetition, DuplicateLines) {
  // 4 lines, 1 repeat: line fraction 1/4 = 0.25 (under 0.30); the repeated line has 10
  // characters of 47 in all: 0.2128 > 0.20.
  std::string text = "alpha beta\ngamma delta\nalpha beta\nepsilon zeta\n";
  expect_rejected(lines_only(), text, "duplicate line char fraction 0.21 > 0.20");
  expect_kept(lines_only({{"max_dup_line_char_frac", 10.0 / 47}}), text);  // equal is kept
  expect_rejected(lines_only({{"max_dup_line_char_frac", -1}, {"max_dup_line_frac", 0.24}}), text,
                  "duplicate line fraction 0.25 > 0.24");
  // CRLF line ends score exactly like LF ones.
  std::string crlf = "alpha beta\r\ngamma delta\r\nalpha beta\r\nepsilon zeta\r\n";
  expect_rejected(lines_only(), crlf, "duplicate line char fraction 0.21 > 0.20");
  expect_kept(lines_only({{"max_dup_line_char_frac", 10.0 / 47}}), crlf);
  // Blank lines are not duplicates of each other; surrounding whitespace is ignored.
  expect_kept(lines_only(), "one\n\n\n\ntwo\n\n\n\nthree\n  \n\t\nfour");
  expect_rejected(lines_only({{"max_dup_line_char_frac", -1}}), "same line\n  same line  \nsame line\nother",
                  "duplicate line fraction 0.50 > 0.30");
}

TEST(GeneralRepetition, DuplicateParagraphs) {
  // Paragraphs are separated by blank lines: 3 paragraphs, 1 repeat = 0.33.
  std::string text = "p1 line\n\np2 line\n\np1 line\n";
  expect_rejected({{"type", "repetition"}}, text, "duplicate paragraph fraction 0.33 > 0.30");
  // Multi-line paragraphs compare whole: 2 paragraphs of 2 lines, the second repeats the
  // first ("a b\nc d" = 7 chars of 7 + 2 + 7 = 16): char fraction 0.4375.
  expect_rejected(lines_only({{"max_dup_para_frac", -1}}), "a b\nc d\n\na b\nc d",
                  "duplicate paragraph char fraction 0.44 > 0.20");
}

TEST(GeneralRepetition, TopNgramWordFraction) {
  // Words: the cat sat on the mat and the cat ran = 29 characters. "the cat" occurs twice:
  // 2 x 6 / 29 = 0.4138.
  std::string text = "the cat sat on the mat and the cat ran";
  expect_rejected({{"type", "repetition"}}, text, "top 2-gram char fraction 0.41 > 0.20");
  expect_kept({{"type", "repetition"}, {"top_2gram_max_frac", 12.0 / 29}}, text);
  // n-grams that occur only once are no repetition, however short the text.
  expect_kept({{"type", "repetition"}}, "just four distinct words");
}

TEST(GeneralRepetition, DuplicateNgramCountsOverlapsOnce) {
  // one two three four five six | gap | one two three four five six: the 5-grams at 0 and 1
  // both repeat; together they cover the 6 words (22 chars) twice = 44 of 47 characters.
  // (Summing the overlapping 5-grams would give 76/47.)
  std::string text = "one two three four five six gap one two three four five six";
  json no_top = {{"type", "repetition"}, {"top_2gram_max_frac", -1}, {"top_3gram_max_frac", -1}, {"top_4gram_max_frac", -1}};
  expect_rejected(no_top, text, "duplicate 5-gram char fraction 0.94 > 0.15");
  json j = no_top;
  j["dup_5gram_max_frac"] = 44.0 / 47;
  expect_rejected(j, text, "duplicate 6-gram char fraction 0.94 > 0.14");
  for (int n = 6; n <= 10; ++n) j["dup_" + std::to_string(n) + "gram_max_frac"] = -1;
  expect_kept(j, text);
  // An n beyond the Gopher defaults can be configured.
  j["dup_11gram_max_frac"] = 0.5;
  expect_kept(j, text);  // 13 words: the only 11-grams occur once
  j["dup_3gram_max_frac"] = 0.5;
  expect_rejected(j, text, "duplicate 3-gram char fraction 0.94 > 0.50");
}

TEST(GeneralRepetition, CharUnitForJapanese) {
  // 17 characters: 今日は晴れ。今日は晴れ。明日は雨。 "日は" occurs 3 times: 6/17 = 0.3529.
  std::string text = "今日は晴れ。今日は晴れ。明日は雨。";
  json chr = {{"type", "repetition"}, {"unit", "char"}};
  expect_rejected(chr, text, "top 2-gram char fraction 0.35 > 0.20");
  // Repeated 5-grams 今日は晴れ and 日は晴れ。 cover characters 0..5 and 6..11: 12/17.
  json no_top = chr;
  for (int n : {2, 3, 4}) no_top["top_" + std::to_string(n) + "gram_max_frac"] = -1;
  expect_rejected(no_top, text, "duplicate 5-gram char fraction 0.71 > 0.15");
  // Whitespace is not a unit: the same text with spaces scores the same.
  expect_rejected(no_top, "今日は 晴れ。 今日は 晴れ。 明日は 雨。", "duplicate 5-gram char fraction 0.71 > 0.15");
  // Emoji are one character each: 😀😀 occurs 3 times in 4 characters.
  expect_rejected(chr, "😀😀😀😀", "top 2-gram char fraction 1.50 > 0.20");
  // As words the spaced text has no repeated 2-gram.
  expect_kept({{"type", "repetition"}}, "今日は 晴れ。 明日は 雨。");
}

TEST(GeneralRepetition, NaturalTextAndEdgeCases) {
  expect_kept({{"type", "repetition"}}, kEnglish);
  expect_kept({{"type", "repetition"}, {"unit", "char"}}, "");
  expect_kept({{"type", "repetition"}}, "");
  expect_kept({{"type", "repetition"}}, " \n\n \r\n");
  // A 1 MB single line: distinct words pass, one word repeated fails.
  expect_kept({{"type", "repetition"}}, megabyte_of_words());
  Outcome o = run(json{{"type", "repetition"}}, repeat("abc ", 1 << 18));
  EXPECT_FALSE(o.kept);
  EXPECT_EQ(o.reason.rfind("top 2-gram char fraction", 0), 0u) << o.reason;
  EXPECT_THROW(make_filter(json{{"type", "repetition"}, {"unit", "byte"}}), tsumugi::Error);
}

// ---------------------------------------------------------------------------------------
// pii_mask

std::string mask(const std::string& text, json extra = json::object()) {
  json j = {{"type", "pii_mask"}};
  for (auto& [k, v] : extra.items()) j[k] = v;
  Outcome o = run(j, text);
  EXPECT_TRUE(o.kept);
  return o.text;
}

TEST(GeneralPiiMask, Emails) {
  EXPECT_EQ(mask("contact: john.doe+tag@example.co.jp."), "contact: <EMAIL>.");
  EXPECT_EQ(mask("user@mail.example.com と test@example.org に連絡"), "<EMAIL> と <EMAIL> に連絡");
  EXPECT_EQ(mask("(mailto:alice_99@example-mail.com)"), "(mailto:<EMAIL>)");
  EXPECT_EQ(mask("taro.0312345678@example.jp"), "<EMAIL>");
  for (const char* s : {"@user said hi", "foo@localhost", "a@b", "x@y.c1", "npm i pkg@1.2.3", "@@", "end@"})
    EXPECT_EQ(mask(s), s);
}

TEST(GeneralPiiMask, JapanesePhoneNumbers) {
  for (const char* s : {"03-1234-5678", "090-1234-5678", "0120-123-456", "0570-064-556", "(03)1234-5678",
                        "03(1234)5678", "0312345678", "09012345678", "03 1234 5678", "０３－１２３４－５６７８",
                        "０９０ー１２３４ー５６７８", "０１２０（１２３）４５６"})
    EXPECT_EQ(mask(s), "<PHONE>") << s;
  EXPECT_EQ(mask("電話番号は03-1234-5678です。"), "電話番号は<PHONE>です。");
  EXPECT_EQ(mask("TEL.03-1234-5678 / FAX:03-1234-5679"), "TEL.<PHONE> / FAX:<PHONE>");
  EXPECT_EQ(mask("お問い合わせ(0120-123-456)まで"), "お問い合わせ(<PHONE>)まで");
  EXPECT_EQ(mask("03-1234-5678\r\n06-1234-5678"), "<PHONE>\r\n<PHONE>");
}

TEST(GeneralPiiMask, InternationalPhoneNumbers) {
  for (const char* s : {"+81 3-1234-5678", "+81-90-1234-5678", "+819012345678", "＋８１　３－１２３４－５６７８",
                        "+1 555 123 4567", "+1-555-123-4567", "+44 (0)20 7946 0958", "+33 1 23 45 67 89"})
    EXPECT_EQ(mask(s), "<PHONE>") << s;
  EXPECT_EQ(mask("Call +1 555 123 4567 today"), "Call <PHONE> today");
}

TEST(GeneralPiiMask, LeavesDatesVersionsAndOtherNumbersAlone) {
  for (const char* s : {"2023-11-27", "2023/11/27", "1.2.3", "v0.12.3", "version 10.0.19045", "〒100-0001",
                        "060-0001", "03-1234-5678-9012", "+2023-11-27", "1,234,567,890", "12:30-13:45",
                        "ISBN978-4-06-123456-7", "0000-0000-0000", "2.0312345678", "0312345678901",
                        "id 00312345678", "+1 555", "3.14159265358979", "C++0312345678"})
    EXPECT_EQ(mask(s), s) << s;
}

TEST(GeneralPiiMask, OptionsAndEdgeCases) {
  std::string text = "mail a.b@example.com or call 03-1234-5678 😀";
  EXPECT_EQ(mask(text), "mail <EMAIL> or call <PHONE> 😀");
  EXPECT_EQ(mask(text, {{"mask_phone", false}}), "mail <EMAIL> or call 03-1234-5678 😀");
  EXPECT_EQ(mask(text, {{"mask_email", false}}), "mail a.b@example.com or call <PHONE> 😀");
  EXPECT_EQ(mask(text, {{"email_token", "[メール]"}, {"phone_token", ""}}), "mail [メール] or call  😀");
  EXPECT_EQ(mask(""), "");
  // 1 MB of digits and separators: nothing matches, and it finishes.
  std::string digits = repeat("0123456789-", 100000);
  EXPECT_EQ(mask(digits), digits);
  std::string many = repeat("03-1234-5678 ", 1000);
  EXPECT_EQ(mask(many), repeat("<PHONE> ", 1000));
}

// ---------------------------------------------------------------------------------------
// nfkc

TEST(GeneralNfkc, Normalizes) {
  Outcome o = run(json{{"type", "nfkc"}}, "ＡＢＣ１２３ｶﾀｶﾅ①㈱");
  EXPECT_TRUE(o.kept);
  EXPECT_EQ(o.text, "ABC123カタカナ1(株)");
  expect_kept({{"type", "nfkc"}}, "plain ascii\r\n");
  expect_kept({{"type", "nfkc"}}, "😀 かな");
  expect_kept({{"type", "nfkc"}}, "");
  EXPECT_EQ(run(json{{"type", "nfkc"}}, "ｶﾞ").text, "ガ");  // half-width voiced mark composes
}

// ---------------------------------------------------------------------------------------
// language

const char* kJapanese =
    "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。何でも薄暗いじめじめした所でニャーニャー泣いていた事だけは記憶している。";
const char* kChineseTraditional = "我們今天去公園散步，天氣非常好。這個城市的歷史很悠久，有很多古老的建築。";

TEST(GeneralLanguage, DetectLanguage) {
  auto en = tsumugi::text::detect_language(kEnglish);
  EXPECT_EQ(en.code, "en");
  EXPECT_GT(en.score, 0.9);
  EXPECT_TRUE(en.reliable);
  auto ja = tsumugi::text::detect_language(kJapanese);
  EXPECT_EQ(ja.code, "ja");
  EXPECT_GT(ja.score, 0.9);
  EXPECT_EQ(tsumugi::text::detect_language(kChineseTraditional).code, "zh-Hant");
  auto empty = tsumugi::text::detect_language("");
  EXPECT_EQ(empty.code, "un");
  EXPECT_FALSE(empty.reliable);
}

TEST(GeneralLanguage, KeepsListedLanguages) {
  expect_kept({{"type", "language"}, {"languages", {"ja"}}}, kJapanese);
  expect_kept({{"type", "language"}, {"languages", {"en", "ja"}}}, kEnglish);
  expect_kept({{"type", "language"}, {"languages", "en"}}, kEnglish);
  // "zh" covers CLD2's zh-Hant.
  expect_kept({{"type", "language"}, {"languages", {"zh"}}}, kChineseTraditional);
  Outcome o = run(json{{"type", "language"}, {"languages", {"ja"}}}, kEnglish);
  EXPECT_FALSE(o.kept);
  EXPECT_EQ(o.reason.rfind("language en (score 0.", 0), 0u) << o.reason;
  EXPECT_NE(o.reason.find(") not in [ja]"), std::string::npos) << o.reason;
}

TEST(GeneralLanguage, ScoreIsShareOfTopLanguage) {
  // More English than Japanese: en is the top language with a partial share.
  std::string mixed = std::string(kJapanese) + " " + kEnglish;
  auto g = tsumugi::text::detect_language(mixed);
  ASSERT_EQ(g.code, "en");
  ASSERT_GT(g.score, 0.5);
  ASSERT_LT(g.score, 0.95);
  expect_kept({{"type", "language"}, {"languages", {"en"}}, {"min_score", g.score}}, mixed);
  auto [v, t] = tsumugi::text::format_pair(g.score, g.score + 0.01);
  expect_rejected({{"type", "language"}, {"languages", {"en"}}, {"min_score", g.score + 0.01}}, mixed,
                  "language en score " + v + " < " + t);
}

TEST(GeneralLanguage, UnreliableAndEmpty) {
  expect_rejected({{"type", "language"}, {"languages", {"en"}}}, "the cat",
                  "language un (score 0.00) (unreliable) not in [en]");
  expect_rejected({{"type", "language"}, {"languages", {"en"}}}, "", "language un (score 0.00) (unreliable) not in [en]");
  expect_rejected({{"type", "language"}, {"languages", {"en"}}}, "12345 67890 !!!",
                  "language un (score 0.00) (unreliable) not in [en]");
  EXPECT_THROW(make_filter(json{{"type", "language"}}), tsumugi::Error);
  EXPECT_THROW(make_filter(json{{"type", "language"}, {"languages", json::array()}}), tsumugi::Error);
}

// ---------------------------------------------------------------------------------------
// gopher_quality

const std::vector<std::string> kCycle = {"the", "quick", "brown", "fox", "jumps", "over", "lazy", "dogs", "and", "cats"};

// n words cycling through kCycle (mean length 4.0, 2 stop words per 10), 10 per line.
std::vector<std::string> cycle_words(size_t n) {
  std::vector<std::string> w;
  for (size_t i = 0; i < n; ++i) w.push_back(kCycle[i % kCycle.size()]);
  return w;
}

std::string join_lines(const std::vector<std::string>& words, size_t per_line = 10, const std::string& prefix = "",
                       const std::string& eol = "\n") {
  std::string s;
  for (size_t i = 0; i < words.size(); ++i) {
    if (i % per_line == 0) s += prefix;
    s += words[i];
    s += (i % per_line == per_line - 1 || i + 1 == words.size()) ? eol : " ";
  }
  return s;
}

const json kGopher = {{"type", "gopher_quality"}};

TEST(GeneralGopherQuality, WordCountBounds) {
  expect_kept(kGopher, join_lines(cycle_words(50)));
  expect_rejected(kGopher, join_lines(cycle_words(49)), "49 words < min_words 50");
  expect_rejected({{"type", "gopher_quality"}, {"max_words", 60}}, join_lines(cycle_words(61)),
                  "61 words > max_words 60");
  expect_kept({{"type", "gopher_quality"}, {"max_words", 60}}, join_lines(cycle_words(60)));
  expect_rejected(kGopher, "", "0 words < min_words 50");
  // Punctuation-only tokens are not words: 49 words plus " - " and " ... " stay 49.
  expect_rejected(kGopher, join_lines(cycle_words(49)) + " - | ... •", "49 words < min_words 50");
}

TEST(GeneralGopherQuality, MeanWordLength) {
  std::vector<std::string> w;
  for (int i = 0; i < 25; ++i) w.insert(w.end(), {"to", "the"});  // mean 2.5
  expect_rejected(kGopher, join_lines(w), "mean word length 2.50 < 3.00");
  w.assign(48, "extraordinarily");  // 15 chars
  w.insert(w.end(), {"the", "and"});
  expect_rejected(kGopher, join_lines(w), "mean word length 14.52 > 10.00");  // (720 + 6) / 50
  // Trailing punctuation does not count toward a word's length: "to," is 2 characters.
  w.clear();
  for (int i = 0; i < 25; ++i) w.insert(w.end(), {"to,", "the."});
  expect_rejected(kGopher, join_lines(w), "mean word length 2.50 < 3.00");
}

TEST(GeneralGopherQuality, HashAndEllipsisRatios) {
  auto w = cycle_words(50);
  for (size_t i : {1, 2, 11, 12, 21}) w[i] = "#" + w[i];
  expect_kept(kGopher, join_lines(w));  // 5 / 50 = 0.10, not above
  w[22] = "#" + w[22];
  expect_rejected(kGopher, join_lines(w), "hash-to-word ratio 0.12 > 0.10");

  auto e = cycle_words(50);
  for (size_t i : {1, 2, 11, 12, 21, 22}) e[i] += (i % 2) ? "..." : "\u2026";
  expect_rejected(kGopher, join_lines(e), "ellipsis-to-word ratio 0.12 > 0.10");
  expect_kept({{"type", "gopher_quality"}, {"max_symbol_word_ratio", 0.12}}, join_lines(e));
}

TEST(GeneralGopherQuality, BulletAndEllipsisLines) {
  auto w = cycle_words(50);
  // 10 lines of 5 words, every one a bullet.
  expect_rejected(kGopher, join_lines(w, 5, "• "), "bullet-line fraction 1.00 > 0.90");
  expect_rejected(kGopher, join_lines(w, 5, "- ", "\r\n"), "bullet-line fraction 1.00 > 0.90");
  expect_rejected(kGopher, join_lines(w, 5, "  * "), "bullet-line fraction 1.00 > 0.90");
  // 9 of 10 bullets: 0.90 is not above 0.90. Blank lines do not count as lines.
  std::string nine = "Intro line here and more\n\n" + join_lines(cycle_words(45), 5, "• ");
  expect_kept(kGopher, nine);

  // 4 of 10 lines end with an ellipsis ("..." or U+2026).
  std::string text;
  for (int line = 0; line < 10; ++line) {
    text += "the quick brown fox jumps";
    text += line < 2 ? "...\n" : line < 4 ? "\u2026\n" : ".\n";
  }
  expect_rejected(kGopher, text, "ellipsis-line fraction 0.40 > 0.30");
  expect_kept({{"type", "gopher_quality"}, {"max_ellipsis_lines_frac", 0.4}}, text);
}

TEST(GeneralGopherQuality, AlphabeticWords) {
  auto w = cycle_words(50);
  for (size_t i = 0; i < 10; ++i) w[i * 5 + 1] = i % 2 ? "2023" : "😀😀😀";
  expect_kept(kGopher, join_lines(w));  // 40 / 50 = 0.80
  w[3] = "42.5";
  expect_rejected(kGopher, join_lines(w), "alphabetic-word fraction 0.78 < 0.80");
}

TEST(GeneralGopherQuality, StopWords) {
  std::vector<std::string> none = {"quick", "brown", "fox", "jumps", "over", "lazy", "dogs", "cats", "birds", "fish"};
  std::vector<std::string> w;
  for (int i = 0; i < 5; ++i) w.insert(w.end(), none.begin(), none.end());
  expect_rejected(kGopher, join_lines(w), "0 stop words < min_stop_words 2");
  w[0] = "The";
  expect_rejected(kGopher, join_lines(w), "1 stop words < min_stop_words 2");
  w[10] = "AND,";  // case and punctuation do not matter
  expect_kept(kGopher, join_lines(w));
  // Own stop word list.
  expect_rejected({{"type", "gopher_quality"}, {"stop_words", {"fox"}}, {"min_stop_words", 6}}, join_lines(w),
                  "5 stop words < min_stop_words 6");
  expect_kept({{"type", "gopher_quality"}, {"stop_words", {"fox"}}, {"min_stop_words", 5}}, join_lines(w));
}

TEST(GeneralGopherQuality, NaturalTextAndHugeLine) {
  expect_kept(kGopher, kEnglish);
  expect_rejected(kGopher, std::string(1 << 20, 'a'), "1 words < min_words 50");
  expect_rejected({{"type", "gopher_quality"}, {"min_words", 1}}, std::string(1 << 20, 'a'),
                  "mean word length 1048576.00 > 10.00");
  Outcome o = run(kGopher, megabyte_of_words());  // ~145k words
  EXPECT_FALSE(o.kept);
  EXPECT_NE(o.reason.find(" words > max_words 100000"), std::string::npos) << o.reason;
  o = run(json{{"type", "gopher_quality"}, {"max_words", 1000000}}, megabyte_of_words());  // "w123": no stop words
  EXPECT_FALSE(o.kept);
  EXPECT_EQ(o.reason, "0 stop words < min_stop_words 2");
}

// ---------------------------------------------------------------------------------------
// c4_lines

const json kC4 = {{"type", "c4_lines"}};

TEST(GeneralC4Lines, CleansAPage) {
  std::string page =
      "Home | About | Contact\n"
      "This is a proper sentence with enough words.\n"
      "Short one.\n"
      "We use cookies to improve your experience on this site.\n"
      "Please enable JavaScript to view the comments on this page.\n"
      "  Another good line that ends with a period here.  \n"
      "The third valid sentence is right here! And a fourth one follows it?\n"
      "Read more...\n";
  std::string cleaned =
      "This is a proper sentence with enough words.\n"
      "Another good line that ends with a period here.\n"
      "The third valid sentence is right here! And a fourth one follows it?";
  Outcome o = run(kC4, page);
  EXPECT_TRUE(o.kept) << o.reason;
  EXPECT_EQ(o.text, cleaned);
  // CRLF input gives the same cleaned text.
  std::string crlf;
  for (char c : page) crlf += c == '\n' ? std::string("\r\n") : std::string(1, c);
  o = run(kC4, crlf);
  EXPECT_TRUE(o.kept) << o.reason;
  EXPECT_EQ(o.text, cleaned);
  // 4 sentences in the kept lines.
  expect_rejected({{"type", "c4_lines"}, {"min_sentences", 5}}, page, "4 sentences < min_sentences 5");
  // Each rule can be switched off.
  o = run(json{{"type", "c4_lines"}, {"drop_policy_lines", false}, {"drop_javascript_lines", false}}, page);
  EXPECT_NE(o.text.find("cookies"), std::string::npos);
  EXPECT_NE(o.text.find("JavaScript"), std::string::npos);
  o = run(json{{"type", "c4_lines"}, {"require_terminal_punct", false}, {"min_words_per_line", 0}}, page);
  EXPECT_NE(o.text.find("Home | About | Contact"), std::string::npos);
  EXPECT_NE(o.text.find("Short one."), std::string::npos);
  EXPECT_NE(o.text.find("Read more..."), std::string::npos);
}

TEST(GeneralC4Lines, WordsPerLineBoundary) {
  std::string five = "First line has five words.\nSecond line has five words.\nThird line has five words.";
  Outcome o = run(kC4, five + "\nOnly four words here.\n");
  EXPECT_TRUE(o.kept) << o.reason;
  EXPECT_EQ(o.text, five);
  std::string four = "First line has four.\nSecond line has four.\nThird line has four.";
  expect_rejected(kC4, four, "no lines left after C4 line filtering");
  o = run(json{{"type", "c4_lines"}, {"min_words_per_line", 4}}, four);
  EXPECT_TRUE(o.kept) << o.reason;
  EXPECT_EQ(o.text, four);
}

TEST(GeneralC4Lines, DocumentLevelRules) {
  std::string good = "First good line of this page.\nSecond good line of this page.\nThird good line of this page.\n";
  expect_rejected(kC4, good + "Lorem ipsum dolor sit amet, consectetur adipiscing elit.\n",
                  "contains \"lorem ipsum\"");
  // Only lines that passed the line rules are looked at (as in the reference): a heading
  // "Lorem Ipsum" without punctuation is just dropped.
  Outcome o = run(kC4, "Lorem Ipsum\n" + good);
  EXPECT_TRUE(o.kept) << o.reason;
  EXPECT_EQ(o.text, good.substr(0, good.size() - 1));
  expect_rejected(kC4, good + "Use the syntax {name} to insert a variable here.\n", "contains '{' (likely code)");
  o = run(json{{"type", "c4_lines"}, {"reject_curly_braces", false}, {"reject_lorem_ipsum", false}},
          good + "Use the syntax {name} to insert a variable here.\nLorem ipsum dolor sit amet, consectetur elit.");
  EXPECT_TRUE(o.kept) << o.reason;
  EXPECT_NE(o.text.find("{name}"), std::string::npos);
  EXPECT_NE(o.text.find("Lorem ipsum"), std::string::npos);
  expect_rejected(kC4, "", "no lines left after C4 line filtering");
  expect_rejected(kC4, "\r\n\r\n", "no lines left after C4 line filtering");
  expect_rejected(kC4, std::string(1 << 20, 'a'), "no lines left after C4 line filtering");
}

TEST(GeneralC4Lines, CitationsSentencesAndQuotes) {
  std::string page =
      "Tokyo is the capital city of Japan.[1]\n"
      "Mount Fuji is the tallest mountain in the country.[citation needed]\n"
      "It has many parks [12] and gardens [edit] to visit.\n";
  Outcome o = run(kC4, page);
  EXPECT_TRUE(o.kept) << o.reason;
  EXPECT_EQ(o.text,
            "Tokyo is the capital city of Japan.\n"
            "Mount Fuji is the tallest mountain in the country.\n"
            "It has many parks  and gardens  to visit.");
  // Without citation removal the first two lines do not end in an end mark.
  expect_rejected({{"type", "c4_lines"}, {"remove_citations", false}}, page, "1 sentences < min_sentences 3");
  // "e.g. the" is not a sentence boundary; a closing quote after the period is.
  std::string q =
      "We saw many animals, e.g. the lion and the tiger.\n"
      "She said \"this is the end.\"\n"
      "He left. Then he came back home.\n";
  o = run(kC4, q);
  EXPECT_TRUE(o.kept) << o.reason;
  EXPECT_EQ(o.text, q.substr(0, q.size() - 1));
  expect_rejected({{"type", "c4_lines"}, {"min_sentences", 5}}, q, "4 sentences < min_sentences 5");
  // Single quotes are no end mark in C4 unless configured.
  std::string single = "He called it 'the end of an era.'\n" + q;
  EXPECT_EQ(run(kC4, single).text, q.substr(0, q.size() - 1));
  EXPECT_EQ(run(json{{"type", "c4_lines"}, {"end_marks", {".", "?", "!", "\"", "'"}}}, single).text,
            single.substr(0, single.size() - 1));
}

// ---------------------------------------------------------------------------------------
// code_quality

const json kCode = {{"type", "code_quality"}};

TEST(GeneralCodeQuality, AlphanumericFraction) {
  // 27 code points, 3 lines; alphanumeric: int main return 0 = 14 -> 0.5185.
  std::string code = "int main() {\n  return 0;\n}\n";
  expect_kept(kCode, code);
  expect_rejected({{"type", "code_quality"}, {"min_alnum_frac", 0.52}}, code, "alphanumeric fraction 0.519 < 0.520");
  expect_kept({{"type", "code_quality"}, {"min_alnum_frac", 14.0 / 27}}, code);
  expect_rejected(kCode, "{}[]();;\n", "alphanumeric fraction 0.00 < 0.25");
  // Letters of any script count (Python's str.isalnum): 8 of 12.
  expect_kept({{"type", "code_quality"}, {"min_alnum_frac", 8.0 / 12}}, "// 日本語のコメント\n");
  expect_rejected(kCode, "", "empty text");
}

TEST(GeneralCodeQuality, LineLengths) {
  std::string short_lines = repeat("ab\n", 20);
  expect_kept(kCode, short_lines + std::string(1000, 'x') + "\n");
  expect_rejected(kCode, short_lines + std::string(1001, 'x') + "\n", "longest line 1001 chars > max_line_length 1000");
  expect_rejected(kCode, std::string(1 << 20, 'x'), "longest line 1048576 chars > max_line_length 1000");
  // Mean = code points (newlines included) / lines, as RedPajama's len(content) / len(lines).
  expect_kept(kCode, std::string(99, 'a') + "\n");
  expect_rejected(kCode, std::string(100, 'a') + "\n", "mean line length 101.00 > 100.00");
  expect_kept(kCode, std::string(100, 'a'));  // no final newline: 100 / 1
  // CRLF: '\r' is not part of the line's length.
  json wide = {{"type", "code_quality"}, {"max_mean_line_length", 1e9}};
  expect_kept(wide, std::string(1000, 'a') + "\r\n");
  expect_rejected(wide, std::string(1001, 'a') + "\r\nb\r\n", "longest line 1001 chars > max_line_length 1000");
}

TEST(GeneralCodeQuality, AlphaPerTokenIsOptional) {
  // "a = b + c;" -> tokens a = b + c ; (6), letters 3: 0.5 per token.
  expect_kept(kCode, "a = b + c;\n");
  json r = {{"type", "code_quality"}, {"min_alpha_token_ratio", 1.5}};
  expect_rejected(r, "a = b + c;\n", "alphabetic chars per token 0.50 < 1.50");
  expect_kept(r, "hello world\n");  // 10 letters, 2 tokens
  expect_kept(r, "result = compute(value)\n");  // 18 letters, 6 tokens
}

// ---------------------------------------------------------------------------------------
// Concurrency: filters are shared by worker threads; thread_local scratch must not leak
// between documents or threads.

TEST(GeneralConcurrency, SharedFiltersGiveSameResults) {
  std::vector<std::unique_ptr<tsumugi::corpus::Filter>> filters;
  filters.push_back(make_filter(json{{"type", "compression_ratio"}}));
  filters.push_back(make_filter(json{{"type", "repetition"}}));
  filters.push_back(make_filter(json{{"type", "repetition"}, {"unit", "char"}}));
  filters.push_back(make_filter(json{{"type", "pii_mask"}}));
  filters.push_back(make_filter(json{{"type", "gopher_quality"}}));
  filters.push_back(make_filter(json{{"type", "c4_lines"}}));
  filters.push_back(make_filter(json{{"type", "language"}, {"languages", {"en"}}}));
  std::vector<std::string> docs = {kEnglish, kJapanese, "call 03-1234-5678 or a@b.example.com",
                                   repeat("spam spam ", 100), noise(2000), join_lines(cycle_words(80))};
  std::vector<Outcome> expected;
  for (const auto& f : filters)
    for (const auto& d : docs) expected.push_back(run(*f, d));
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int round = 0; round < 30; ++round) {
        size_t k = 0;
        for (const auto& f : filters)
          for (const auto& d : docs) {
            Outcome o = run(*f, d);
            const Outcome& e = expected[k++];
            if (o.kept != e.kept || o.text != e.text || o.reason != e.reason) ++mismatches[t];
          }
      }
    });
  for (auto& th : threads) th.join();
  for (int m : mismatches) EXPECT_EQ(m, 0);
}

// ---------------------------------------------------------------------------------------
// Presets

std::vector<std::unique_ptr<tsumugi::corpus::Filter>> build_preset(const std::string& name) {
  auto profile = tsumugi::corpus::load_preset(name);
  std::vector<std::unique_ptr<tsumugi::corpus::Filter>> fs;
  for (const auto& entry : profile.filters) fs.push_back(make_filter(entry));
  return fs;
}

Outcome run_all(const std::vector<std::unique_ptr<tsumugi::corpus::Filter>>& fs, const std::string& text) {
  Outcome o{true, text, ""};
  for (const auto& f : fs) {
    Document d;
    d.text = o.text;
    if (!f->apply(d, o.reason)) {
      o.kept = false;
      o.reason = f->name() + ": " + o.reason;
      return o;
    }
    o.text = d.text;
  }
  return o;
}

TEST(GeneralPresets, EnglishPreset) {
  auto fs = build_preset("en");
  ASSERT_EQ(fs.size(), 6u);
  std::string page = std::string("Menu | Login\n") + kEnglish + "\nWe use cookies to improve your experience here.\n";
  Outcome o = run_all(fs, page);
  EXPECT_TRUE(o.kept) << o.reason;
  EXPECT_EQ(o.text, kEnglish);
  o = run_all(fs, kJapanese);
  EXPECT_FALSE(o.kept);
  EXPECT_EQ(o.reason.rfind("language: language ja", 0), 0u) << o.reason;
  o = run_all(fs, std::string(kEnglish) + "\n" + kEnglish + "\n" + kEnglish);
  EXPECT_FALSE(o.kept);
  EXPECT_EQ(o.reason.rfind("gopher_repetition: duplicate line", 0), 0u) << o.reason;
}

TEST(GeneralPresets, CodePreset) {
  auto fs = build_preset("code");
  ASSERT_EQ(fs.size(), 2u);
  EXPECT_TRUE(run_all(fs, "int main() {\n  return 0;\n}\n").kept);
  Outcome o = run_all(fs, "");
  EXPECT_FALSE(o.kept);
  EXPECT_EQ(o.reason, "length: 0 chars < min_chars 1");
  o = run_all(fs, repeat("=", 50) + "\n");
  EXPECT_FALSE(o.kept);
  EXPECT_EQ(o.reason, "code_quality: alphanumeric fraction 0.00 < 0.25");
}

}  // namespace
