// End-to-end tests of the clean job through the library API.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <random>
#include <set>

#include "corpus/clean.h"
#include "test_util.h"
#include "util/comm.h"
#include "util/error.h"
#include "text/utf8.h"
#include "util/io.h"
#include <fmt/format.h>
#include <map>

using namespace tsumugi;
using namespace tsumugi::corpus;
using tsumugi::testing::read_lines;
using tsumugi::testing::read_lines_with_prefix;
using tsumugi::testing::TempDir;
using tsumugi::testing::write_bytes;

namespace {
Profile empty_profile() { return parse_profile(R"({"name":"none","filters":[]})", "test", false); }

nlohmann::json run(CleanOptions opt) {
  opt.progress = 0;
  auto comm = make_single_communicator();
  return run_clean(opt, *comm);
}

void compress_to(const std::string& path, const std::string& content) {
  OutputFile f(path);
  f.write(content);
  f.commit();
}

std::string doc(const std::string& id, const std::string& text) {
  return nlohmann::json({{"id", id}, {"text", text}}).dump() + "\n";
}
}  // namespace

TEST(CorpusClean, BadInputNeverCrashesAndNothingIsLost) {
  TempDir dir;
  std::string good = doc("g1", "普通の文書です。") + doc("g2", "もう一つの文書です。");
  write_bytes(dir.file("a.jsonl"), good + "{broken json\n" + R"({"no_text": 1})" + "\n" + R"({"text": 12})" + "\n" +
                                       "{\"text\": \"bad \xff utf8\"}\n" + "\n");
  write_bytes(dir.file("empty.jsonl"), "");
  write_bytes(dir.file("nofinal.jsonl"), doc("n1", "改行なしの最後の行").substr(0, doc("n1", "改行なしの最後の行").size() - 1));
  write_bytes(dir.file("crlf.jsonl"), "{\"id\":\"c1\",\"text\":\"CRLFの文書\"}\r\n{\"id\":\"c2\",\"text\":\"二つ目\"}\r\n");
  std::string huge_text(20u << 20, 'x');
  write_bytes(dir.file("huge.jsonl"), doc("h1", huge_text));
  std::string many;
  for (int i = 0; i < 5000; ++i) many += doc("t" + std::to_string(i), "切り詰められたファイルの文書 " + std::to_string(i));
  for (std::string ext : {".jsonl.gz", ".jsonl.zst"}) {
    std::string p = dir.file("trunc" + ext);
    compress_to(p, many);
    std::ifstream in(p, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    write_bytes(p, bytes.substr(0, bytes.size() / 2));
  }

  CleanOptions opt;
  opt.inputs = {dir.file("a.jsonl"), dir.file("empty.jsonl"), dir.file("nofinal.jsonl"), dir.file("crlf.jsonl"),
                dir.file("huge.jsonl"), dir.file("trunc.jsonl.gz"), dir.file("trunc.jsonl.zst")};
  opt.outdir = dir.file("out");
  opt.profile = empty_profile();
  opt.threads = 2;
  auto stats = run(opt);

  auto kept = read_lines_with_prefix(opt.outdir, "kept-");
  auto errors = read_lines(dir.file("out/errors.jsonl"));
  std::set<std::string> kept_ids;
  for (auto& l : kept) kept_ids.insert(nlohmann::json::parse(l)["id"].get<std::string>());
  for (std::string id : {"g1", "g2", "n1", "c1", "c2", "h1"}) EXPECT_TRUE(kept_ids.count(id)) << id;
  EXPECT_EQ(stats["documents"]["errors"], 4);
  EXPECT_EQ(stats["files"]["empty"], 1);
  EXPECT_EQ(stats["files"]["missing_final_newline"], 1);
  EXPECT_EQ(stats["files"]["truncated_or_corrupt"], 2);
  EXPECT_EQ(stats["blank_lines"], 1);
  // Every error names file and line and keeps the raw record.
  std::map<uint64_t, std::string> a_errors;
  int truncations = 0;
  for (auto& l : errors) {
    auto j = nlohmann::json::parse(l);
    if (j["file"] == dir.file("a.jsonl")) {
      a_errors[j["line"].get<uint64_t>()] = j["error"].get<std::string>();
      EXPECT_TRUE(j.contains("raw") || j.contains("raw_base64"));
    } else {
      EXPECT_NE(j["error"].get<std::string>().find("truncated"), std::string::npos);
      ++truncations;
    }
  }
  EXPECT_EQ(truncations, 2);
  ASSERT_EQ(a_errors.size(), 4u);
  EXPECT_NE(a_errors[3].find("malformed JSON"), std::string::npos);
  EXPECT_EQ(a_errors[4], "missing field 'text'");
  EXPECT_EQ(a_errors[5], "field 'text' is not a string");
  EXPECT_EQ(a_errors[6], "invalid UTF-8");
  // Documents before the truncation point were kept.
  size_t from_trunc = std::count_if(kept_ids.begin(), kept_ids.end(), [](auto& s) { return s[0] == 't'; });
  EXPECT_GT(from_trunc, 100u);
  // The accounting adds up: read = kept + errors (no filters here).
  EXPECT_EQ(stats["documents"]["read"].get<uint64_t>(),
            stats["documents"]["kept"].get<uint64_t>() + stats["documents"]["errors"].get<uint64_t>());
  EXPECT_EQ(stats["documents"]["kept"].get<uint64_t>(), kept.size());
  EXPECT_TRUE(std::filesystem::exists(dir.file("out/stats.json")));
}

TEST(CorpusClean, UnreadableInputIsFatalAndWritesNothing) {
  TempDir dir;
  CleanOptions opt;
  opt.inputs = {dir.file("missing.jsonl")};
  opt.outdir = dir.file("out");
  opt.profile = empty_profile();
  EXPECT_THROW(run(opt), Error);
  EXPECT_FALSE(std::filesystem::exists(dir.file("out/stats.json")));
}

namespace {
// A corpus with exact copies and near copies spread over three files.
std::vector<std::string> make_dup_corpus(const TempDir& dir) {
  std::mt19937_64 rng(11);
  std::uniform_int_distribution<uint32_t> cp(0x4E00, 0x9FFF);
  auto rand_text = [&](size_t n) {
    std::string s;
    for (size_t i = 0; i < n; ++i) tsumugi::text::append_utf8(s, cp(rng));
    return s;
  };
  std::vector<std::string> base;
  for (int i = 0; i < 300; ++i) base.push_back(rand_text(300));
  std::vector<std::string> files;
  for (int f = 0; f < 3; ++f) {
    std::string content;
    for (int i = 0; i < 300; ++i) {
      int src = (i * 7 + f * 13) % 300;
      std::string text = base[size_t(src)];
      if ((i + f) % 3 == 1) text += "。追記";  // a near copy: few shingles differ
      content += doc(fmt::format("f{}-{}", f, i), text);
    }
    files.push_back(dir.file(fmt::format("part{}.jsonl", f)));
    write_bytes(files.back(), content);
  }
  return files;
}
}  // namespace

TEST(CorpusClean, MinHashDedupKeepsEarliestCopyAndIsThreadIndependent) {
  TempDir dir;
  auto files = make_dup_corpus(dir);
  std::vector<std::vector<std::string>> outputs;
  for (unsigned threads : {1u, 2u}) {
    CleanOptions opt;
    opt.inputs = files;
    opt.outdir = dir.file("out" + std::to_string(threads));
    opt.profile = empty_profile();
    opt.dedup.mode = DedupMode::minhash;
    opt.threads = threads;
    opt.batch_bytes = 4096;  // many batches, so ordering across threads is exercised
    auto stats = run(opt);
    outputs.push_back(read_lines_with_prefix(opt.outdir, "kept-"));
    EXPECT_EQ(stats["dedup"]["docs_in"], 900);
    // 300 distinct texts, each appearing plain and with the suffix: ≤ 300 plain survive,
    // and the near copies are caught.
    EXPECT_LE(outputs.back().size(), 310u);
    EXPECT_GE(outputs.back().size(), 300u);
    auto rejects = read_lines(opt.outdir + "/rejects.jsonl.zst");
    EXPECT_EQ(rejects.size() + outputs.back().size(), 900u);
    for (auto& r : rejects) {
      auto j = nlohmann::json::parse(r);
      EXPECT_EQ(j["reject"]["filter"], "dedup_minhash");
      std::string me = j["id"], kept = j["reject"]["duplicate_of"];
      // The survivor comes earlier in input order (file, then line).
      int mf, mi, kf, ki;
      std::sscanf(me.c_str(), "f%d-%d", &mf, &mi);
      std::sscanf(kept.c_str(), "f%d-%d", &kf, &ki);
      EXPECT_TRUE(kf < mf || (kf == mf && ki < mi)) << me << " dup of " << kept;
    }
  }
  EXPECT_EQ(outputs[0], outputs[1]);
}

TEST(CorpusClean, ShardsAreSizeCappedAndStaleShardsRemoved) {
  TempDir dir;
  std::string content;
  for (int i = 0; i < 2000; ++i) content += doc("d" + std::to_string(i), "文書番号 " + std::to_string(i));
  write_bytes(dir.file("in.jsonl"), content);
  CleanOptions opt;
  opt.inputs = {dir.file("in.jsonl")};
  opt.outdir = dir.file("out");
  opt.profile = empty_profile();
  opt.shard_bytes = 10000;
  opt.output_ext = ".jsonl.gz";
  opt.batch_bytes = 1000;
  run(opt);
  auto kept = read_lines_with_prefix(opt.outdir, "kept-");
  EXPECT_EQ(kept.size(), 2000u);
  size_t shards = 0;
  for (auto& e : std::filesystem::directory_iterator(opt.outdir))
    if (e.path().filename().string().rfind("kept-", 0) == 0) ++shards;
  EXPECT_GT(shards, 5u);
  // A second run with bigger shards leaves no stale ones behind.
  opt.shard_bytes = 1u << 30;
  run(opt);
  EXPECT_EQ(read_lines_with_prefix(opt.outdir, "kept-"), kept);
  EXPECT_TRUE(std::filesystem::exists(opt.outdir + "/kept-00000.jsonl.gz"));
  EXPECT_FALSE(std::filesystem::exists(opt.outdir + "/kept-00001.jsonl.gz"));
}
