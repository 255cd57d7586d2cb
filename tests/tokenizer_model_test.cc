// The tokenizer on hand-built models (no SentencePiece needed): the public API, the ModelProto
// reader and writer, and bad input — truncated, corrupted, non-protobuf and inconsistent models
// must raise a clear tsumugi::Error, never crash.
#include <gtest/gtest.h>

#include <random>
#include <thread>

#include "test_util.h"
#include "tokenizer/model_proto.h"
#include "tokenizer/spm_oracle.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/io.h"

using namespace tsumugi::tokenizer;
using tsumugi::Error;
using tsumugi::testing::TempDir;
using tsumugi::testing::write_bytes;

namespace {

const std::string kSp = "\xe2\x96\x81";  // U+2581

SentencePiece piece(std::string text, float score, PieceType type = PieceType::normal) {
  SentencePiece p;
  p.piece = std::move(text);
  p.score = score;
  if (type != PieceType::normal) p.type = type;
  return p;
}

// A small unigram model with identity normalization (no charsmap), as spm_train lays it out:
// <unk> <s> </s>, then user-defined symbols, then scored pieces.
ModelProto small_model(ModelType type = ModelType::unigram, bool byte_fallback = false) {
  ModelProto m;
  m.trainer_spec.emplace();
  m.trainer_spec->model_type = type;
  m.trainer_spec->vocab_size = 0;
  if (byte_fallback) m.trainer_spec->byte_fallback = true;
  m.normalizer_spec.emplace();
  m.normalizer_spec->name = "identity";
  m.pieces.push_back(piece("<unk>", 0, PieceType::unknown));
  m.pieces.push_back(piece("<s>", 0, PieceType::control));
  m.pieces.push_back(piece("</s>", 0, PieceType::control));
  m.pieces.push_back(piece("<mask>", 0, PieceType::user_defined));
  if (byte_fallback)
    for (int b = 0; b < 256; ++b) m.pieces.push_back(piece(byte_piece(uint8_t(b)), 0, PieceType::byte));
  const std::vector<std::pair<std::string, float>> scored = {
      {kSp, -1.0f},         {"a", -2.0f},          {"b", -2.5f},           {"c", -3.0f},
      {kSp + "a", -1.5f},   {"ab", -1.8f},         {"abc", -2.2f},         {kSp + "ab", -2.0f},
      {"\xe6\x97\xa5", -3}, {"\xe6\x9c\xac", -3},  {"\xe6\x97\xa5\xe6\x9c\xac", -2.5f}, {"bc", -2.1f},
  };
  for (const auto& [t, s] : scored) m.pieces.push_back(piece(t, s));
  m.trainer_spec->vocab_size = int32_t(m.pieces.size());
  return m;
}

std::vector<std::string> pieces_of(const Tokenizer& t, std::string_view text) {
  std::vector<std::string> out;
  t.encode_pieces(text, out);
  return out;
}

std::vector<int32_t> ids_of(const Tokenizer& t, std::string_view text) {
  std::vector<int32_t> out;
  t.encode(text, out);
  return out;
}

// Expects from_bytes to throw tsumugi::Error whose message contains `needle`.
void expect_load_error(std::string_view bytes, const std::string& needle) {
  try {
    Tokenizer::from_bytes(bytes, "bad.model");
    ADD_FAILURE() << "loaded a bad model; expected an error mentioning " << needle;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("bad.model"), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(TokenizerModel, ApiBasics) {
  const Tokenizer t = Tokenizer::from_proto(small_model(), "small");
  EXPECT_EQ(t.vocab_size(), 16);
  EXPECT_EQ(t.unk_id(), 0);
  EXPECT_EQ(t.bos_id(), 1);
  EXPECT_EQ(t.eos_id(), 2);
  EXPECT_EQ(t.pad_id(), -1);
  EXPECT_EQ(t.piece_to_id("<mask>"), 3);
  EXPECT_EQ(t.piece_to_id("abc"), 10);
  EXPECT_EQ(t.piece_to_id("zzz"), 0);  // unk for absent pieces
  EXPECT_EQ(t.id_to_piece(4), kSp);
  EXPECT_TRUE(t.is_control(1));
  EXPECT_TRUE(t.is_user_defined(3));
  EXPECT_THROW(t.id_to_piece(16), Error);
  EXPECT_THROW(t.id_to_piece(-1), Error);
  EXPECT_EQ(t.model_type(), ModelType::unigram);
}

TEST(TokenizerModel, UnigramPicksTheBestPathAndMergesUnknowns) {
  const Tokenizer t = Tokenizer::from_proto(small_model(), "small");
  // "▁" + "abc" (-1.0 - 2.2) beats "▁a" + "bc" (-1.5 - 2.1) and "▁ab" + "c" (-2.0 - 3.0).
  EXPECT_EQ(pieces_of(t, "abc"), (std::vector<std::string>{kSp, "abc"}));
  // Unknown characters: each one is an <unk> node, and a run of them is one piece.
  EXPECT_EQ(pieces_of(t, "a xyz"), (std::vector<std::string>{kSp + "a", kSp, "xyz"}));
  EXPECT_EQ(ids_of(t, "a xyz"), (std::vector<int32_t>{8, 4, 0}));
  // User-defined symbols win wherever they occur.
  EXPECT_EQ(pieces_of(t, "a<mask>b"), (std::vector<std::string>{kSp + "a", "<mask>", "b"}));
  EXPECT_EQ(pieces_of(t, "\xe6\x97\xa5\xe6\x9c\xac"), (std::vector<std::string>{kSp, "\xe6\x97\xa5\xe6\x9c\xac"}));
  // Extra whitespace is dropped; empty and all-space lines give nothing.
  EXPECT_EQ(pieces_of(t, "  a   b  "), (std::vector<std::string>{kSp + "a", kSp, "b"}));
  EXPECT_TRUE(pieces_of(t, "").empty());
  EXPECT_TRUE(pieces_of(t, "   ").empty());
}

TEST(TokenizerModel, InvalidUtf8BecomesReplacementCharacters) {
  const Tokenizer t = Tokenizer::from_proto(small_model(), "small");
  EXPECT_EQ(t.normalize("a\xff\xe3\x81"), kSp + "a\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
  EXPECT_EQ(pieces_of(t, "a\xff"), (std::vector<std::string>{kSp + "a", "\xef\xbf\xbd"}));
}

TEST(TokenizerModel, ByteFallbackSpellsUnknownCharactersInBytes) {
  const Tokenizer t = Tokenizer::from_proto(small_model(ModelType::unigram, true), "bytes");
  const int32_t first_byte = 4;  // <0x00> follows <unk> <s> </s> <mask>
  EXPECT_EQ(t.piece_to_id("<0x41>"), first_byte + 0x41);
  EXPECT_EQ(pieces_of(t, "a\xc3\xa9"), (std::vector<std::string>{kSp + "a", "<0xC3>", "<0xA9>"}));
  const std::vector<int32_t> ids = ids_of(t, "a\xc3\xa9");
  EXPECT_EQ(t.decode(ids), "a\xc3\xa9");
  // Byte pieces that are not UTF-8 decode to U+FFFD, one per bad byte.
  EXPECT_EQ(t.decode({first_byte + 0x61, first_byte + 0xff, first_byte + 0xe3, first_byte + 0x81}),
            "a\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
}

TEST(TokenizerModel, DecodeFollowsSentencePiece) {
  const Tokenizer t = Tokenizer::from_proto(small_model(), "small");
  EXPECT_EQ(t.decode(ids_of(t, "ab c")), "ab c");
  // Control pieces vanish; <unk> is shown as " ⁇ "; the first piece's U+2581 is dropped.
  EXPECT_EQ(t.decode({1, 8, 0, 2}), "a \xe2\x81\x87 ");
  // Pieces the model does not know are copied through as they are (U+2581 included).
  EXPECT_EQ(t.decode_pieces(std::vector<std::string>{kSp + "a", "zz", kSp + "ab", kSp + "q"}), "azz ab\xe2\x96\x81q");
  EXPECT_THROW(t.decode({99}), Error);
  EXPECT_THROW(t.decode({-1}), Error);
}

TEST(TokenizerModel, BpeMergesByScore) {
  ModelProto m = small_model(ModelType::bpe);
  const Tokenizer t = Tokenizer::from_proto(m, "bpe");
  // Merges: "▁a"(-1.5) first, then "▁ab"(-2.0) over "bc"(-2.1); "c" stays.
  EXPECT_EQ(pieces_of(t, "abc"), (std::vector<std::string>{kSp + "ab", "c"}));
  EXPECT_EQ(pieces_of(t, "x<mask>"), (std::vector<std::string>{kSp, "x", "<mask>"}));
}

TEST(TokenizerModel, EncodeIsThreadSafe) {
  const Tokenizer t = Tokenizer::from_proto(small_model(), "small");
  std::vector<std::string> lines;
  std::mt19937 rng(3);
  const std::vector<std::string> parts = {"a", "b", "c", " ", "\xe6\x97\xa5", "\xe6\x9c\xac", "<mask>", "x"};
  for (int i = 0; i < 2000; ++i) {
    std::string s;
    for (int k = 0; k < int(rng() % 60); ++k) s += parts[rng() % parts.size()];
    lines.push_back(s);
  }
  std::vector<std::vector<int32_t>> expected;
  for (const auto& l : lines) expected.push_back(ids_of(t, l));
  std::vector<std::thread> threads;
  std::vector<int> bad(4, 0);
  for (int th = 0; th < 4; ++th) {
    threads.emplace_back([&, th] {
      const Tokenizer copy = t;  // copies share the model
      for (int rep = 0; rep < 3; ++rep)
        for (size_t i = 0; i < lines.size(); ++i)
          if (ids_of(copy, lines[(i + size_t(th) * 97) % lines.size()]) != expected[(i + size_t(th) * 97) % lines.size()])
            ++bad[size_t(th)];
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad, std::vector<int>(4, 0));
}

TEST(TokenizerModelProto, RoundTripKeepsUnknownFieldsAndPresence) {
  ModelProto m = small_model();
  m.pieces[5].unknown_fields = std::string("\xa8\x0c\x07", 3);  // field 201 varint 7
  m.unknown_fields = std::string("\xd2\x0c\x02hi", 5);           // field 202 bytes "hi"
  m.trainer_spec->pad_id = -1;                                   // negative int32: 10-byte varint
  m.trainer_spec->character_coverage = 0.9995f;
  m.trainer_spec->input_sentence_size = 1ull << 40;
  m.trainer_spec->control_symbols = {"<a>", "<b>"};
  m.normalizer_spec->add_dummy_prefix = false;
  m.denormalizer_spec.emplace();
  m.self_test_data.emplace();
  m.self_test_data->samples.push_back(SelfTestSample{"in", "out", ""});
  const std::string bytes = serialize_model_proto(m);
  const ModelProto back = parse_model_proto(bytes, "mem");
  EXPECT_EQ(serialize_model_proto(back), bytes);
  EXPECT_EQ(back.pieces[5].unknown_fields, m.pieces[5].unknown_fields);
  EXPECT_EQ(back.unknown_fields, m.unknown_fields);
  EXPECT_EQ(back.trainer().pad_id, -1);
  EXPECT_EQ(back.trainer().input_sentence_size, 1ull << 40);
  EXPECT_EQ(back.trainer().control_symbols, m.trainer_spec->control_symbols);
  EXPECT_FALSE(back.trainer().split_digits.has_value());
  EXPECT_EQ(back.normalizer().add_dummy_prefix, false);
  ASSERT_TRUE(back.self_test_data.has_value());
  EXPECT_EQ(back.self_test_data->samples.at(0).expected, "out");
  EXPECT_TRUE(back.denormalizer_spec.has_value());
}

TEST(TokenizerModelProto, SaveLoadAndVocabFile) {
  TempDir dir;
  const ModelProto m = small_model();
  save_model_proto(m, dir.file("m.model"));
  EXPECT_EQ(serialize_model_proto(load_model_proto(dir.file("m.model"))), serialize_model_proto(m));
  save_vocab(m, dir.file("m.vocab"));
  const auto lines = tsumugi::testing::read_lines(dir.file("m.vocab"));
  ASSERT_EQ(lines.size(), m.pieces.size());
  EXPECT_EQ(lines[0], "<unk>\t0");
  EXPECT_EQ(lines[8], kSp + "a\t-1.5");
  EXPECT_EQ(byte_piece(0x0a), "<0x0A>");
  EXPECT_EQ(piece_to_byte("<0xFF>"), 255);
  EXPECT_EQ(piece_to_byte("<0xff>"), -1);  // SentencePiece only knows upper-case names
}

TEST(TokenizerBadInput, MissingEmptyAndNonProtobufFiles) {
  TempDir dir;
  try {
    Tokenizer::load(dir.file("absent.model"));
    ADD_FAILURE() << "loaded a missing file";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("absent.model"), std::string::npos) << e.what();
  }
  expect_load_error("", "empty");
  expect_load_error("hello, this is a text file\n", "not a valid SentencePiece model");
  expect_load_error(std::string("\x0a\xff\xff\xff\xff\x0f", 6), "past the end");
  expect_load_error(std::string("\x0a\x02\x0a", 3), "not a valid SentencePiece model");
  // Parses as protobuf, but has no pieces.
  expect_load_error(std::string("\x12\x00", 2), "no pieces");
}

TEST(TokenizerBadInput, InconsistentModels) {
  {
    ModelProto m = small_model();
    m.trainer_spec->model_type = static_cast<ModelType>(7);
    expect_load_error(serialize_model_proto(m), "unknown model type 7");
  }
  {
    ModelProto m = small_model();
    m.pieces[0].type = PieceType::normal;
    expect_load_error(serialize_model_proto(m), "no unknown piece");
  }
  {
    ModelProto m = small_model();
    m.pieces.push_back(piece("a", -1));
    expect_load_error(serialize_model_proto(m), "defined twice");
  }
  {
    ModelProto m = small_model();
    m.pieces.push_back(piece("<0x41>", 0, PieceType::byte));
    expect_load_error(serialize_model_proto(m), "byte_fallback is off");
  }
  {
    ModelProto m = small_model(ModelType::unigram, true);
    m.pieces.erase(m.pieces.begin() + 4 + 0x20);
    expect_load_error(serialize_model_proto(m), "<0x20> is missing");
  }
  {
    ModelProto m = small_model();
    m.pieces[6].type = static_cast<PieceType>(9);
    expect_load_error(serialize_model_proto(m), "unknown type 9");
  }
  {
    ModelProto m = small_model();
    m.pieces[6].piece.clear();
    expect_load_error(serialize_model_proto(m), "empty");
  }
  {
    ModelProto m = small_model();
    m.normalizer_spec->precompiled_charsmap = std::string("\xff\xff\x00\x00" "abc", 7);
    expect_load_error(serialize_model_proto(m), "normalization map is broken");
  }
}

// Every prefix of a real model, and many corrupted copies, either load or fail with an Error;
// those that load still encode without crashing (the sanitizer build checks memory safety).
TEST(TokenizerBadInput, TruncatedAndCorruptedModelsNeverCrash) {
  std::string bytes;
  if (tsumugi::testing::spm::missing_tools().empty()) {
    bytes = tsumugi::read_file(
        tsumugi::testing::spm::ensure_model(tsumugi::testing::spm::config("unigram_nmt_nfkc_byte_fallback")).model());
  } else {
    bytes = serialize_model_proto(small_model(ModelType::unigram, true));
  }
  const std::vector<std::string> probes = {"a b c", "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", "x\xff y  z",
                                           "\xef\xbd\xb1\xef\xbe\x9e A\xcc\x8a"};
  auto try_model = [&](std::string_view b) {
    try {
      const Tokenizer t = Tokenizer::from_bytes(b, "corrupt.model");
      for (const auto& p : probes) {
        std::vector<int32_t> ids;
        t.encode(p, ids);
        t.decode(ids);
      }
      return true;
    } catch (const Error&) {
      return false;
    }
  };
  size_t loaded = 0, failed = 0;
  // Fewer tries in unoptimized / sanitizer builds, where each load is slow.
  const int tries = tsumugi::testing::spm::kCorpusStride == 1 ? 300 : 60;
  const size_t step = std::max<size_t>(1, bytes.size() / size_t(tries + 100));
  for (size_t cut = 0; cut < bytes.size(); cut += step) (try_model(bytes.substr(0, cut)) ? loaded : failed)++;
  for (size_t cut = bytes.size() > 64 ? bytes.size() - 64 : 0; cut < bytes.size(); ++cut)
    (try_model(bytes.substr(0, cut)) ? loaded : failed)++;
  EXPECT_GT(failed, 0u);
  std::mt19937 rng(11);
  for (int i = 0; i < tries; ++i) {
    std::string c = bytes;
    for (int k = 0; k < 1 + int(rng() % 8); ++k) c[rng() % c.size()] = char(rng());
    (try_model(c) ? loaded : failed)++;
  }
  for (int i = 0; i < tries; ++i) {
    std::string junk(rng() % 300, '\0');
    for (auto& ch : junk) ch = char(rng());
    (try_model(junk) ? loaded : failed)++;
  }
  std::cout << "[bad models] loaded " << loaded << ", rejected " << failed << "\n";
}
