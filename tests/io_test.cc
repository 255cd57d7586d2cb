#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "test_util.h"
#include "util/base64.h"
#include "util/error.h"
#include "util/io.h"

using namespace tsumugi;
using tsumugi::testing::TempDir;

namespace {
void write_with(const std::string& path, const std::string& content) {
  OutputFile f(path);
  f.write(content);
  f.commit();
}
}  // namespace

class IoRoundTrip : public ::testing::TestWithParam<std::string> {};

TEST_P(IoRoundTrip, WritesAndReadsBackLinesByExtension) {
  TempDir dir;
  std::string path = dir.file("x" + GetParam());
  std::string content;
  for (int i = 0; i < 50000; ++i) content += "line " + std::to_string(i) + " 日本語\n";
  write_with(path, content);
  auto lines = tsumugi::testing::read_lines(path);
  ASSERT_EQ(lines.size(), 50000u);
  EXPECT_EQ(lines[0], "line 0 日本語");
  EXPECT_EQ(lines[49999], "line 49999 日本語");
  EXPECT_EQ(read_file(path), content);
  if (GetParam() != ".jsonl") EXPECT_LT(file_size_or_zero(path), content.size() / 3);
}

INSTANTIATE_TEST_SUITE_P(Formats, IoRoundTrip, ::testing::Values(".jsonl", ".jsonl.gz", ".jsonl.zst"));

TEST(Io, LongLineAndMissingFinalNewline) {
  TempDir dir;
  std::string big(30u << 20, 'a');  // a 30 MB line
  write_with(dir.file("big.jsonl.zst"), "short\r\n" + big + "\nlast");
  LineReader r(dir.file("big.jsonl.zst"));
  std::string_view l;
  ASSERT_TRUE(r.next(l));
  EXPECT_EQ(l, "short\r");  // the reader keeps bytes; CR handling is the parser's job
  ASSERT_TRUE(r.next(l));
  EXPECT_EQ(l.size(), big.size());
  ASSERT_TRUE(r.next(l));
  EXPECT_EQ(l, "last");
  EXPECT_TRUE(r.missing_final_newline());
  EXPECT_FALSE(r.next(l));
  EXPECT_EQ(r.line_number(), 3u);
}

TEST(Io, EmptyFileHasNoLines) {
  TempDir dir;
  tsumugi::testing::write_bytes(dir.file("e.jsonl"), "");
  LineReader r(dir.file("e.jsonl"));
  std::string_view l;
  EXPECT_FALSE(r.next(l));
}

class IoTruncated : public ::testing::TestWithParam<std::string> {};

TEST_P(IoTruncated, TruncatedCompressedInputRaisesErrorNamingFile) {
  TempDir dir;
  std::string path = dir.file("t" + GetParam());
  std::string content;
  for (int i = 0; i < 20000; ++i) content += "{\"text\":\"document " + std::to_string(i) + "\"}\n";
  write_with(path, content);
  // Cut the compressed file in half.
  std::ifstream in(path, std::ios::binary);
  std::string comp((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  tsumugi::testing::write_bytes(path, comp.substr(0, comp.size() / 2));
  LineReader r(path);
  std::string_view l;
  uint64_t n = 0;
  try {
    while (r.next(l)) ++n;
    FAIL() << "no error for truncated input";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
  }
  EXPECT_GT(n, 0u);  // the lines before the break were delivered
}

INSTANTIATE_TEST_SUITE_P(Formats, IoTruncated, ::testing::Values(".gz", ".zst"));

TEST(Io, ConcatenatedGzipMembersReadAsOneStream) {
  TempDir dir;
  std::string a = dir.file("a.gz"), b = dir.file("b.gz");
  write_with(a, "one\n");
  write_with(b, "two\n");
  std::ifstream ia(a, std::ios::binary), ib(b, std::ios::binary);
  std::string both((std::istreambuf_iterator<char>(ia)), std::istreambuf_iterator<char>());
  both.append((std::istreambuf_iterator<char>(ib)), std::istreambuf_iterator<char>());
  tsumugi::testing::write_bytes(dir.file("ab.gz"), both);
  EXPECT_EQ(read_file(dir.file("ab.gz")), "one\ntwo\n");
}

TEST(Io, UnreadablePathIsAClearError) {
  try {
    open_source("/nonexistent/dir/file.jsonl");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/dir/file.jsonl"), std::string::npos);
  }
}

TEST(Io, OutputIsAtomic) {
  TempDir dir;
  std::string path = dir.file("out.jsonl");
  {
    OutputFile f(path);
    f.write("partial");
    // destroyed without commit
  }
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
  write_file_atomic(path, "done\n");
  EXPECT_EQ(read_file(path), "done\n");
}

TEST(Io, GlobExpansionAndNoMatchError) {
  TempDir dir;
  tsumugi::testing::write_bytes(dir.file("a.jsonl"), "");
  tsumugi::testing::write_bytes(dir.file("b.jsonl"), "");
  auto files = expand_inputs({dir.file("*.jsonl")});
  ASSERT_EQ(files.size(), 2u);
  EXPECT_EQ(files[0], dir.file("a.jsonl"));
  EXPECT_THROW(expand_inputs({dir.file("*.nothing")}), Error);
}

TEST_P(IoRoundTrip, FramesFromWorkersMixWithStreamedWrites) {
  TempDir dir;
  std::string path = dir.file("f" + GetParam());
  Compression c = compression_for_path(path);
  {
    OutputFile f(path);
    f.write("streamed 1\n");
    f.write_frames(compress_frame(c, "frame A\nframe B\n"), 16);
    f.write_frames(compress_frame(c, "frame C\n"), 8);
    f.write("streamed 2\n");
    f.write_frames(compress_frame(c, "frame D\n"), 8);
    EXPECT_EQ(f.bytes_written(), 11u + 16 + 8 + 11 + 8);
    f.commit();
  }
  EXPECT_EQ(read_file(path), "streamed 1\nframe A\nframe B\nframe C\nstreamed 2\nframe D\n");
  std::string empty = dir.file("empty" + GetParam());
  {
    OutputFile f(empty);
    f.commit();
  }
  EXPECT_EQ(read_file(empty), "");
}

TEST(Base64, MatchesRfc4648Vectors) {
  EXPECT_EQ(base64_encode(""), "");
  EXPECT_EQ(base64_encode("f"), "Zg==");
  EXPECT_EQ(base64_encode("fo"), "Zm8=");
  EXPECT_EQ(base64_encode("foo"), "Zm9v");
  EXPECT_EQ(base64_encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(base64_encode(std::string("\xff\xfe\x00", 3)), "//4A");
}
