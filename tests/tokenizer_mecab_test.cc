// MeCab pre-splitting for training (`tokenizer train --mecab`, `--recipe llm-jp --mecab`): the
// splitter's word boundaries; no learned piece spans two MeCab words of the training text (checked
// against the `mecab -Owakati` command as an independent oracle, and shown to be violated without
// --mecab); SentencePiece loads the result and encodes it as we do; a missing dictionary fails
// clearly. Skipped where MeCab is not installed (apt-get install mecab mecab-ipadic-utf8).
#include <gtest/gtest.h>

#include <cstdio>
#include <unordered_set>

#include "test_util.h"
#include "tokenizer/corpus_split.h"
#include "tokenizer/mecab.h"
#include "tokenizer/model_proto.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/trainer.h"
#include "util/error.h"
#include "util/io.h"

namespace tsumugi {
namespace {

using testing::Split;
using testing::split_corpus;
using testing::TempDir;
using tokenizer::MecabSplitter;
using tokenizer::PieceType;

const std::string kWs = "\xE2\x96\x81";  // U+2581

// Empty if libmecab with a UTF-8 dictionary and the mecab command are usable, else why not.
std::string mecab_missing() {
  try {
    MecabSplitter probe;
  } catch (const Error& e) {
    return e.what();
  }
  std::string out;
  if (testing::run_command("command -v mecab", out) != 0) return "the mecab command is not installed (apt-get install mecab)";
  return {};
}

bool have_spm() {
  std::string out;
  return testing::run_command("command -v spm_encode", out) == 0;
}

std::vector<size_t> starts(MecabSplitter::Session& s, const std::string& text) {
  std::vector<size_t> v;
  s.word_starts(text, v);
  return v;
}

TEST(TokenizerMecab, WordStarts) {
  if (auto why = mecab_missing(); !why.empty()) GTEST_SKIP() << why;
  MecabSplitter mecab;
  MecabSplitter::Session s(mecab);
  // すもも|も|もも|も|もも|の|うち (3 bytes a character)
  const std::string mo = "\xE3\x82\x82";
  EXPECT_EQ(starts(s, "\xE3\x81\x99" + mo + mo + mo + mo + mo + mo + mo + mo + "\xE3\x81\xAE\xE3\x81\x86\xE3\x81\xA1"),
            (std::vector<size_t>{9, 12, 18, 21, 27, 30}));
  // Whitespace MeCab skips goes with the next word: "猫 が" -> 猫|" が"; leading spaces stay
  // with the first word.
  EXPECT_EQ(starts(s, "\xE7\x8C\xAB \xE3\x81\x8C"), (std::vector<size_t>{3}));
  EXPECT_EQ(starts(s, "   \xE7\x8C\xAB   \xE3\x81\x8C"), (std::vector<size_t>{6}));
  EXPECT_TRUE(starts(s, "").empty());
  EXPECT_TRUE(starts(s, "   ").empty());
  // Longer than MeCab's 16-bit node lengths: cut into windows, offsets still ascending and inside.
  std::string long_text;
  while (long_text.size() < 100000) long_text += "\xE7\x8C\xAB\xE3\x81\x8C\xE9\xB3\xB4\xE3\x81\x8F ";
  const auto v = starts(s, long_text);
  ASSERT_FALSE(v.empty());
  for (size_t i = 0; i < v.size(); ++i) {
    EXPECT_GT(v[i], i ? v[i - 1] : 0) << i;
    EXPECT_LT(v[i], long_text.size());
    EXPECT_NE(uint8_t(long_text[v[i]]) & 0xC0, 0x80) << "boundary inside a character at " << v[i];
  }
}

// Every substring (in characters, up to 16) of the words `mecab -Owakati` finds in `file`.
std::unordered_set<std::string> word_substrings(const std::string& file) {
  std::string out;
  const std::string wakati = file + ".wakati";
  EXPECT_EQ(testing::run_command("mecab -Owakati -b 1000000 < " + file + " > " + wakati + " 2>&1", out), 0) << out;
  std::unordered_set<std::string> words, subs;
  for (const auto& line : testing::read_lines(wakati)) {
    size_t p = 0;
    while (p < line.size()) {
      size_t sp = line.find(' ', p);
      if (sp == std::string::npos) sp = line.size();
      if (sp > p) words.insert(line.substr(p, sp - p));
      p = sp + 1;
    }
  }
  for (const auto& w : words) {
    std::vector<size_t> at;  // character starts
    for (size_t i = 0; i < w.size(); ++i)
      if ((uint8_t(w[i]) & 0xC0) != 0x80) at.push_back(i);
    at.push_back(w.size());
    for (size_t a = 0; a + 1 < at.size(); ++a)
      for (size_t b = a + 1; b < at.size() && b - a <= 16; ++b) subs.insert(w.substr(at[a], at[b] - at[a]));
  }
  return subs;
}

// Normal pieces (without their leading U+2581) that are not inside any MeCab word.
std::vector<std::string> crossing_pieces(const tokenizer::ModelProto& m, const std::unordered_set<std::string>& subs,
                                         size_t* checked) {
  std::vector<std::string> out;
  *checked = 0;
  for (const auto& p : m.pieces) {
    if (p.type_or_default() != PieceType::normal) continue;
    std::string s = p.piece;
    if (s.rfind(kWs, 0) == 0) s.erase(0, kWs.size());
    if (s.empty()) continue;
    ++*checked;
    if (!subs.count(s)) out.push_back(p.piece);
  }
  return out;
}

TEST(TokenizerMecab, PiecesStayInsideMecabWords) {
  if (auto why = mecab_missing(); !why.empty()) GTEST_SKIP() << why;
  TempDir dir;
  const Split s = split_corpus(dir, "ja", 600000, 300);
  tokenizer::TrainOptions o;
  o.inputs = {s.train};
  o.vocab_size = 3000;
  o.num_threads = 2;
  // Every character required: no rare character is replaced before MeCab sees the text, so the
  // words are the ones `mecab` finds in the file.
  o.character_coverage = 1.0f;
  o.mecab = true;
  tokenizer::TrainStats st;
  tokenizer::train_and_save(o, dir.file("mecab"), &st);
  EXPECT_GT(st.mecab_boundaries, st.sentences);
  o.mecab = false;
  tokenizer::train_and_save(o, dir.file("plain"), nullptr);

  const auto subs = word_substrings(s.train);
  size_t checked = 0;
  const auto with = crossing_pieces(tokenizer::load_model_proto(dir.file("mecab.model")), subs, &checked);
  EXPECT_GT(checked, 2000u);
  EXPECT_TRUE(with.empty()) << with.size() << " pieces span MeCab words, e.g. " << with.front();
  // Without pre-splitting the unigram trainer does learn multi-word pieces (を返す, ことができる, ...):
  // the check above can see them.
  const auto without = crossing_pieces(tokenizer::load_model_proto(dir.file("plain.model")), subs, &checked);
  std::printf("[mecab] pieces spanning MeCab words: %zu with --mecab, %zu of %zu without\n", with.size(),
              without.size(), checked);
  EXPECT_GT(without.size(), checked / 50);

  // SentencePiece loads the pre-split model and segments held-out text as we do.
  if (have_spm()) {
    std::string out;
    const std::string ids_file = dir.file("heldout.ids");
    ASSERT_EQ(testing::run_command("spm_encode --model=" + dir.file("mecab.model") + " --output_format=id < " +
                                       s.heldout + " > " + ids_file + " 2>&1",
                                   out),
              0)
        << out;
    const auto spm = testing::read_lines(ids_file);
    const auto tok = tokenizer::Tokenizer::load(dir.file("mecab.model"));
    ASSERT_EQ(spm.size(), s.heldout_lines.size());
    for (size_t i = 0; i < spm.size(); ++i) {
      std::vector<int32_t> ids;
      tok.encode(s.heldout_lines[i], ids);
      std::string line;
      for (size_t k = 0; k < ids.size(); ++k) line += (k ? " " : "") + std::to_string(ids[k]);
      ASSERT_EQ(line, spm[i]) << "held-out line " << i;
    }
  }
}

TEST(TokenizerMecab, RecipeCli) {
  if (auto why = mecab_missing(); !why.empty()) GTEST_SKIP() << why;
  TempDir dir;
  const Split c = split_corpus(dir, "code", 80000, 10), e = split_corpus(dir, "en", 80000, 10),
              j = split_corpus(dir, "ja", 200000, 200);
  std::string out;
  const std::string bin = std::string(TSUMUGI_BINARY) + " tokenizer train --recipe llm-jp --code-input " + c.train +
                          " --en-input " + e.train + " --ja-input " + j.train +
                          " --code-vocab-size 400 --en-vocab-size 400 --ja-vocab-size 1200 --em-iterations 1"
                          " --character-coverage 1 --num-threads 2 --keep-domain-models true";
  ASSERT_EQ(testing::run_command(bin + " --mecab -o " + dir.file("m") + " 2>&1", out), 0) << out;
  EXPECT_NE(out.find("MeCab"), std::string::npos) << out;
  // The Japanese domain model was trained on MeCab words.
  size_t checked = 0;
  const auto crossing =
      crossing_pieces(tokenizer::load_model_proto(dir.file("m.ja.model")), word_substrings(j.train), &checked);
  EXPECT_GT(checked, 500u);
  EXPECT_TRUE(crossing.empty()) << crossing.size() << " pieces span MeCab words, e.g. " << crossing.front();
  // The merged model loads in SentencePiece and encodes Japanese held-out text as we do.
  const auto tok = tokenizer::Tokenizer::load(dir.file("m.model"));
  EXPECT_EQ(tok.id_to_piece(7), "<EOD>");
  if (have_spm()) {
    ASSERT_EQ(testing::run_command("spm_encode --model=" + dir.file("m.model") + " --output_format=id < " + j.heldout +
                                       " > " + dir.file("ja.ids") + " 2>&1",
                                   out),
              0)
        << out;
    const auto spm = testing::read_lines(dir.file("ja.ids"));
    ASSERT_EQ(spm.size(), j.heldout_lines.size());
    for (size_t i = 0; i < spm.size(); ++i) {
      std::vector<int32_t> ids;
      tok.encode(j.heldout_lines[i], ids);
      std::string line;
      for (size_t k = 0; k < ids.size(); ++k) line += (k ? " " : "") + std::to_string(ids[k]);
      ASSERT_EQ(line, spm[i]) << "held-out line " << i;
      EXPECT_EQ(tok.decode(ids), j.heldout_lines[i]);
    }
  }
  // A dictionary that is not there: a clear error and no model.
  EXPECT_NE(testing::run_command(bin + " --mecab --mecab-args '-d " + dir.file("no-such-dic") + "' -o " +
                                     dir.file("x") + " 2>&1",
                                 out),
            0);
  EXPECT_NE(out.find("MeCab could not start"), std::string::npos) << out;
  EXPECT_NE(out.find("apt-get install mecab mecab-ipadic-utf8"), std::string::npos) << out;
  EXPECT_FALSE(std::filesystem::exists(dir.file("x.model")));
}

}  // namespace
}  // namespace tsumugi
