// `tsumugi tokenizer` as users run it: byte-for-byte the output of spm_encode / spm_decode,
// the same with several threads, and clear errors for bad models and bad ids.
#include <gtest/gtest.h>

#include "test_util.h"
#include "tokenizer/spm_oracle.h"
#include "util/io.h"

namespace spm = tsumugi::testing::spm;
using tsumugi::read_file;
using tsumugi::testing::run_command;
using tsumugi::testing::TempDir;
using tsumugi::testing::write_bytes;

namespace {

const std::string kBin = TSUMUGI_BINARY;

// Runs `cmd`, expecting success, and returns the file it wrote.
std::string output_of(const std::string& cmd, const std::string& out_file) {
  std::string log;
  EXPECT_EQ(run_command(cmd, log), 0) << cmd << "\n" << log;
  return read_file(out_file);
}

class TokenizerCli : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string missing = spm::missing_tools();
    if (!missing.empty()) GTEST_FAIL() << missing;
  }
};

}  // namespace

TEST(TokenizerCliHelp, ListsCommandsAndOptions) {
  std::string out;
  EXPECT_EQ(run_command(kBin + " tokenizer --help", out), 0);
  for (const char* cmd : {"encode", "decode", "info", "vocab"}) EXPECT_NE(out.find(cmd), std::string::npos) << cmd;
  EXPECT_EQ(run_command(kBin + " tokenizer encode --help", out), 0);
  for (const char* flag : {"--model", "--output-format", "--threads", "Examples"})
    EXPECT_NE(out.find(flag), std::string::npos) << flag;
}

TEST_F(TokenizerCli, EncodeAndDecodeAreByteForByteSpm) {
  TempDir dir;
  for (const char* name : {"unigram_nmt_nfkc_byte_fallback", "bpe_nmt_nfkc"}) {
    const spm::Model m = spm::ensure_model(spm::config(name));
    const std::string model = spm::shell_quote(m.model());
    // The whole Japanese corpus in optimized builds; the hard strings everywhere.
    for (const std::string input : {"ja", "hard"}) {
      if (input == "ja" && spm::kCorpusStride != 1) continue;
      const std::string src = spm::shell_quote(spm::inputs().file(input).string());
      const std::string out = dir.file("out");
      EXPECT_TRUE(output_of(kBin + " tokenizer encode --model " + model + " < " + src + " > " + out, out) ==
                  tsumugi::testing::spm::join_lines(tsumugi::testing::read_lines(m.file(input + ".id.zst"))))
          << name << " " << input << " ids";
      EXPECT_TRUE(output_of(kBin + " tokenizer encode -j 3 --model " + model + " --output-format piece " + src +
                                " -o " + out,
                            out) == spm::join_lines(tsumugi::testing::read_lines(m.file(input + ".piece.zst"))))
          << name << " " << input << " pieces, 3 threads, file in and out";
    }
    // Decoding spm's ids and pieces of the hard strings.
    const std::string ids = dir.file("hard.id"), pieces = dir.file("hard.piece"), out = dir.file("dec");
    write_bytes(ids, spm::join_lines(tsumugi::testing::read_lines(m.file("hard.id.zst"))));
    write_bytes(pieces, spm::join_lines(tsumugi::testing::read_lines(m.file("hard.piece.zst"))));
    EXPECT_TRUE(output_of(kBin + " tokenizer decode --model " + model + " < " + ids + " > " + out, out) ==
                spm::join_lines(tsumugi::testing::read_lines(m.file("hard.id.dec.zst"))))
        << name << " decode ids";
    EXPECT_TRUE(output_of(kBin + " tokenizer decode --input-format piece --model " + model + " < " + pieces + " > " +
                              out,
                          out) == spm::join_lines(tsumugi::testing::read_lines(m.file("hard.piece.dec.zst"))))
        << name << " decode pieces";
    EXPECT_EQ(output_of(kBin + " tokenizer vocab --model " + model + " -o " + out, out), read_file(m.file("model.vocab")));
  }
}

TEST_F(TokenizerCli, LastLineWithoutNewlineAndEmptyLines) {
  TempDir dir;
  const spm::Model m = spm::ensure_model(spm::config("unigram_nmt_nfkc"));
  const std::string model = spm::shell_quote(m.model());
  write_bytes(dir.file("in"), "\n  \nhello world\n\n\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e");
  std::string log;
  ASSERT_EQ(run_command("spm_encode --output_format=id --model=" + model + " < " + dir.file("in") + " > " + dir.file("spm"), log), 0);
  EXPECT_EQ(output_of(kBin + " tokenizer encode --model " + model + " < " + dir.file("in") + " > " + dir.file("ours"),
                      dir.file("ours")),
            read_file(dir.file("spm")));
}

TEST_F(TokenizerCli, BadModelsAndIdsGiveClearErrors) {
  TempDir dir;
  std::string out;
  EXPECT_NE(run_command(kBin + " tokenizer encode --model " + dir.file("none.model") + " < /dev/null", out), 0);
  EXPECT_NE(out.find("none.model"), std::string::npos) << out;

  write_bytes(dir.file("text.model"), "this is not a model\n");
  EXPECT_NE(run_command(kBin + " tokenizer encode --model " + dir.file("text.model") + " < /dev/null", out), 0);
  EXPECT_NE(out.find("text.model"), std::string::npos) << out;
  EXPECT_NE(out.find("not a valid SentencePiece model"), std::string::npos) << out;

  const spm::Model m = spm::ensure_model(spm::config("unigram_nmt_nfkc"));
  const std::string bytes = read_file(m.model());
  write_bytes(dir.file("cut.model"), bytes.substr(0, bytes.size() / 2));
  EXPECT_NE(run_command(kBin + " tokenizer encode --model " + dir.file("cut.model") + " < /dev/null", out), 0);
  EXPECT_NE(out.find("cut.model"), std::string::npos) << out;

  write_bytes(dir.file("ids"), "5 6\n7 99999 8\n");
  EXPECT_EQ(run_command(kBin + " tokenizer decode --model " + spm::shell_quote(m.model()) + " < " + dir.file("ids"), out),
            1);
  EXPECT_NE(out.find(":2:"), std::string::npos) << out;  // the line
  EXPECT_NE(out.find("99999"), std::string::npos) << out;
}
