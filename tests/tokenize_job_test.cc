// The tokenize job with a stand-in encoder (bytes → ids), so the pipeline is tested apart from
// the tokenizer: input order across files and threads, EOD, empty documents, bad records with
// file:line, broken-off compressed input, failures leaving nothing behind.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <stdexcept>

#include "data/indexed_dataset.h"
#include "data/tokenize_job.h"
#include "test_util.h"
#include "util/error.h"
#include "util/io.h"

using namespace tsumugi;
using namespace tsumugi::data;
using tsumugi::testing::read_lines;
using tsumugi::testing::TempDir;
using tsumugi::testing::write_bytes;

namespace {

constexpr int32_t kEod = 2;

// Byte-level stand-in: byte b → id b + 3 (vocab 259), or spread over a large vocabulary.
std::vector<int32_t> fake_ids(std::string_view text, bool big) {
  std::vector<int32_t> ids;
  for (size_t i = 0; i < text.size(); ++i) {
    int32_t b = int32_t(uint8_t(text[i])) + 3;
    ids.push_back(big ? b * 300 + int32_t(i % 300) : b);
  }
  return ids;
}

EncodeFn fake_encoder(bool big) {
  return [big](std::string_view text, std::vector<int32_t>& ids) {
    if (text == "BOOM") throw std::runtime_error("cannot encode this");
    auto v = fake_ids(text, big);
    ids.insert(ids.end(), v.begin(), v.end());
  };
}

std::string doc(const std::string& text) { return nlohmann::json({{"id", "x"}, {"text", text}}).dump() + "\n"; }

struct Corpus {
  std::vector<std::string> files;
  std::vector<std::string> texts;  // the documents that should be written, in order
};

// Two inputs (plain and zstd), with bad records, blank lines and empty texts mixed in.
Corpus make_corpus(const TempDir& dir, int docs_per_file) {
  Corpus c;
  for (int f = 0; f < 2; ++f) {
    std::string content;
    for (int i = 0; i < docs_per_file; ++i) {
      std::string text = "文書 " + std::to_string(f) + "-" + std::to_string(i) + std::string(size_t(i % 17), 'a');
      if (i % 50 == 10) {
        content += "{\"text\": broken\n";  // malformed JSON
        continue;
      }
      if (i % 50 == 20) {
        content += "\n  \n";  // blank lines are not records
        continue;
      }
      if (i % 50 == 30) {
        content += doc("");  // empty: skipped
        continue;
      }
      if (i % 50 == 40) {
        content += "{\"body\": \"no text field\"}\n";
        continue;
      }
      content += doc(text);
      c.texts.push_back(text);
    }
    std::string path = dir.file(f == 0 ? "a.jsonl" : "b.jsonl.zst");
    OutputFile out(path);
    out.write(content);
    out.commit();
    c.files.push_back(path);
  }
  return c;
}

TokenizeOptions options(const Corpus& c, const std::string& prefix, unsigned threads, bool big) {
  TokenizeOptions o;
  o.inputs = c.files;
  o.prefix = prefix;
  o.threads = threads;
  o.progress = 0;
  o.vocab_size = big ? 259 * 300 + 300 : 259;
  o.eod_id = kEod;
  o.batch_bytes = 512;  // many batches, so ordering across workers is exercised
  return o;
}

}  // namespace

class TokenizeJob : public ::testing::TestWithParam<bool> {};

TEST_P(TokenizeJob, WritesEveryDocumentInInputOrderWithEod) {
  const bool big = GetParam();
  TempDir dir;
  auto c = make_corpus(dir, 400);
  auto st = run_tokenize(options(c, dir.file("out/ds"), 3, big), fake_encoder(big));

  EXPECT_EQ(st.dtype, big ? DType::int32 : DType::uint16);
  EXPECT_EQ(st.documents, c.texts.size());
  EXPECT_EQ(st.bad_records, 2u * 8u * 2u);  // 8 malformed + 8 missing text per file
  EXPECT_EQ(st.empty_documents, 2u * 8u);
  EXPECT_EQ(st.blank_lines, 2u * 8u * 2u);
  EXPECT_EQ(st.records, st.documents + st.bad_records + st.empty_documents);
  EXPECT_EQ(st.eod_tokens, st.documents);
  EXPECT_GT(st.jsonl_bytes, 0u);

  IndexedDataset ds(dir.file("out/ds"));
  ASSERT_EQ(ds.size(), c.texts.size());
  EXPECT_EQ(ds.document_count(), c.texts.size());
  EXPECT_EQ(ds.total_tokens(), st.tokens);
  std::vector<int32_t> got;
  for (size_t i = 0; i < c.texts.size(); ++i) {
    auto want = fake_ids(c.texts[i], big);
    want.push_back(kEod);
    ds.get(i, got);
    ASSERT_EQ(got, want) << "document " << i;
  }

  // Bad records are reported with file and line, raw bytes kept.
  ASSERT_EQ(st.errors_path, dir.file("out/ds") + ".errors.jsonl");
  auto errors = read_lines(st.errors_path);
  ASSERT_EQ(errors.size(), st.bad_records);
  auto first = nlohmann::json::parse(errors[0]);
  EXPECT_EQ(first["file"], c.files[0]);
  EXPECT_EQ(first["line"], 11);
  EXPECT_NE(first["error"].get<std::string>().find("malformed JSON"), std::string::npos);
  EXPECT_EQ(first["raw"], "{\"text\": broken");
  auto summary = format_tokenize_summary(st);
  for (const char* part : {"documents written", "empty docs skipped", "bad records", "tokens/s", "MB/s", "bytes in"})
    EXPECT_NE(summary.find(part), std::string::npos) << part << "\n" << summary;
}

TEST_P(TokenizeJob, OutputIsIdenticalForAnyThreadCount) {
  const bool big = GetParam();
  TempDir dir;
  auto c = make_corpus(dir, 600);
  run_tokenize(options(c, dir.file("j1"), 1, big), fake_encoder(big));
  run_tokenize(options(c, dir.file("j4"), 4, big), fake_encoder(big));
  run_tokenize(options(c, dir.file("j7"), 7, big), fake_encoder(big));
  for (const char* other : {"j4", "j7"}) {
    EXPECT_EQ(read_file(dir.file("j1.bin")), read_file(dir.file(std::string(other) + ".bin"))) << other;
    EXPECT_EQ(read_file(dir.file("j1.idx")), read_file(dir.file(std::string(other) + ".idx"))) << other;
    EXPECT_EQ(read_file(dir.file("j1.errors.jsonl")), read_file(dir.file(std::string(other) + ".errors.jsonl")));
  }
}

INSTANTIATE_TEST_SUITE_P(Vocab, TokenizeJob, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? std::string("int32") : std::string("uint16"); });

TEST(TokenizeJobEdges, NoEodTokenizerErrorsAndPrefixWithExtension) {
  TempDir dir;
  std::string in = dir.file("in.jsonl");
  write_bytes(in, doc("abc") + doc("BOOM") + doc("de"));
  TokenizeOptions o;
  o.inputs = {in};
  o.prefix = dir.file("p.bin");  // taken as the prefix "p"
  o.progress = 0;
  o.vocab_size = 259;
  o.eod_id = -1;
  auto st = run_tokenize(o, fake_encoder(false));
  EXPECT_EQ(st.documents, 2u);
  EXPECT_EQ(st.bad_records, 1u);
  EXPECT_EQ(st.eod_tokens, 0u);
  IndexedDataset ds(dir.file("p"));
  std::vector<int32_t> got;
  ds.get(1, got);
  EXPECT_EQ(got, fake_ids("de", false));
  auto errors = read_lines(dir.file("p.errors.jsonl"));
  ASSERT_EQ(errors.size(), 1u);
  auto e = nlohmann::json::parse(errors[0]);
  EXPECT_EQ(e["line"], 2);
  EXPECT_NE(e["error"].get<std::string>().find("cannot encode this"), std::string::npos);

  // A clean rerun leaves no stale errors file.
  write_bytes(in, doc("abc"));
  st = run_tokenize(o, fake_encoder(false));
  EXPECT_TRUE(st.errors_path.empty());
  EXPECT_FALSE(std::filesystem::exists(dir.file("p.errors.jsonl")));
}

TEST(TokenizeJobEdges, TruncatedCompressedInputKeepsTheDocumentsBefore) {
  TempDir dir;
  std::string full = dir.file("full.jsonl.gz");
  {
    OutputFile out(full);
    for (int i = 0; i < 3000; ++i) out.write(doc("document number " + std::to_string(i) + " with some words in it"));
    out.commit();
  }
  std::string raw;  // the compressed bytes
  {
    std::FILE* f = std::fopen(full.c_str(), "rb");
    char buf[4096];
    for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) raw.append(buf, n);
    std::fclose(f);
  }
  std::string cut = dir.file("cut.jsonl.gz");
  write_bytes(cut, raw.substr(0, raw.size() / 2));
  TokenizeOptions o;
  o.inputs = {cut};
  o.prefix = dir.file("t");
  o.progress = 0;
  o.vocab_size = 259;
  o.eod_id = kEod;
  auto st = run_tokenize(o, fake_encoder(false));
  EXPECT_EQ(st.files_truncated, 1u);
  EXPECT_GT(st.documents, 100u);
  EXPECT_LT(st.documents, 3000u);
  IndexedDataset ds(dir.file("t"));
  EXPECT_EQ(ds.size(), st.documents);
  auto errors = read_lines(st.errors_path);
  ASSERT_FALSE(errors.empty());
  EXPECT_NE(errors.back().find("truncated"), std::string::npos) << errors.back();
}

TEST(TokenizeJobEdges, FailureLeavesNoOutput) {
  TempDir dir;
  std::string in = dir.file("in.jsonl");
  std::string content;
  for (int i = 0; i < 2000; ++i) content += doc(i == 1500 ? "bad id" : "fine text " + std::to_string(i));
  write_bytes(in, content);
  TokenizeOptions o;
  o.inputs = {in};
  o.prefix = dir.file("f");
  o.progress = 0;
  o.vocab_size = 259;
  o.eod_id = kEod;
  o.threads = 2;
  o.batch_bytes = 256;
  // A tokenizer returning an id outside its vocabulary mid-stream stops the job.
  EncodeFn enc = [](std::string_view text, std::vector<int32_t>& ids) {
    auto v = fake_ids(text, false);
    ids.insert(ids.end(), v.begin(), v.end());
    if (text == "bad id") ids.push_back(5000);
  };
  try {
    run_tokenize(o, enc);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("outside its vocabulary"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("in.jsonl:1501"), std::string::npos) << e.what();
  }
  std::vector<std::string> left;
  for (auto& e : std::filesystem::directory_iterator(dir.path())) left.push_back(e.path().filename().string());
  EXPECT_EQ(left, std::vector<std::string>{"in.jsonl"});
}

TEST(TokenizeJobEdges, EmptyInputGivesAnEmptyDataset) {
  TempDir dir;
  std::string in = dir.file("empty.jsonl");
  write_bytes(in, "");
  TokenizeOptions o;
  o.inputs = {in};
  o.prefix = dir.file("e");
  o.progress = 0;
  o.vocab_size = 259;
  auto st = run_tokenize(o, fake_encoder(false));
  EXPECT_EQ(st.documents, 0u);
  IndexedDataset ds(dir.file("e"));
  EXPECT_EQ(ds.size(), 0u);
}
