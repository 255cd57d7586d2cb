// Bad queries, bad inputs and damaged indexes: clear errors naming what is wrong, never a
// crash or a wrong answer.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "index/http_api.h"
#include "index/index_fixture.h"
#include "util/error.h"

namespace tsumugi::testing {
namespace {

namespace fs = std::filesystem;
using index::Index;

// Runs f and returns the Error's message ("" when nothing was thrown).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

Docs small_docs() { return random_corpus(3, 40, 50, 300); }

void flip_byte(const std::string& path, uint64_t offset) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(std::streamoff(offset));
  char c;
  f.get(c);
  f.seekp(std::streamoff(offset));
  f.put(char(c ^ 0x5A));
}

TEST(IndexBadInput, QueriesThatCannotMatch) {
  TempDir dir;
  auto docs = small_docs();
  auto idx = build_ids_index(dir, "i", docs, 300);
  EXPECT_NE(error_of([&] { idx.count({}); }).find("empty query"), std::string::npos);
  EXPECT_NE(error_of([&] { idx.count(std::vector<int32_t>{5, 300}); }).find("outside the vocabulary [0, 300)"),
            std::string::npos);
  EXPECT_NE(error_of([&] { idx.count(std::vector<int32_t>{-1}); }).find("outside the vocabulary"), std::string::npos);
  EXPECT_NE(error_of([&] { idx.tokenize("text"); }).find("--ids"), std::string::npos);
  // Longer than any document: zero, and the longest document itself once.
  size_t longest = 0;
  for (size_t i = 0; i < docs.size(); ++i)
    if (docs[i].size() > docs[longest].size()) longest = i;
  auto q = docs[longest];
  EXPECT_EQ(idx.count(q), brute_count(docs, q));
  q.push_back(1);
  EXPECT_EQ(idx.count(q), 0u);
  EXPECT_EQ(idx.next(q).count, 0u);
  EXPECT_EQ(idx.docs(q, {}).hits.size(), 0u);
  EXPECT_EQ(idx.prob(q).prob, 0.0);
  EXPECT_NE(error_of([&] { idx.trace({}, 4, 1); }).find("nothing to trace"), std::string::npos);
  EXPECT_NE(error_of([&] { idx.document_tokens(docs.size()); }).find("does not exist"), std::string::npos);

  // Through the API: 400 with a message, not an exception.
  auto r = index::handle_search_request(idx, "/v1/search/count", {{"q", "1 x 2"}, {"ids", "1"}});
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body["error"]["message"].get<std::string>().find("'x' is not a token id"), std::string::npos);
  r = index::handle_search_request(idx, "/v1/search/count", {{"q", ""}, {"ids", "1"}});
  EXPECT_EQ(r.status, 400);
  r = index::handle_search_request(idx, "/v1/search/count", {{"q", "1 AND  OR 2"}, {"ids", "1"}});
  EXPECT_EQ(r.status, 400);
  r = index::handle_search_request(idx, "/v1/search/docs", {{"q", "1"}, {"ids", "1"}, {"limit", "ten"}});
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body["error"]["message"].get<std::string>().find("limit"), std::string::npos);
  r = index::handle_search_request(idx, "/v1/search/nothing", {});
  EXPECT_EQ(r.status, 404);
  r = index::handle_search_request(idx, "/v1/search/count", {{"q", "1 2 AND 3"}, {"ids", "1"}});
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(r.body.contains("documents"));
}

TEST(IndexBadInput, DamagedIndexesFailToOpenNamingTheFile) {
  TempDir dir;
  auto docs = small_docs();
  build_ids_index(dir, "i", docs, 300);
  const std::string root = dir.file("i");
  auto fresh = [&](const std::string& name) {
    std::string copy = dir.file(name);
    fs::remove_all(copy);
    fs::copy(root, copy, fs::copy_options::recursive);
    return copy;
  };
  // One flipped byte in each file: the checksum names the file.
  for (const char* file : {"tokens.bin", "sa.bin", "docs.bin", "meta.bin", "meta.idx"}) {
    std::string c = fresh(std::string("flip-") + file);
    std::string path = c + "/shard-00000/" + file;
    flip_byte(path, fs::file_size(path) / 2);
    std::string msg = error_of([&] { Index::open(c); });
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find("checksum"), std::string::npos) << msg;
  }
  // Truncated: the size check catches it even without checksums.
  for (const char* file : {"tokens.bin", "sa.bin"}) {
    std::string c = fresh(std::string("cut-") + file);
    std::string path = c + "/shard-00000/" + file;
    fs::resize_file(path, fs::file_size(path) - 3);
    std::string msg = error_of([&] { Index::open(c, Index::Verify::sizes); });
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find("bytes, the manifest says"), std::string::npos) << msg;
  }
  std::string c = fresh("nofile");
  fs::remove(c + "/shard-00000/meta.bin");
  EXPECT_NE(error_of([&] { Index::open(c); }).find("missing"), std::string::npos);
  c = fresh("nomanifest");
  fs::remove(c + "/manifest.json");
  EXPECT_NE(error_of([&] { Index::open(c); }).find("no manifest.json"), std::string::npos);
  c = fresh("badmanifest");
  write_bytes(c + "/manifest.json", "{\"format\": \"tsumugi-suffix-index\", \"version\": 1");
  EXPECT_NE(error_of([&] { Index::open(c); }).find("unreadable manifest"), std::string::npos);
  c = fresh("version");
  {
    auto m = nlohmann::json::parse(read_file(c + "/manifest.json"));
    m["version"] = 99;
    write_bytes(c + "/manifest.json", m.dump());
  }
  EXPECT_NE(error_of([&] { Index::open(c); }).find("version 99"), std::string::npos);
  EXPECT_NE(error_of([&] { Index::open(dir.file("none")); }).find("no manifest.json"), std::string::npos);
}

TEST(IndexBadInput, UncheckedCorruptSuffixArrayNeverReadsOutOfBounds) {
  TempDir dir;
  auto docs = small_docs();
  build_ids_index(dir, "i", docs, 300);
  std::string sa = dir.file("i") + "/shard-00000/sa.bin";
  // Pointers set to 0xFF..: past the end of the tokens.
  {
    std::fstream f(sa, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(std::streamoff(fs::file_size(sa) / 2));
    for (int i = 0; i < 64; ++i) f.put(char(0xFF));
  }
  auto idx = Index::open(dir.file("i"), Index::Verify::sizes);
  int errors = 0;
  for (int32_t t = 0; t < 300; ++t) {
    std::string msg = error_of([&] { idx.count(std::vector<int32_t>{t}); });
    if (!msg.empty()) {
      ++errors;
      EXPECT_NE(msg.find("corrupt index shard"), std::string::npos) << msg;
    }
  }
  EXPECT_GT(errors, 0);
  EXPECT_NE(error_of([&] { Index::open(dir.file("i")); }).find("checksum"), std::string::npos);
}

TEST(IndexBadInput, BuildReportsBadRecordsAndLeavesNothingHalfWritten) {
  TempDir dir;
  write_bytes(dir.file("in.jsonl"),
              "{\"id\": \"a\", \"text\": \"hello world\"}\n"
              "{\"id\": \"b\", \"text\": \n"
              "\n"
              "[1, 2]\n"
              "{\"id\": \"c\", \"body\": \"no text\"}\n"
              "{\"id\": \"d\", \"text\": 5}\n"
              "{\"id\": \"e\", \"text\": \"\"}\n"
              "{\"text\": \"world peace\"}\n");
  index::BuildOptions o;
  o.text_inputs = {dir.file("in.jsonl")};
  o.bytes = true;
  o.output = dir.file("idx");
  o.progress = 0;
  auto st = index::build_index(o);
  EXPECT_EQ(st.documents, 2u);
  EXPECT_EQ(st.bad_records, 4u);
  EXPECT_EQ(st.empty_documents, 1u);
  auto errors = read_lines(dir.file("idx") + "/errors.jsonl");
  ASSERT_EQ(errors.size(), 4u);
  EXPECT_NE(errors[0].find("\"line\":2"), std::string::npos) << errors[0];
  EXPECT_NE(errors[1].find("\"line\":4"), std::string::npos) << errors[1];
  EXPECT_NE(errors[2].find("no 'text' field"), std::string::npos) << errors[2];
  EXPECT_NE(errors[3].find("not a string"), std::string::npos) << errors[3];
  auto idx = Index::open(o.output);
  EXPECT_EQ(idx.count(idx.tokenize("world")), 2u);
  EXPECT_EQ(idx.document_metadata(0), "{\"id\":\"a\"}");
  EXPECT_NE(idx.document_metadata(1).find("\"line\":8"), std::string::npos);  // no id: file and line

  // The output exists: refused without --force; replaced with it.
  EXPECT_NE(error_of([&] { index::build_index(o); }).find("already exists"), std::string::npos);
  write_bytes(dir.file("in2.jsonl"), "{\"text\": \"other\"}\n");
  o.text_inputs = {dir.file("in2.jsonl")};
  o.force = true;
  index::build_index(o);
  EXPECT_EQ(Index::open(o.output).documents(), 1u);

  // Nothing indexable: an error, and no directory (or temporary) left behind.
  write_bytes(dir.file("empty.jsonl"), "{\"text\": \"\"}\n");
  o.text_inputs = {dir.file("empty.jsonl")};
  o.output = dir.file("idx-empty");
  EXPECT_NE(error_of([&] { index::build_index(o); }).find("no documents"), std::string::npos);
  size_t entries = 0;
  for (const auto& e : fs::directory_iterator(dir.path()))
    entries += e.path().filename().string().rfind("idx-empty", 0) == 0;
  EXPECT_EQ(entries, 0u);
  // Text without a tokenizer, and both kinds of input at once.
  o.bytes = false;
  EXPECT_NE(error_of([&] { index::build_index(o); }).find("--tokenizer"), std::string::npos);
  o.shard_prefixes = {"x"};
  EXPECT_NE(error_of([&] { index::build_index(o); }).find("either"), std::string::npos);
}

}  // namespace
}  // namespace tsumugi::testing

namespace tsumugi::testing {
namespace {

TEST(IndexBadInput, PostBodiesBecomeParameters) {
  auto p = index::params_from_json(nlohmann::json::parse(R"({"text": "abc", "min_tokens": 4, "ids": true})"));
  EXPECT_EQ(p.at("text"), "abc");
  EXPECT_EQ(p.at("min_tokens"), "4");
  EXPECT_EQ(p.at("ids"), "true");
  EXPECT_THROW(index::params_from_json(nlohmann::json::array()), Error);
}

}  // namespace
}  // namespace tsumugi::testing
