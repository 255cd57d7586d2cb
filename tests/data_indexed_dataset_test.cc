// The Megatron indexed dataset writer and memory-mapped reader: round trips for both token
// dtypes, the exact byte layout of the index, atomic output, and clear errors on truncated or
// corrupt files.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <random>

#include "data/indexed_dataset.h"
#include "test_util.h"
#include "util/error.h"
#include "util/io.h"

using namespace tsumugi;
using namespace tsumugi::data;
using tsumugi::testing::TempDir;
using tsumugi::testing::write_bytes;

namespace {

std::vector<std::vector<int32_t>> random_docs(size_t n, int32_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::vector<int32_t>> docs(n);
  for (auto& d : docs) {
    size_t len = rng() % 50 == 0 ? 0 : 1 + rng() % 300;  // a few empty sequences too
    for (size_t i = 0; i < len; ++i) d.push_back(int32_t(rng() % uint32_t(vocab)));
  }
  docs.push_back({vocab - 1, 0, vocab - 1});  // the extremes of the range
  return docs;
}

void write_docs(const std::string& prefix, DType dtype, const std::vector<std::vector<int32_t>>& docs) {
  IndexedDatasetWriter w(prefix, dtype);
  for (auto& d : docs) w.add_document(d);
  EXPECT_EQ(w.documents(), docs.size());
  w.finish();
}

uint64_t u64_at(const std::string& s, size_t off) {
  uint64_t v;
  std::memcpy(&v, s.data() + off, 8);
  return v;
}

std::string expect_open_error(const std::string& prefix) {
  try {
    IndexedDataset ds(prefix);
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "opening " << prefix << " should have failed";
  return {};
}

}  // namespace

TEST(IndexedDataset, OptimalDtypeFollowsMegatron) {
  EXPECT_EQ(optimal_dtype(32000), DType::uint16);
  EXPECT_EQ(optimal_dtype(65499), DType::uint16);
  EXPECT_EQ(optimal_dtype(65500), DType::int32);
  EXPECT_EQ(optimal_dtype(99574), DType::int32);  // LLM-jp tokenizer v2.1
  EXPECT_EQ(int(DType::uint16), 8);
  EXPECT_EQ(int(DType::int32), 4);
  EXPECT_EQ(dtype_size(DType::uint16), 2u);
  EXPECT_EQ(dtype_size(DType::int32), 4u);
}

class IndexedDatasetRoundTrip : public ::testing::TestWithParam<int32_t> {};

TEST_P(IndexedDatasetRoundTrip, WriterToReader) {
  const int32_t vocab = GetParam();
  const DType dtype = optimal_dtype(vocab);
  TempDir dir;
  std::string prefix = dir.file("ds");
  auto docs = random_docs(500, vocab, uint32_t(vocab));
  write_docs(prefix, dtype, docs);

  IndexedDataset ds(prefix);
  ASSERT_EQ(ds.size(), docs.size());
  EXPECT_EQ(ds.document_count(), docs.size());
  EXPECT_EQ(ds.dtype(), dtype);
  uint64_t total = 0;
  std::vector<int32_t> got;
  for (size_t i = 0; i < docs.size(); ++i) {
    ds.get(i, got);
    ASSERT_EQ(got, docs[i]) << "sequence " << i;
    EXPECT_EQ(size_t(ds.sequence_length(i)), docs[i].size());
    EXPECT_EQ(uint64_t(ds.sequence_pointer(i)), total * dtype_size(dtype));
    auto view = ds.sequence(i);
    ASSERT_EQ(view.size(), docs[i].size());
    for (size_t k = 0; k < view.size(); ++k) ASSERT_EQ(view[k], docs[i][k]);
    total += docs[i].size();
  }
  EXPECT_EQ(ds.total_tokens(), total);
  EXPECT_EQ(std::filesystem::file_size(bin_path(prefix)), total * dtype_size(dtype));

  // Typed views: the stored type works, another one is refused.
  size_t last = docs.size() - 1;
  if (dtype == DType::uint16) {
    auto span = ds.sequence_as<uint16_t>(last);
    EXPECT_EQ(span[0], uint16_t(vocab - 1));
    EXPECT_THROW(ds.sequence_as<int32_t>(last), Error);
  } else {
    auto span = ds.sequence_as<int32_t>(last);
    EXPECT_EQ(span[0], vocab - 1);
    EXPECT_THROW(ds.sequence_as<uint16_t>(last), Error);
  }

  auto di = ds.document_indices();
  ASSERT_EQ(di.size(), docs.size() + 1);
  for (size_t d = 0; d < di.size(); ++d) ASSERT_EQ(di[d], int64_t(d));
  EXPECT_EQ(ds.document_sequences(3), std::make_pair(size_t(3), size_t(4)));
  EXPECT_THROW(ds.sequence(docs.size()), Error);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, IndexedDatasetRoundTrip, ::testing::Values(32000, 65499, 65500, 99574));

TEST(IndexedDataset, IndexByteLayout) {
  TempDir dir;
  std::string prefix = dir.file("layout");
  {
    IndexedDatasetWriter w(prefix, DType::uint16);
    w.add_document(std::vector<int32_t>{5, 6, 7});
    w.add_document(std::vector<int32_t>{8});
    w.finish();
  }
  std::string idx = read_file(idx_path(prefix));
  ASSERT_EQ(idx.size(), 34u + 2 * 4 + 2 * 8 + 3 * 8);
  EXPECT_EQ(idx.substr(0, 9), std::string("MMIDIDX\0\0", 9));
  EXPECT_EQ(u64_at(idx, 9), 1u);    // version
  EXPECT_EQ(uint8_t(idx[17]), 8u);  // uint16
  EXPECT_EQ(u64_at(idx, 18), 2u);   // sequences
  EXPECT_EQ(u64_at(idx, 26), 3u);   // document index entries (documents + 1)
  int32_t len[2];
  std::memcpy(len, idx.data() + 34, 8);
  EXPECT_EQ(len[0], 3);
  EXPECT_EQ(len[1], 1);
  EXPECT_EQ(u64_at(idx, 42), 0u);  // pointers, in bytes
  EXPECT_EQ(u64_at(idx, 50), 6u);
  EXPECT_EQ(u64_at(idx, 58), 0u);  // document indices
  EXPECT_EQ(u64_at(idx, 66), 1u);
  EXPECT_EQ(u64_at(idx, 74), 2u);
  EXPECT_EQ(read_file(bin_path(prefix)), std::string("\x05\0\x06\0\x07\0\x08\0", 8));
}

TEST(IndexedDataset, MultiSequenceAndEmptyDocuments) {
  TempDir dir;
  std::string prefix = dir.file("multi");
  {
    IndexedDatasetWriter w(prefix, DType::int32);
    w.add_document(std::vector<int32_t>{1, 2});
    w.add_document(std::vector<int32_t>{3});
    w.add_sequence(std::vector<int32_t>{4, 5});  // a document of three sequences
    w.add_sequence(std::vector<int32_t>{6});
    w.add_sequence(std::vector<int32_t>{});
    w.end_document();
    w.end_document();  // a document with no sequences repeats the index, as in Megatron
    w.add_document(std::vector<int32_t>{7});
    EXPECT_EQ(w.sequences(), 6u);
    EXPECT_EQ(w.documents(), 5u);
    w.finish();
  }
  IndexedDataset ds(prefix);
  EXPECT_EQ(ds.size(), 6u);
  EXPECT_EQ(ds.document_count(), 5u);
  EXPECT_EQ(ds.document_indices().to_vector(), (std::vector<int64_t>{0, 1, 2, 5, 5, 6}));
  EXPECT_EQ(ds.document_sequences(2), std::make_pair(size_t(2), size_t(5)));
  std::vector<int32_t> got;
  ds.get(3, got);
  EXPECT_EQ(got, std::vector<int32_t>{6});
  ds.get(4, got);
  EXPECT_TRUE(got.empty());
  ds.get(5, got);
  EXPECT_EQ(got, std::vector<int32_t>{7});
}

TEST(IndexedDataset, EmptyDataset) {
  TempDir dir;
  std::string prefix = dir.file("empty");
  IndexedDatasetWriter(prefix, DType::uint16).finish();
  EXPECT_EQ(std::filesystem::file_size(bin_path(prefix)), 0u);
  EXPECT_EQ(std::filesystem::file_size(idx_path(prefix)), 34u + 8u);
  IndexedDataset ds(prefix);
  EXPECT_EQ(ds.size(), 0u);
  EXPECT_EQ(ds.document_count(), 0u);
  EXPECT_EQ(ds.total_tokens(), 0u);
}

TEST(IndexedDataset, MoveKeepsTheMapping) {
  TempDir dir;
  std::string prefix = dir.file("mv");
  write_docs(prefix, DType::uint16, {{1, 2, 3}});
  IndexedDataset a(prefix);
  IndexedDataset b(std::move(a));
  std::vector<int32_t> got;
  b.get(0, got);
  EXPECT_EQ(got, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(a.size(), 0u);
}

TEST(IndexedDataset, TokensOutsideTheDtypeAreRefused) {
  TempDir dir;
  IndexedDatasetWriter w(dir.file("x"), DType::uint16);
  EXPECT_THROW(w.add_document(std::vector<int32_t>{65536}), Error);
  EXPECT_THROW(w.add_document(std::vector<int32_t>{-1}), Error);
  EXPECT_THROW(IndexedDatasetWriter(dir.file("f"), DType::float32), Error);
}

TEST(IndexedDataset, NothingAppearsUntilFinish) {
  TempDir dir;
  std::string prefix = dir.file("partial");
  {
    IndexedDatasetWriter w(prefix, DType::uint16);
    for (int i = 0; i < 1000; ++i) w.add_document(std::vector<int32_t>{1, 2, 3, i});
    // destroyed without finish(), as when a job fails or is interrupted
  }
  EXPECT_TRUE(std::filesystem::is_empty(dir.path())) << "temporary or partial files were left behind";
  EXPECT_FALSE(IndexedDataset::exists(prefix));
}

TEST(IndexedDataset, TruncatedAndCorruptFilesFailWithClearErrors) {
  TempDir dir;
  std::string prefix = dir.file("good");
  auto docs = random_docs(50, 1000, 7);
  write_docs(prefix, DType::uint16, docs);
  const std::string idx = read_file(idx_path(prefix)), bin = read_file(bin_path(prefix));
  ASSERT_NO_THROW(IndexedDataset ds(prefix));

  auto variant = [&](const std::string& name, const std::string& idx_bytes, const std::string& bin_bytes) {
    std::string p = dir.file(name);
    write_bytes(idx_path(p), idx_bytes);
    write_bytes(bin_path(p), bin_bytes);
    return expect_open_error(p);
  };
  auto has = [](const std::string& msg, const char* part) {
    return msg.find(part) != std::string::npos ? ::testing::AssertionSuccess()
                                               : ::testing::AssertionFailure() << "'" << msg << "' lacks '" << part << "'";
  };

  std::string e = variant("t_header", idx.substr(0, 20), bin);
  EXPECT_TRUE(has(e, "truncated index"));
  EXPECT_TRUE(has(e, ".idx"));
  e = variant("t_arrays", idx.substr(0, idx.size() - 5), bin);
  EXPECT_TRUE(has(e, "truncated index"));
  e = variant("t_empty", "", bin);
  EXPECT_TRUE(has(e, "truncated index"));
  e = variant("t_bin", idx, bin.substr(0, bin.size() - 2));
  EXPECT_TRUE(has(e, "truncated data file"));
  EXPECT_TRUE(has(e, ".bin"));
  e = variant("t_bin_empty", idx, "");
  EXPECT_TRUE(has(e, "truncated data file"));
  e = variant("long_bin", idx, bin + "xx");
  EXPECT_TRUE(has(e, "mismatched"));
  e = variant("long_idx", idx + "abc", bin);
  EXPECT_TRUE(has(e, "unexpected bytes"));

  std::string bad = idx;
  bad[0] = 'X';
  EXPECT_TRUE(has(variant("magic", bad, bin), "MMIDIDX"));
  bad = idx;
  bad[9] = 2;
  EXPECT_TRUE(has(variant("version", bad, bin), "version 2"));
  bad = idx;
  bad[17] = 9;
  EXPECT_TRUE(has(variant("dtype", bad, bin), "dtype code 9"));
  bad = idx;
  bad[18 + 7] = 0x7f;  // absurd sequence count
  EXPECT_TRUE(has(variant("count", bad, bin), "index"));
  bad = idx;
  bad[bad.size() - 8] = 3;  // last document index no longer equals the sequence count
  EXPECT_TRUE(has(variant("docidx", bad, bin), "corrupt index"));
  bad = idx;
  bad[34 + 3] = char(0x80);  // negative first length
  EXPECT_TRUE(has(variant("neglen", bad, bin), "negative length"));

  // The quick check (header, sizes, last sequence) catches truncation too.
  EXPECT_THROW(IndexedDataset(dir.file("t_bin"), IndexedDataset::Verify::quick), Error);
  EXPECT_THROW(IndexedDataset(dir.file("t_arrays"), IndexedDataset::Verify::quick), Error);
  EXPECT_THROW(IndexedDataset(dir.file("long_bin"), IndexedDataset::Verify::quick), Error);
  IndexedDataset quick(prefix, IndexedDataset::Verify::quick);
  IndexedDataset full(prefix);
  EXPECT_EQ(quick.total_tokens(), full.total_tokens());
  EXPECT_EQ(quick.size(), full.size());

  std::filesystem::remove(bin_path(dir.file("t_bin")));
  EXPECT_TRUE(has(expect_open_error(dir.file("t_bin")), "cannot open"));
  EXPECT_TRUE(has(expect_open_error(dir.file("missing")), "cannot open"));
}
