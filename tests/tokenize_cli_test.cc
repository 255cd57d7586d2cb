// `tsumugi tokenize` end to end with SentencePiece models trained at test time by spm_train
// (Debian's `sentencepiece` package) on part of the bundled Japanese corpus: identical files for
// any thread count, the tokenizer's ids plus EOD per document, spm_encode agreement, EOD choice,
// bad records and atomic output.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <memory>
#include <set>
#include <sstream>

#include "data/indexed_dataset.h"
#include "test_util.h"
#include "tokenizer/spm_oracle.h"
#include "tokenizer/tokenizer.h"
#include "util/io.h"

using namespace tsumugi;
using tsumugi::testing::read_lines;
using tsumugi::testing::run_command;
using tsumugi::testing::TempDir;
using tsumugi::testing::write_bytes;
namespace fs = std::filesystem;
namespace spm = tsumugi::testing::spm;

namespace {

const std::string kBin = TSUMUGI_BINARY;

struct Shared {
  TempDir dir;
  std::string skip_reason;
  std::string eod_model, plain_model;  // with and without a <EOD> piece
  std::string input;                   // JSONL.zst: corpus documents plus a bad record, an empty text, a blank line
  std::vector<std::string> texts;      // texts of the documents that should be written, in order
  std::string lines_jsonl, lines_txt;  // single-line documents, for spm_encode
};

Shared* g = nullptr;

class TokenizeCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    g = new Shared;
    std::string out;
    if (run_command("command -v spm_train && command -v spm_encode", out) != 0) {
      g->skip_reason = "spm_train/spm_encode not found (apt-get install -y sentencepiece)";
      return;
    }
    auto docs = read_lines(std::string(TSUMUGI_SOURCE_DIR) + "/data/corpus/ja.jsonl.gz");
    docs.resize(std::min<size_t>(docs.size(), 120));
    std::string train, input, lines_jsonl, lines_txt;
    size_t n_lines = 0;
    for (size_t i = 0; i < docs.size(); ++i) {
      auto j = nlohmann::json::parse(docs[i]);
      std::string text = j["text"].get<std::string>();
      std::istringstream ss(text);
      for (std::string line; std::getline(ss, line);) {
        if (line.find_first_not_of(' ') == std::string::npos) continue;
        train += line + "\n";
        if (n_lines < 1500 && line.find('\r') == std::string::npos) {
          lines_txt += line + "\n";
          lines_jsonl += nlohmann::json({{"text", line}}).dump() + "\n";
          ++n_lines;
        }
      }
      input += docs[i] + "\n";
      g->texts.push_back(text);
      if (i == 10) input += "{\"text\": \"unterminated\n";    // bad record at line 12
      if (i == 20) input += nlohmann::json({{"text", ""}}).dump() + "\n";  // empty: skipped
      if (i == 30) input += "\n";                                 // blank line: not a record
    }
    g->input = g->dir.file("input.jsonl.zst");
    OutputFile f(g->input);
    f.write(input);
    f.commit();
    g->lines_txt = g->dir.file("lines.txt");
    g->lines_jsonl = g->dir.file("lines.jsonl");
    write_bytes(g->lines_txt, lines_txt);
    write_bytes(g->lines_jsonl, lines_jsonl);

    // ctest runs each test in its own process: the two models are trained once, into the spm
    // oracle's cache (keyed by the spm version, the options and the training text), not per test.
    const std::string common = " --character_coverage=0.9995 --num_threads=2 --minloglevel=2";
    const std::string eod_opts = " --vocab_size=1000 --user_defined_symbols='<EOD>'", plain_opts = " --vocab_size=800";
    const fs::path models = spm::cache_root() / ("tokenize-cli-" + std::to_string(spm::fnv1a(
                                                     spm::spm_version() + common + eod_opts + plain_opts + "|" + train)));
    try {
      spm::build_once(models, [&](const fs::path& tmp) {
        const std::string in = " --input=" + spm::shell_quote((tmp / "train.txt").string());
        write_bytes((tmp / "train.txt").string(), train);
        spm::run_or_throw("spm_train" + in + common + " --model_prefix=" + (tmp / "eod").string() + eod_opts);
        spm::run_or_throw("spm_train" + in + common + " --model_prefix=" + (tmp / "plain").string() + plain_opts);
        fs::remove(tmp / "train.txt");
      });
    } catch (const Error& e) {
      g->skip_reason = std::string("spm_train failed: ") + e.what();
      return;
    }
    g->eod_model = (models / "eod.model").string();
    g->plain_model = (models / "plain.model").string();
  }
  static void TearDownTestSuite() {
    delete g;
    g = nullptr;
  }
  void SetUp() override {
    if (!g->skip_reason.empty()) GTEST_SKIP() << g->skip_reason;
  }
  static int tokenize(const std::string& args, std::string& out) { return run_command(kBin + " tokenize " + args, out); }
};

}  // namespace

TEST_F(TokenizeCli, OutputIsByteIdenticalForAnyThreadCount) {
  TempDir out_dir;
  std::string out;
  for (const char* j : {"1", "2", "3"}) {
    ASSERT_EQ(tokenize("-m " + g->eod_model + " -o " + out_dir.file(std::string("j") + j) + " -j " + j + " " + g->input,
                       out),
              0)
        << out;
  }
  for (const char* other : {"j2", "j3"}) {
    EXPECT_EQ(read_file(out_dir.file("j1.bin")), read_file(out_dir.file(std::string(other) + ".bin"))) << other;
    EXPECT_EQ(read_file(out_dir.file("j1.idx")), read_file(out_dir.file(std::string(other) + ".idx"))) << other;
  }
  for (const char* part : {"documents written", "empty docs skipped", "bad records", "tokens/s", "MB/s", "bytes in"})
    EXPECT_NE(out.find(part), std::string::npos) << part << "\n" << out;
}

TEST_F(TokenizeCli, DatasetHoldsTheTokenizerIdsPlusEodPerDocument) {
  TempDir out_dir;
  std::string out, prefix = out_dir.file("ds");
  ASSERT_EQ(tokenize("-m " + g->eod_model + " -o " + prefix + " " + g->input, out), 0) << out;

  auto tok = tokenizer::Tokenizer::load(g->eod_model);
  int32_t eod = tok.piece_to_id("<EOD>");
  ASSERT_NE(eod, tok.unk_id());
  data::IndexedDataset ds(prefix);
  EXPECT_EQ(ds.dtype(), data::DType::uint16);
  ASSERT_EQ(ds.size(), g->texts.size());
  ASSERT_EQ(ds.document_count(), g->texts.size());
  std::vector<int32_t> got, want;
  for (size_t i = 0; i < g->texts.size(); ++i) {
    want.clear();
    tok.encode(g->texts[i], want);
    want.push_back(eod);
    ds.get(i, got);
    ASSERT_EQ(got, want) << "document " << i;
  }

  // The bad record is reported with its file and line; the empty document is counted.
  auto errors = read_lines(prefix + ".errors.jsonl");
  ASSERT_EQ(errors.size(), 1u);
  auto e = nlohmann::json::parse(errors[0]);
  EXPECT_EQ(e["file"], g->input);
  EXPECT_EQ(e["line"], 12);
  EXPECT_NE(out.find("see " + prefix + ".errors.jsonl"), std::string::npos) << out;
  auto count_of = [&](const std::string& label) {
    auto p = out.find(label);
    return p == std::string::npos ? std::string("?") : std::to_string(std::stoull(out.substr(p + label.size())));
  };
  EXPECT_EQ(count_of("\n  empty docs skipped"), "1") << out;
  EXPECT_EQ(count_of("\n  bad records"), "1") << out;
  EXPECT_EQ(count_of("\n  documents written"), std::to_string(g->texts.size())) << out;
  EXPECT_EQ(count_of("\n  tokens "), std::to_string(ds.total_tokens())) << out;
}

TEST_F(TokenizeCli, SameIdsAsSpmEncode) {
  TempDir out_dir;
  std::string out, ids_path = out_dir.file("spm.ids"), prefix = out_dir.file("lines");
  ASSERT_EQ(run_command("spm_encode --model=" + g->eod_model + " --output_format=id < " + g->lines_txt + " > " + ids_path,
                        out),
            0)
      << out;
  ASSERT_EQ(tokenize("-m " + g->eod_model + " --no-eod -o " + prefix + " -j 2 " + g->lines_jsonl, out), 0) << out;
  std::vector<std::vector<int32_t>> want;
  for (auto& line : read_lines(ids_path)) {
    std::vector<int32_t> ids;
    std::istringstream ss(line);
    for (int32_t v; ss >> v;) ids.push_back(v);
    if (!ids.empty()) want.push_back(ids);  // empty encodings are skipped, as in Megatron
  }
  auto lines = read_lines(g->lines_txt);
  data::IndexedDataset ds(prefix);
  ASSERT_EQ(ds.size(), want.size());
  std::vector<int32_t> got;
  size_t mismatches = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    ds.get(i, got);
    if (got != want[i] && ++mismatches <= 5) ADD_FAILURE() << "line " << i + 1 << " differs from spm_encode: " << lines[i];
  }
  EXPECT_EQ(mismatches, 0u) << "of " << want.size() << " lines";
}

TEST_F(TokenizeCli, EodTokenChoice) {
  TempDir out_dir;
  std::string out;
  auto last_tokens = [&](const std::string& prefix) {
    data::IndexedDataset ds(prefix);
    std::set<int64_t> last;
    for (size_t i = 0; i < ds.size(); ++i) last.insert(ds.sequence(i)[ds.sequence(i).size() - 1]);
    return last;
  };
  // No <EOD> piece in the model: its eos (</s>, id 2).
  ASSERT_EQ(tokenize("-m " + g->plain_model + " -o " + out_dir.file("plain") + " " + g->input, out), 0) << out;
  EXPECT_EQ(last_tokens(out_dir.file("plain")), (std::set<int64_t>{2}));
  // An explicit piece.
  ASSERT_EQ(tokenize("-m " + g->eod_model + " --eod-token '</s>' -o " + out_dir.file("eos") + " " + g->input, out), 0)
      << out;
  EXPECT_EQ(last_tokens(out_dir.file("eos")), (std::set<int64_t>{2}));
  // None: exactly the tokenizer's ids, so EOD-less totals are smaller by one per document.
  ASSERT_EQ(tokenize("-m " + g->eod_model + " --no-eod -o " + out_dir.file("none") + " " + g->input, out), 0) << out;
  data::IndexedDataset with(out_dir.file("eos")), without(out_dir.file("none"));
  EXPECT_EQ(with.total_tokens(), without.total_tokens() + without.size());
  // A piece the model lacks is an error, and nothing is written.
  EXPECT_NE(tokenize("-m " + g->eod_model + " --eod-token '<nope>' -o " + out_dir.file("bad") + " " + g->input, out), 0);
  EXPECT_NE(out.find("<nope>"), std::string::npos) << out;
  EXPECT_FALSE(data::IndexedDataset::exists(out_dir.file("bad")));
  EXPECT_NE(tokenize("-m " + g->eod_model + " --no-eod --eod-token '</s>' -o " + out_dir.file("x") + " " + g->input, out),
            0);
}

TEST_F(TokenizeCli, FailuresLeaveNothingBehind) {
  TempDir out_dir;
  std::string out;
  EXPECT_NE(tokenize("-m " + g->eod_model + " -o " + out_dir.file("ds") + " /no/such/input.jsonl", out), 0);
  EXPECT_NE(out.find("/no/such/input.jsonl"), std::string::npos) << out;
  EXPECT_NE(tokenize("-m " + out_dir.file("missing.model") + " -o " + out_dir.file("ds") + " " + g->input, out), 0);
  EXPECT_NE(out.find("missing.model"), std::string::npos) << out;
  EXPECT_TRUE(std::filesystem::is_empty(out_dir.path()));
  EXPECT_EQ(run_command(kBin + " tokenize --help", out), 0);
  for (const char* flag : {"--model", "--eod-token", "--no-eod", "--text-field", "--threads", "--progress", "Examples"})
    EXPECT_NE(out.find(flag), std::string::npos) << flag;
}
