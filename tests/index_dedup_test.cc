// Exact-substring dedup against a direct implementation of its rule.
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>

#include "index/dedup_exact.h"
#include "index/index_fixture.h"

namespace tsumugi::testing {
namespace {

using Spans = std::vector<std::vector<std::pair<uint64_t, uint64_t>>>;

// The rule, directly: a token is removed when it lies in an N-gram occurrence that is not the
// N-gram's first occurrence in corpus order.
Spans brute_spans(const Docs& docs, size_t n) {
  std::map<std::vector<int32_t>, std::pair<size_t, size_t>> first;
  std::vector<std::vector<bool>> removed(docs.size());
  for (size_t d = 0; d < docs.size(); ++d) {
    removed[d].assign(docs[d].size(), false);
    for (size_t i = 0; i + n <= docs[d].size(); ++i) {
      std::vector<int32_t> g(docs[d].begin() + i, docs[d].begin() + i + n);
      auto [it, fresh] = first.emplace(g, std::make_pair(d, i));
      if (!fresh)
        for (size_t k = i; k < i + n; ++k) removed[d][k] = true;
    }
  }
  Spans out(docs.size());
  for (size_t d = 0; d < docs.size(); ++d)
    for (size_t i = 0; i < removed[d].size(); ++i)
      if (removed[d][i]) {
        if (!out[d].empty() && out[d].back().second == i) ++out[d].back().second;
        else out[d].push_back({i, i + 1});
      }
  return out;
}

TEST(IndexDedup, SpansFollowTheRuleOnOneShardAndMany) {
  TempDir dir;
  auto docs = random_corpus(21, 90, 50, 40);  // small vocabulary: many chance repeats too
  for (size_t n : {4, 12}) {
    auto want = brute_spans(docs, n);
    auto one = build_ids_index(dir, "one" + std::to_string(n), docs, 40);
    auto many = build_ids_index(dir, "many" + std::to_string(n), docs, 40, 1000);
    ASSERT_GT(many.shard_count(), 3u);
    EXPECT_EQ(index::duplicate_spans(one, n), want) << "N=" << n;
    EXPECT_EQ(index::duplicate_spans(many, n), want) << "N=" << n << ", several shards";
    uint64_t removed = 0;
    for (const auto& d : want)
      for (auto [a, b] : d) removed += b - a;
    EXPECT_GT(removed, 0u);
  }
}

TEST(IndexDedup, WritesTextWithRepeatsCutAfterTheFirstCopy) {
  TempDir dir;
  const std::string boiler = "Copyright (C) 2024 Example Project. All rights reserved. 無断転載を禁じます。";
  std::string jsonl;
  jsonl += nlohmann::json({{"id", "a"}, {"text", "First page!\n" + boiler}}).dump() + "\n";
  jsonl += nlohmann::json({{"id", "b"}, {"text", "Second page about something else; " + boiler + " The end."}}).dump() + "\n";
  jsonl += nlohmann::json({{"id", "c"}, {"text", boiler}}).dump() + "\n";
  jsonl += nlohmann::json({{"id", "d"}, {"text", "短い文書。短い文書。"}}).dump() + "\n";
  write_bytes(dir.file("in.jsonl"), jsonl);
  index::BuildOptions o;
  o.text_inputs = {dir.file("in.jsonl")};
  o.bytes = true;
  o.output = dir.file("idx");
  o.progress = 0;
  index::build_index(o);

  index::DedupExactOptions d;
  d.index_dir = o.output;
  d.output = dir.file("out.jsonl");
  d.min_tokens = 30;  // bytes: the boilerplate is far longer, "短い文書。" (15 bytes) is shorter
  auto st = index::dedup_exact(d);
  auto lines = read_lines(d.output);
  ASSERT_EQ(lines.size(), 3u);  // c lost everything
  EXPECT_EQ(st.emptied, 1u);
  EXPECT_EQ(st.changed, 2u);
  EXPECT_EQ(nlohmann::json::parse(lines[0]), nlohmann::json({{"id", "a"}, {"text", "First page!\n" + boiler}}));
  EXPECT_EQ(nlohmann::json::parse(lines[1]),
            nlohmann::json({{"id", "b"}, {"text", "Second page about something else;  The end."}}));
  EXPECT_EQ(nlohmann::json::parse(lines[2]), nlohmann::json({{"id", "d"}, {"text", "短い文書。短い文書。"}}));
  EXPECT_EQ(st.removed_tokens, 2 * boiler.size());

  // A repeat that starts mid-character is cut at whole characters: the output stays UTF-8.
  d.min_tokens = 10;
  d.keep_empty = true;
  d.output = dir.file("out2.jsonl");
  st = index::dedup_exact(d);
  lines = read_lines(d.output);
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(nlohmann::json::parse(lines[2])["text"], "");
  EXPECT_EQ(nlohmann::json::parse(lines[3])["text"], "短い文書。");
}

}  // namespace
}  // namespace tsumugi::testing
