// `tsumugi tokenizer export-hf` against Hugging Face `tokenizers`: models trained by spm_train are
// exported, loaded with tokenizers.Tokenizer.from_file (Python, tests/tokenizer/hf_check.py) and
// must encode every line of the bundled corpora and the generated hard strings to the ids
// spm_encode prints. The checker classifies each differing line; only the differences that
// tokenizers cannot express are allowed (see hf_check.py and src/tokenizer/hf_export.h):
//   - default mode: text equal to a special token (<s>, </s>, <unk>, control symbols) becomes that
//     token in tokenizers; compared again with encode_special_tokens = True, where it must agree;
//   - unigram: exact score ties (SentencePiece keeps partial scores as float, tokenizers as f64);
//   - nmt_nfkc / nfkc: tokenizers' Precompiled normalizer differs from SentencePiece's on
//     sequences it looks up only per grapheme shorter than 6 bytes (か + U+3099, ｶﾞ), and on
//     invalid UTF-8 (which tokenizers cannot take; SentencePiece's U+FFFD is not normalized).
// Skipped when the Python package `tokenizers` is missing (pip install 'tokenizers>=0.20').
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <iostream>

#include "test_util.h"
#include "tokenizer/hf_export.h"
#include "tokenizer/model_proto.h"
#include "tokenizer/spm_oracle.h"
#include "util/io.h"

namespace spm = tsumugi::testing::spm;
using nlohmann::json;
using tsumugi::read_file;
using tsumugi::testing::run_command;
using tsumugi::testing::TempDir;

namespace {

// Empty when python3 with `tokenizers` is available, else why not.
std::string missing_tokenizers() {
  std::string out;
  if (run_command("python3 -c 'import tokenizers' 2>&1", out) != 0)
    return "the Python package `tokenizers` is not installed (pip install 'tokenizers>=0.20'): " + out;
  return {};
}

const spm::Config& user_control_identity_config() {
  static const spm::Config c{
      "hf_unigram_identity_bf_user_control",
      {"--model_type=unigram", "--normalization_rule_name=identity", "--byte_fallback=true",
       "--user_defined_symbols=<mask>,<br>,\t,https://,\xe3\x80\x82,\xe2\x96\x81\xe2\x96\x81\xe2\x96\x81\xe2\x96\x81",
       "--control_symbols=<cls>,<eod>"}};
  return c;
}

struct Result {
  json per_set;  // name -> report
};

// Exports `model` through the CLI and runs the checker on every input set.
json check_model(const spm::Model& m, const TempDir& tmp, const std::string& name) {
  const std::string out_dir = tmp.file(name);
  std::string out;
  const std::string cmd = std::string(TSUMUGI_BINARY) + " tokenizer export-hf --model " + spm::shell_quote(m.model()) +
                          " -o " + spm::shell_quote(out_dir) + " 2>&1";
  EXPECT_EQ(run_command(cmd, out), 0) << cmd << "\n" << out;
  json all = json::object();
  const auto& in = spm::inputs();
  for (const auto& set : in.names) {
    const std::string report = tmp.file(name + "-" + set + ".json");
    const std::string check = "python3 " + spm::shell_quote(spm::source_dir() + "/tests/tokenizer/hf_check.py") +
                              " --tokenizer " + spm::shell_quote(out_dir + "/tokenizer.json") + " --model " +
                              spm::shell_quote(m.model()) + " --input " + spm::shell_quote(in.file(set).string()) +
                              " --expected " + spm::shell_quote(m.file(set + ".id.zst")) + " --report " +
                              spm::shell_quote(report) + " 2>&1";
    EXPECT_EQ(run_command(check, out), 0) << check << "\n" << out;
    all[set] = json::parse(read_file(report));
  }
  return all;
}

// Prints the agreement table and checks the causes of every difference.
void expect_agreement(const std::string& name, const json& all, bool charsmap) {
  for (const auto& [set, r] : all.items()) {
    const json& d = r["default"];
    const json& l = r["literal_special"];
    std::cout << "[hf-export] " << name << " " << set << ": " << r["compared"] << " lines ("
              << r["lines_with_invalid_utf8"] << " invalid UTF-8); default agree " << d["agree"] << " "
              << d["by_cause"].dump() << "; literal-special agree " << l["agree"] << " " << l["by_cause"].dump()
              << "\n";
    // Whatever differs only in default mode is special-token text.
    EXPECT_EQ(d["by_cause"]["unexplained"], 0) << name << " " << set << " default:\n" << d["examples"].dump(1);
    EXPECT_EQ(l["by_cause"]["unexplained"], 0) << name << " " << set << " literal:\n" << l["examples"].dump(1);
    EXPECT_EQ(l["by_cause"]["special_token_text"], 0);
    if (!charsmap) {
      EXPECT_EQ(l["by_cause"]["normalizer"], 0) << name << " " << set;
      EXPECT_EQ(l["by_cause"]["invalid_utf8"], 0) << name << " " << set;
    }
    if (set != "hard") {
      // Real text: no special-token text, valid UTF-8; at most a handful of score ties and
      // charsmap differences.
      EXPECT_EQ(d["mismatches"], l["mismatches"]) << name << " " << set;
      EXPECT_LE(l["mismatches"].get<double>(), 0.01 * r["compared"].get<double>()) << name << " " << set;
    }
  }
}

class TokenizerHfExport : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = spm::missing_tools(); !why.empty()) GTEST_SKIP() << why;
    if (auto why = missing_tokenizers(); !why.empty()) GTEST_SKIP() << why;
  }
  TempDir tmp_;
};

TEST_F(TokenizerHfExport, UnigramIdentityByteFallbackUserControlSymbols) {
  const auto m = spm::ensure_model(user_control_identity_config());
  expect_agreement("unigram_identity_bf_user_control", check_model(m, tmp_, "uic"), false);
}

TEST_F(TokenizerHfExport, UnigramNmtNfkc) {
  const auto m = spm::ensure_model(spm::config("unigram_nmt_nfkc"));
  expect_agreement("unigram_nmt_nfkc", check_model(m, tmp_, "unfkc"), true);
}

TEST_F(TokenizerHfExport, BpeIdentity) {
  const auto m = spm::ensure_model(spm::config("bpe_identity"));
  expect_agreement("bpe_identity", check_model(m, tmp_, "bid"), false);
}

TEST_F(TokenizerHfExport, BpeByteFallbackUserSymbols) {
  const auto m = spm::ensure_model(spm::config("bpe_byte_fallback_user_symbols"));
  expect_agreement("bpe_byte_fallback_user_symbols", check_model(m, tmp_, "bbfu"), true);
}

}  // namespace

// Structure of the exported files, without Python.
TEST(TokenizerHfExportFiles, UnigramSchemaAndSpecialTokens) {
  if (auto why = spm::missing_tools(); !why.empty()) GTEST_SKIP() << why;
  const auto m = spm::ensure_model(user_control_identity_config());
  const auto proto = tsumugi::tokenizer::load_model_proto(m.model());
  TempDir tmp;
  tsumugi::tokenizer::HfExportOptions o;
  o.add_bos = true;
  o.model_max_length = 2048;
  tsumugi::tokenizer::export_hf(proto, tmp.file("out"), o);
  const json tok = json::parse(read_file(tmp.file("out/tokenizer.json")));
  const json cfg = json::parse(read_file(tmp.file("out/tokenizer_config.json")));
  const json stm = json::parse(read_file(tmp.file("out/special_tokens_map.json")));
  EXPECT_EQ(tok["model"]["type"], "Unigram");
  EXPECT_EQ(tok["model"]["byte_fallback"], true);
  EXPECT_EQ(tok["model"]["unk_id"], 0);
  ASSERT_EQ(tok["model"]["vocab"].size(), proto.pieces.size());
  for (size_t i = 0; i < proto.pieces.size(); ++i) {
    EXPECT_EQ(tok["model"]["vocab"][i][0], proto.pieces[i].piece);
    if (proto.pieces[i].type_or_default() == tsumugi::tokenizer::PieceType::normal)
      EXPECT_EQ(tok["model"]["vocab"][i][1].get<double>(), double(proto.pieces[i].score_or_default()));
  }
  // <unk>, <s>, </s>, <cls>, <eod> are special added tokens; user-defined pieces are not added.
  std::vector<std::string> added;
  for (const auto& t : tok["added_tokens"]) {
    added.push_back(t["content"]);
    EXPECT_TRUE(t["special"].get<bool>());
    EXPECT_FALSE(t["normalized"].get<bool>());
  }
  EXPECT_EQ(added, (std::vector<std::string>{"<unk>", "<s>", "</s>", "<cls>", "<eod>"}));
  EXPECT_EQ(tok["normalizer"]["type"], "Sequence");
  EXPECT_EQ(tok["normalizer"]["normalizers"].back()["type"], "Prepend");
  EXPECT_EQ(tok["decoder"]["decoders"][1]["type"], "ByteFallback");
  EXPECT_EQ(tok["post_processor"]["type"], "TemplateProcessing");
  EXPECT_EQ(tok["post_processor"]["special_tokens"]["<s>"]["ids"][0], 1);
  EXPECT_EQ(cfg["tokenizer_class"], "PreTrainedTokenizerFast");
  EXPECT_EQ(cfg["bos_token"], "<s>");
  EXPECT_EQ(cfg["eos_token"], "</s>");
  EXPECT_EQ(cfg["unk_token"], "<unk>");
  EXPECT_TRUE(cfg["pad_token"].is_null());
  EXPECT_EQ(cfg["model_max_length"], 2048);
  EXPECT_EQ(cfg["added_tokens_decoder"]["3"]["content"], "<cls>");
  EXPECT_EQ(stm["bos_token"]["content"], "<s>");
}

TEST(TokenizerHfExportFiles, RefusesWordModelsAndWhitespaceSuffix) {
  if (auto why = spm::missing_tools(); !why.empty()) GTEST_SKIP() << why;
  TempDir tmp;
  std::string out;
  for (const char* name : {"word_nmt_nfkc", "unigram_whitespace_suffix"}) {
    const auto m = spm::ensure_model(spm::config(name));
    const std::string cmd = std::string(TSUMUGI_BINARY) + " tokenizer export-hf --model " +
                            spm::shell_quote(m.model()) + " -o " + spm::shell_quote(tmp.file(name)) + " 2>&1";
    EXPECT_NE(run_command(cmd, out), 0) << name;
    EXPECT_NE(out.find("cannot export"), std::string::npos) << out;
    EXPECT_FALSE(std::filesystem::exists(tmp.file(name) + "/tokenizer.json")) << name;
  }
}
