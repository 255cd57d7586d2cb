// The files are what Megatron-LM reads and writes: a Python checker that parses .idx exactly as
// megatron/core/datasets/indexed_dataset.py's _IndexReader does (struct header, numpy.memmap +
// frombuffer arrays) and .bin through numpy.memmap as _MMapBinReader does; and the other way,
// files written the way _IndexWriter / IndexedDatasetBuilder write them, read by our reader.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <random>

#include "data/indexed_dataset.h"
#include "test_util.h"
#include "util/io.h"

using namespace tsumugi;
using namespace tsumugi::data;
using tsumugi::testing::run_command;
using tsumugi::testing::TempDir;
using tsumugi::testing::write_bytes;

namespace {

// Mirrors Megatron-LM's reader (indexed_dataset.py: DType, _IndexReader.__init__,
// IndexedDataset.__init__'s asserts, IndexedDataset.__getitem__ / _MMapBinReader.read).
const char* kMegatronReader = R"PY(
import json, struct, sys
import numpy

_INDEX_HEADER = b"MMIDIDX\x00\x00"
CODES = {1: numpy.uint8, 2: numpy.int8, 3: numpy.int16, 4: numpy.int32, 5: numpy.int64,
         6: numpy.float64, 7: numpy.float32, 8: numpy.uint16}

prefix, expected_path = sys.argv[1], sys.argv[2]
idx_path, bin_path = prefix + ".idx", prefix + ".bin"
with open(idx_path, "rb") as stream:
    header = stream.read(9)
    assert header == _INDEX_HEADER, f"bad header, cannot read: {idx_path}"
    version = struct.unpack("<Q", stream.read(8))[0]
    assert version == 1, f"bad version, cannot read: {idx_path}"
    code = struct.unpack("<B", stream.read(1))[0]
    dtype = CODES[code]
    dtype_size = dtype().itemsize
    sequence_count = struct.unpack("<Q", stream.read(8))[0]
    document_count = struct.unpack("<Q", stream.read(8))[0]
    offset = stream.tell()
assert offset == 34
bin_buffer_mmap = numpy.memmap(idx_path, mode="r", order="C")
bin_buffer = memoryview(bin_buffer_mmap)
sequence_lengths = numpy.frombuffer(bin_buffer, dtype=numpy.int32, count=sequence_count, offset=offset)
sequence_pointers = numpy.frombuffer(bin_buffer, dtype=numpy.int64, count=sequence_count,
                                     offset=offset + sequence_lengths.nbytes)
document_indices = numpy.frombuffer(bin_buffer, dtype=numpy.int64, count=document_count,
                                    offset=offset + sequence_lengths.nbytes + sequence_pointers.nbytes)
# IndexedDataset.__init__
assert sequence_lengths.shape[0] == document_indices[-1]
assert sequence_lengths.shape[0] == sequence_count
# nothing after the arrays (no multimodal modes)
assert len(bin_buffer_mmap) == offset + sequence_lengths.nbytes + sequence_pointers.nbytes + document_indices.nbytes

data_mmap = numpy.memmap(bin_path, mode="r", order="C") if sequence_lengths.sum() > 0 else numpy.zeros(0, numpy.uint8)
data = memoryview(data_mmap.data)
expected = json.load(open(expected_path))
assert numpy.dtype(dtype).name == expected["dtype"], (numpy.dtype(dtype).name, expected["dtype"])
assert len(expected["sequences"]) == sequence_count
assert document_indices.tolist() == expected["document_indices"], document_indices.tolist()
for i, want in enumerate(expected["sequences"]):
    seq = numpy.frombuffer(data, dtype=dtype, count=int(sequence_lengths[i]), offset=int(sequence_pointers[i]))
    assert seq.tolist() == want, (i, seq.tolist()[:10], want[:10])
# IndexedDataset slice access: one contiguous read split by lengths
if sequence_count:
    flat = numpy.frombuffer(data, dtype=dtype, count=int(sequence_lengths.sum()), offset=int(sequence_pointers[0]))
    assert flat.tolist() == [t for s in expected["sequences"] for t in s]
print("MEGATRON-READER-OK", sequence_count, document_count - 1, numpy.dtype(dtype).name)
)PY";

// Writes a dataset the way IndexedDatasetBuilder.add_document + finalize (_IndexWriter) do.
const char* kMegatronWriter = R"PY(
import json, struct, sys
import numpy

_INDEX_HEADER = b"MMIDIDX\x00\x00"
CODE = {"uint16": 8, "int32": 4}
prefix, dtype_name, docs_path = sys.argv[1], sys.argv[2], sys.argv[3]
dtype = getattr(numpy, dtype_name)
docs = json.load(open(docs_path))  # list of documents, each a list of sequences
sequence_lengths, document_indices = [], [0]
with open(prefix + ".bin", "wb") as data_file:
    for doc in docs:  # add_document(tensor, lengths)
        flat = [t for s in doc for t in s]
        data_file.write(numpy.array(flat, dtype=dtype).tobytes(order="C"))
        sequence_lengths.extend(len(s) for s in doc)
        document_indices.append(len(sequence_lengths))
itemsize = numpy.int64(dtype().itemsize)
pointers, cur = [], numpy.int64(0)
for length in sequence_lengths:
    pointers.append(cur.item())
    cur += length * itemsize
with open(prefix + ".idx", "wb") as idx:
    idx.write(_INDEX_HEADER)
    idx.write(struct.pack("<Q", 1))
    idx.write(struct.pack("<B", CODE[dtype_name]))
    idx.write(struct.pack("<Q", len(sequence_lengths)))
    idx.write(struct.pack("<Q", len(document_indices)))
    idx.write(numpy.array(sequence_lengths, dtype=numpy.int32).tobytes(order="C"))
    idx.write(numpy.array(pointers, dtype=numpy.int64).tobytes(order="C"))
    idx.write(numpy.array(document_indices, dtype=numpy.int64).tobytes(order="C"))
print("MEGATRON-WRITER-OK")
)PY";

bool have_numpy() {
  std::string out;
  return run_command("python3 -c 'import numpy'", out) == 0;
}

class MegatronFormat : public ::testing::TestWithParam<int32_t> {
 protected:
  void SetUp() override {
    if (!have_numpy()) GTEST_SKIP() << "python3 with numpy is needed for the Megatron format checker";
  }
};

}  // namespace

TEST_P(MegatronFormat, MegatronReaderReadsOurFiles) {
  const int32_t vocab = GetParam();
  TempDir dir;
  std::string prefix = dir.file("ours");
  std::mt19937 rng{uint32_t(vocab)};
  nlohmann::json expected;
  expected["dtype"] = std::string(dtype_name(optimal_dtype(vocab)));
  expected["sequences"] = nlohmann::json::array();
  expected["document_indices"] = nlohmann::json::array({0});
  {
    IndexedDatasetWriter w(prefix, optimal_dtype(vocab));
    for (int d = 0; d < 300; ++d) {
      std::vector<int32_t> toks(1 + rng() % 200);
      for (auto& t : toks) t = int32_t(rng() % uint32_t(vocab));
      if (d == 7) toks = {vocab - 1, 0};
      w.add_document(toks);
      expected["sequences"].push_back(toks);
      expected["document_indices"].push_back(d + 1);
    }
    w.finish();
  }
  write_bytes(dir.file("expected.json"), expected.dump());
  write_bytes(dir.file("reader.py"), kMegatronReader);
  std::string out;
  int rc = run_command("python3 " + dir.file("reader.py") + " " + prefix + " " + dir.file("expected.json"), out);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("MEGATRON-READER-OK 300 300 " + expected["dtype"].get<std::string>()), std::string::npos) << out;
}

TEST_P(MegatronFormat, OurReaderReadsMegatronFiles) {
  const int32_t vocab = GetParam();
  const std::string dt(dtype_name(optimal_dtype(vocab)));
  TempDir dir;
  std::mt19937 rng{uint32_t(vocab) + 1};
  // Documents of several sequences, one with none, one with an empty sequence.
  nlohmann::json docs = nlohmann::json::array();
  std::vector<std::vector<int32_t>> seqs;
  std::vector<int64_t> doc_idx{0};
  for (int d = 0; d < 60; ++d) {
    nlohmann::json doc = nlohmann::json::array();
    int nseq = d == 5 ? 0 : 1 + int(rng() % 3);
    for (int s = 0; s < nseq; ++s) {
      std::vector<int32_t> toks(d == 9 && s == 0 ? 0 : 1 + rng() % 50);
      for (auto& t : toks) t = int32_t(rng() % uint32_t(vocab));
      doc.push_back(toks);
      seqs.push_back(toks);
    }
    docs.push_back(doc);
    doc_idx.push_back(int64_t(seqs.size()));
  }
  write_bytes(dir.file("docs.json"), docs.dump());
  write_bytes(dir.file("writer.py"), kMegatronWriter);
  std::string prefix = dir.file("theirs"), out;
  ASSERT_EQ(run_command("python3 " + dir.file("writer.py") + " " + prefix + " " + dt + " " + dir.file("docs.json"), out), 0)
      << out;

  IndexedDataset ds(prefix);
  EXPECT_EQ(dtype_name(ds.dtype()), dt);
  ASSERT_EQ(ds.size(), seqs.size());
  EXPECT_EQ(ds.document_indices().to_vector(), doc_idx);
  std::vector<int32_t> got;
  for (size_t i = 0; i < seqs.size(); ++i) {
    ds.get(i, got);
    ASSERT_EQ(got, seqs[i]) << i;
  }
  // And our writer, given the same documents, produces the same bytes.
  std::string mine = dir.file("mine");
  {
    IndexedDatasetWriter w(mine, optimal_dtype(vocab));
    for (auto& doc : docs) {
      for (auto& s : doc) w.add_sequence(s.get<std::vector<int32_t>>());
      w.end_document();
    }
    w.finish();
  }
  EXPECT_EQ(read_file(idx_path(mine)), read_file(idx_path(prefix)));
  EXPECT_EQ(read_file(bin_path(mine)), read_file(bin_path(prefix)));
}

INSTANTIATE_TEST_SUITE_P(Dtypes, MegatronFormat, ::testing::Values(32000, 99574));
