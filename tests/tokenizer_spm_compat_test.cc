// The tokenizer against SentencePiece itself: for models trained by spm_train with each
// normalization rule and option, every line of the bundled corpora and every generated hard
// string must encode to exactly the ids and pieces spm_encode prints, and decoding must give
// exactly what spm_decode prints. Models are read and written back byte-identically, and the
// .vocab text matches spm_train's.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <iostream>

#include "test_util.h"
#include "tokenizer/model_proto.h"
#include "tokenizer/spm_oracle.h"
#include "tokenizer/tokenizer.h"
#include "util/io.h"

namespace spm = tsumugi::testing::spm;
using tsumugi::read_file;
using tsumugi::testing::read_lines;
using tsumugi::tokenizer::Tokenizer;

namespace {

std::string join_ids(const std::vector<int32_t>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) s += ' ';
    s += std::to_string(ids[i]);
  }
  return s;
}

std::string join_pieces(const std::vector<std::string>& pieces) {
  std::string s;
  for (size_t i = 0; i < pieces.size(); ++i) {
    if (i) s += ' ';
    s += pieces[i];
  }
  return s;
}

// spm_decode's reading of a line: split at ' ' dropping empty fields; ids through atoi.
std::vector<std::string> split_fields(const std::string& line) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= line.size()) {
    size_t sp = line.find(' ', pos);
    if (sp == std::string::npos) sp = line.size();
    if (sp > pos) out.push_back(line.substr(pos, sp - pos));
    pos = sp + 1;
  }
  return out;
}

std::string printable(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c >= 0x20 && c != 0x7f)
      out += char(c);
    else
      out += "\\x" + std::string(1, "0123456789abcdef"[c >> 4]) + "0123456789abcdef"[c & 15];
  }
  return out.size() > 300 ? out.substr(0, 300) + "..." : out;
}

// Counts lines where `ours(i)` differs from `expected[i]` (every `stride`-th line), reporting
// the first few.
template <typename F>
size_t count_mismatches(const std::string& what, const std::vector<std::string>& inputs,
                        const std::vector<std::string>& expected, F&& ours, size_t stride = 1) {
  EXPECT_EQ(inputs.size(), expected.size()) << what << ": line counts differ";
  const size_t n = std::min(inputs.size(), expected.size());
  size_t bad = 0;
  for (size_t i = 0; i < n; i += stride) {
    const std::string got = ours(i);
    if (got != expected[i]) {
      if (++bad <= 3)
        ADD_FAILURE() << what << " line " << i + 1 << "\n  input:    " << printable(inputs[i])
                      << "\n  expected: " << printable(expected[i]) << "\n  got:      " << printable(got);
    }
  }
  return bad;
}

class SpmCompat : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    const std::string missing = spm::missing_tools();
    if (!missing.empty()) FAIL() << missing;
  }
};

TEST_P(SpmCompat, EncodeAndDecodeExactlyLikeSentencePiece) {
  const spm::Config& config = spm::config(GetParam());
  const spm::Model m = spm::ensure_model(config);
  const spm::Inputs& in = spm::inputs();
  const Tokenizer tok = Tokenizer::load(m.model());

  std::string summary;
  for (const auto& name : config.input_names()) {
    const std::vector<std::string> lines = read_lines(in.file(name).string());
    const std::vector<std::string> spm_ids = read_lines(m.file(name + ".id.zst"));
    const std::vector<std::string> spm_pieces = read_lines(m.file(name + ".piece.zst"));
    std::vector<int32_t> ids;
    std::vector<std::string> pieces;
    const size_t stride = name == "hard" ? 1 : spm::kCorpusStride;
    const size_t checked = (lines.size() + stride - 1) / stride;
    const size_t bad_ids = count_mismatches(config.name + " " + name + " ids", lines, spm_ids, [&](size_t i) {
      ids.clear();
      tok.encode(lines[i], ids);
      return join_ids(ids);
    }, stride);
    const size_t bad_pieces =
        count_mismatches(config.name + " " + name + " pieces", lines, spm_pieces, [&](size_t i) {
          pieces.clear();
          tok.encode_pieces(lines[i], pieces);
          return join_pieces(pieces);
        }, stride);
    // Decoding spm's own ids and pieces.
    const size_t bad_id_dec = count_mismatches(config.name + " " + name + " decode ids", spm_ids,
                                               read_lines(m.file(name + ".id.dec.zst")), [&](size_t i) {
                                                 std::vector<int32_t> v;
                                                 for (const auto& f : split_fields(spm_ids[i]))
                                                   v.push_back(int32_t(std::strtol(f.c_str(), nullptr, 10)));
                                                 return tok.decode(v);
                                               }, stride);
    size_t bad_piece_dec = 0;
    if (name == "hard")
      bad_piece_dec = count_mismatches(config.name + " " + name + " decode pieces", spm_pieces,
                                       read_lines(m.file(name + ".piece.dec.zst")),
                                       [&](size_t i) { return tok.decode_pieces(split_fields(spm_pieces[i])); });
    EXPECT_EQ(bad_ids + bad_pieces + bad_id_dec + bad_piece_dec, 0u) << config.name << " " << name;
    summary += " " + name + " " + std::to_string(checked - bad_ids) + "/" + std::to_string(checked) + " ids, " +
               std::to_string(checked - bad_pieces) + " pieces, " + std::to_string(checked - bad_id_dec) +
               " id decodes" +
               (name == "hard" ? ", " + std::to_string(checked - bad_piece_dec) + " piece decodes" : "") + ";";
  }

  // Arbitrary id sequences: control, unknown and byte pieces anywhere.
  const std::vector<std::string> random_ids = read_lines(m.file("random.id"));
  const size_t bad_random =
      count_mismatches(config.name + " decode random ids", random_ids, read_lines(m.file("random.id.dec")),
                       [&](size_t i) {
                         std::vector<int32_t> v;
                         for (const auto& f : split_fields(random_ids[i])) v.push_back(std::stoi(f));
                         return tok.decode(v);
                       });
  EXPECT_EQ(bad_random, 0u);
  summary += " random " + std::to_string(random_ids.size() - bad_random) + "/" + std::to_string(random_ids.size());
  std::cout << "[agreement] " << config.name << ":" << summary << "\n";
}

TEST_P(SpmCompat, ModelRoundTripsAndVocabMatchesSpmTrain) {
  const spm::Model m = spm::ensure_model(spm::config(GetParam()));
  const std::string bytes = read_file(m.model());
  const auto proto = tsumugi::tokenizer::parse_model_proto(bytes, m.model());
  EXPECT_TRUE(tsumugi::tokenizer::serialize_model_proto(proto) == bytes) << "re-serialized model differs";
  EXPECT_EQ(tsumugi::tokenizer::format_vocab(proto), read_file(m.file("model.vocab")));
}

std::vector<std::string> config_names() {
  std::vector<std::string> names;
  for (const auto& c : spm::configs()) names.push_back(c.name);
  return names;
}

INSTANTIATE_TEST_SUITE_P(Models, SpmCompat, ::testing::ValuesIn(config_names()),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

// The unigram encoder walks pieces one character at a time when the model's pieces are all
// UTF-8, and one byte at a time otherwise (a model may hold any bytes). Adding a piece that is
// not UTF-8 (and can never match: the normalizer turns stray bytes into U+FFFD) sends a model
// down the byte path without changing what it should output; both paths must agree on every
// corpus line and hard string, for models with and without user-defined symbols and charsmaps.
TEST(SpmCompatPaths, UnigramByteAndCharacterPathsAgree) {
  const std::string missing = spm::missing_tools();
  if (!missing.empty()) FAIL() << missing;
  for (const char* name : {"unigram_nmt_nfkc", "unigram_identity_byte_fallback", "unigram_user_control_symbols"}) {
    const spm::Model m = spm::ensure_model(spm::config(name));
    const Tokenizer chars = Tokenizer::load(m.model());
    auto proto = tsumugi::tokenizer::load_model_proto(m.model());
    // Scored as the lowest normal piece, so that the unknown-piece score (lowest - 10) stays.
    float lowest = 0;
    for (const auto& p : proto.pieces)
      if (p.type_or_default() == tsumugi::tokenizer::PieceType::normal) lowest = std::min(lowest, p.score_or_default());
    tsumugi::tokenizer::SentencePiece extra;
    extra.piece = "\xff\xfe";
    extra.score = lowest;
    proto.pieces.push_back(extra);
    const Tokenizer bytes = Tokenizer::from_proto(proto, "byte-path model");
    size_t lines = 0, bad = 0;
    for (const auto& set : spm::config(name).input_names()) {
      const auto input = read_lines(spm::inputs().file(set).string());
      for (size_t i = 0; i < input.size(); i += spm::kCorpusStride) {
        std::vector<int32_t> a, b;
        chars.encode(input[i], a);
        bytes.encode(input[i], b);
        ++lines;
        if (a != b && ++bad <= 3)
          ADD_FAILURE() << name << " " << set << " line " << i + 1 << ": " << printable(input[i]) << "\n  chars: "
                        << join_ids(a) << "\n  bytes: " << join_ids(b);
      }
    }
    EXPECT_EQ(bad, 0u) << name << ": " << bad << " of " << lines << " lines differ";
  }
}

}  // namespace
