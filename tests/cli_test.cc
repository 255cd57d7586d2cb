// The `tsumugi` program as users run it: help, errors and exit codes, and MPI runs.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>

#include "test_util.h"

using tsumugi::testing::read_lines_with_prefix;
using tsumugi::testing::run_command;
using tsumugi::testing::TempDir;
using tsumugi::testing::write_bytes;

namespace {
const std::string kBin = TSUMUGI_BINARY;
const std::vector<std::string> kKana = {"あ", "い", "う", "え", "お", "か", "き", "く", "け", "こ", "さ"};

std::string make_inputs(const TempDir& dir, int files) {
  std::string list;
  for (int f = 0; f < files; ++f) {
    std::string content;
    for (int i = 0; i < 200; ++i) {
      // Texts repeat across files (exact copies) and with a changed ending (near copies).
      int src = (i * 3 + f * 17) % 120;
      std::string text = "これは文書" + std::to_string(src) + "です。" + std::string();
      for (int k = 0; k < 40 + src; ++k) text += kKana[size_t((src + k * k) % kKana.size())];
      for (int k = 0; k < 6; ++k) text += "番号" + std::to_string(src * 31 + k) + "の段落があります。";
      if ((i + f) % 4 == 0) text += "おわり";
      content += nlohmann::json({{"id", "f" + std::to_string(f) + "-" + std::to_string(i)}, {"text", text}}).dump() + "\n";
    }
    std::string path = dir.file("in" + std::to_string(f) + ".jsonl");
    write_bytes(path, content);
    list += " " + path;
  }
  return list;
}

std::vector<std::string> sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}
}  // namespace

TEST(Cli, HelpTeachesEachCommand) {
  std::string out;
  EXPECT_EQ(run_command(kBin + " --help", out), 0);
  EXPECT_NE(out.find("corpus"), std::string::npos);
  EXPECT_EQ(run_command(kBin + " corpus clean --help", out), 0);
  for (const char* flag : {"--preset", "--profile", "--dedup", "--text-field", "--output", "Examples"})
    EXPECT_NE(out.find(flag), std::string::npos) << flag;
  EXPECT_EQ(run_command(kBin + " corpus presets", out), 0);
  for (const char* p : {"llm-jp-v1-ja", "swallow-ja", "en", "code"}) EXPECT_NE(out.find(p), std::string::npos) << p;
}

TEST(Cli, UnreadableInputExitsNonZeroWithMessage) {
  TempDir dir;
  std::string out;
  int rc = run_command(kBin + " corpus clean --dedup none -o " + dir.file("o") + " /no/such/input.jsonl", out);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("/no/such/input.jsonl"), std::string::npos) << out;
}

TEST(Cli, UnknownPresetListsTheKnownOnes) {
  TempDir dir;
  std::string out;
  EXPECT_NE(run_command(kBin + " corpus clean --preset nope -o " + dir.file("o") + " -", out), 0);
  EXPECT_NE(out.find("llm-jp-v1-ja"), std::string::npos) << out;
}

TEST(Cli, MpiTwoRanksGiveTheSingleProcessResult) {
  std::string out;
  if (run_command("command -v mpirun", out) != 0) GTEST_SKIP() << "mpirun not installed";
  TempDir dir;
  std::string inputs = make_inputs(dir, 4);
  write_bytes(dir.file("p.json"), R"({"name":"t","filters":[]})");
  std::string common = " corpus clean --profile " + dir.file("p.json") + " --dedup minhash --no-progress -j 1 ";
  ASSERT_EQ(run_command(kBin + common + "-o " + dir.file("one") + inputs, out), 0) << out;
  // LeakSanitizer flags OpenMPI's own allocations at exit; they are not ours.
  std::string mpi = "ASAN_OPTIONS=detect_leaks=0 mpirun --allow-run-as-root --oversubscribe -np 2 ";
  ASSERT_EQ(run_command(mpi + kBin + common + "-o " + dir.file("two") + inputs, out), 0) << out;
  auto one = sorted(read_lines_with_prefix(dir.file("one"), "kept-"));
  auto two = sorted(read_lines_with_prefix(dir.file("two"), "kept-"));
  ASSERT_GT(one.size(), 50u);
  ASSERT_LT(one.size(), 800u);  // duplicates were removed
  EXPECT_EQ(one, two);
  auto rej1 = sorted(read_lines_with_prefix(dir.file("one"), "rejects"));
  auto rej2 = sorted(read_lines_with_prefix(dir.file("two"), "rejects"));
  EXPECT_EQ(rej1, rej2);
  std::ifstream s2(dir.file("two/stats.json"));
  auto stats = nlohmann::json::parse(s2);
  EXPECT_EQ(stats["ranks"], 2);
  EXPECT_EQ(stats["documents"]["read"], 800);
  EXPECT_EQ(stats["documents"]["kept"].get<size_t>(), one.size());
}
