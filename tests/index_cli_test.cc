// The index commands end to end through the binary.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "test_util.h"

namespace tsumugi::testing {
namespace {

const std::string kBin = TSUMUGI_BINARY;

TEST(IndexCli, IndexSearchTraceAndDedupExact) {
  TempDir dir;
  std::string jsonl;
  const std::string shared = "呼び出し元のプロセスを終了させる。終了ステータスは親プロセスに返される。";
  for (int i = 0; i < 6; ++i)
    jsonl += nlohmann::json({{"id", "doc" + std::to_string(i)},
                             {"source", "test"},
                             {"text", "文書" + std::to_string(i) + "。" + (i % 2 ? shared : "exit status " + std::to_string(i))}})
                 .dump() +
             "\n";
  write_bytes(dir.file("in.jsonl"), jsonl);
  std::string out, idx = dir.file("idx");
  ASSERT_EQ(run_command(kBin + " index --text " + dir.file("in.jsonl") + " --bytes -o " + idx + " 2>&1", out), 0) << out;
  EXPECT_NE(out.find("6 documents"), std::string::npos) << out;

  // count prints just the number.
  ASSERT_EQ(run_command(kBin + " search count --index " + idx + " 'プロセス' 2>/dev/null", out), 0) << out;
  EXPECT_EQ(out, "6\n");
  ASSERT_EQ(run_command(kBin + " search count --index " + idx + " 'exit AND 文書 OR status' 2>/dev/null", out), 0);
  EXPECT_EQ(out, "3\n");
  ASSERT_EQ(run_command(kBin + " search count --json --index " + idx + " '終了' 2>/dev/null", out), 0);
  auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["count"], 6);

  ASSERT_EQ(run_command(kBin + " search docs --json --limit 2 --offset 1 --index " + idx + " 'プロセス' 2>/dev/null", out), 0);
  j = nlohmann::json::parse(out);
  EXPECT_EQ(j["documents"], 3);
  ASSERT_EQ(j["hits"].size(), 2u);
  EXPECT_EQ(j["hits"][0]["metadata"]["id"], "doc3");
  EXPECT_EQ(j["hits"][0]["match"], "プロセス");
  ASSERT_EQ(run_command(kBin + " search docs --limit 1 --index " + idx + " 'プロセス' 2>/dev/null", out), 0);
  EXPECT_NE(out.find("[[プロセス]]"), std::string::npos) << out;
  EXPECT_NE(out.find("doc1"), std::string::npos) << out;

  ASSERT_EQ(run_command(kBin + " search next --json --index " + idx + " 'exit status' 2>/dev/null", out), 0);
  j = nlohmann::json::parse(out);
  EXPECT_EQ(j["count"], 3);
  ASSERT_EQ(j["next"].size(), 1u);
  EXPECT_EQ(j["next"][0]["text"], " ");
  ASSERT_EQ(run_command(kBin + " search prob --json --index " + idx + " 'exit status' 2>/dev/null", out), 0);
  j = nlohmann::json::parse(out);
  EXPECT_EQ(j["ngram"]["full_count"], 3);
  EXPECT_DOUBLE_EQ(j["ngram"]["prob"].get<double>(), 1.0);

  ASSERT_EQ(run_command(kBin + " trace --json --min-tokens 20 --index " + idx + " --text 'モデルの出力: " + shared + " 以上' 2>/dev/null",
                        out),
            0);
  j = nlohmann::json::parse(out);
  ASSERT_GE(j["spans"].size(), 1u);
  EXPECT_NE(j["spans"][0]["text"].get<std::string>().find(shared), std::string::npos);
  EXPECT_EQ(j["spans"][0]["count"], 3);
  write_bytes(dir.file("t.txt"), shared);
  ASSERT_EQ(run_command(kBin + " trace --index " + idx + " --file " + dir.file("t.txt") + " 2>/dev/null", out), 0);
  EXPECT_NE(out.find("1 span(s)"), std::string::npos) << out;

  ASSERT_EQ(run_command(kBin + " corpus dedup-exact --index " + idx + " --min-tokens 30 -o " + dir.file("dedup.jsonl") + " 2>&1", out), 0)
      << out;
  auto lines = read_lines(dir.file("dedup.jsonl"));
  ASSERT_EQ(lines.size(), 6u);
  EXPECT_EQ(nlohmann::json::parse(lines[1])["text"], "文書1。" + shared);
  EXPECT_EQ(nlohmann::json::parse(lines[3])["text"], "文書3");  // "。" + shared repeats too
  EXPECT_EQ(nlohmann::json::parse(lines[3])["source"], "test");

  // Errors: named, non-zero exit.
  EXPECT_NE(run_command(kBin + " search count --index " + dir.file("nope") + " x 2>&1", out), 0);
  EXPECT_NE(out.find("no manifest.json"), std::string::npos) << out;
  EXPECT_NE(run_command(kBin + " search count --index " + idx + " '' 2>&1", out), 0);
  EXPECT_NE(out.find("empty query"), std::string::npos) << out;
  EXPECT_NE(run_command(kBin + " search count --ids --index " + idx + " '300' 2>&1", out), 0);
  EXPECT_NE(out.find("outside the vocabulary"), std::string::npos) << out;
  EXPECT_NE(run_command(kBin + " index --text " + dir.file("in.jsonl") + " --bytes -o " + idx + " 2>&1", out), 0);
  EXPECT_NE(out.find("--force"), std::string::npos) << out;
  EXPECT_NE(run_command(kBin + " trace --index " + idx + " 2>&1", out), 0);
  EXPECT_NE(out.find("--text TEXT or --file F"), std::string::npos) << out;
}

TEST(IndexCli, HelpTeaches) {
  for (const char* cmd : {"index", "search count", "search docs", "search next", "search prob", "trace",
                          "corpus dedup-exact"}) {
    std::string out;
    ASSERT_EQ(run_command(kBin + " " + cmd + " --help", out), 0) << cmd;
    EXPECT_NE(out.find("Example"), std::string::npos) << cmd << "\n" << out;
  }
}

}  // namespace
}  // namespace tsumugi::testing
