// TensorBoard event files: CRC32C against published vectors, the exact protobuf bytes, and
// the `tensorboard` Python package (EventAccumulator and its record reader) as the oracle.
#include "formats/tensorboard.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "test_util.h"
#include "util/error.h"
#include "util/io.h"

namespace tsumugi::formats {
namespace {

using tsumugi::testing::run_command;
using tsumugi::testing::TempDir;
using tsumugi::testing::write_bytes;

std::string bytes_of(std::initializer_list<int> v) {
  std::string s;
  for (int b : v) s.push_back(char(b));
  return s;
}

TEST(TensorBoard, Crc32cMatchesKnownVectors) {
  // The standard check value, and the vectors of RFC 3720 (iSCSI) appendix B.4.
  EXPECT_EQ(crc32c("123456789"), 0xe3069283u);
  EXPECT_EQ(crc32c(""), 0u);
  EXPECT_EQ(crc32c(std::string(32, '\0')), 0x8a9136aau);
  EXPECT_EQ(crc32c(std::string(32, '\xff')), 0x62a8ab43u);
  std::string up, down;
  for (int i = 0; i < 32; ++i) {
    up.push_back(char(i));
    down.push_back(char(31 - i));
  }
  EXPECT_EQ(crc32c(up), 0x46dd794eu);
  EXPECT_EQ(crc32c(down), 0x113fdb5cu);
  const std::string iscsi_read = bytes_of({0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                                           0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x14,
                                           0x00, 0x00, 0x00, 0x18, 0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00,
                                           0x00, 0x00, 0x00, 0x00, 0x00, 0x00});
  EXPECT_EQ(crc32c(iscsi_read), 0xd9963a56u);
  // Incremental use continues a running CRC.
  EXPECT_EQ(crc32c("56789", crc32c("1234")), 0xe3069283u);
  // Masking: rotate right by 15, add TFRecord's constant.
  const uint32_t c = 0xe3069283u;
  EXPECT_EQ(masked_crc32c("123456789"), ((c >> 15) | (c << 17)) + 0xa282ead8u);
}

TEST(TensorBoard, EventAndRecordBytesAreExact) {
  // Event{wall_time: 1.0, step: 3, summary{value{tag: "loss", simple_value: 2.5}}}
  const std::string want = bytes_of({0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f,              // wall_time
                                     0x10, 0x03,                                      // step
                                     0x2a, 0x0d,                                      // summary
                                     0x0a, 0x0b,                                      //   value
                                     0x0a, 0x04, 'l', 'o', 's', 's',                  //     tag
                                     0x15, 0x00, 0x00, 0x20, 0x40});                  //     simple_value
  EXPECT_EQ(event_scalars({{"loss", 2.5f}}, 3, 1.0), want);
  // Steps past 2^31 and a 300-step varint.
  EXPECT_EQ(event_scalars({}, int64_t(1) << 35, 0.0).substr(9), bytes_of({0x10, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0x2a, 0x00}));
  EXPECT_EQ(event_scalars({}, 300, 0.0).substr(9), bytes_of({0x10, 0xac, 0x02, 0x2a, 0x00}));
  // Event{wall_time: 0.5, file_version: "brain.Event:2"}
  EXPECT_EQ(event_file_version(0.5), bytes_of({0x09, 0, 0, 0, 0, 0, 0, 0xe0, 0x3f, 0x1a, 13}) + "brain.Event:2");

  const std::string rec = tfrecord("abc");
  ASSERT_EQ(rec.size(), 8u + 4 + 3 + 4);
  uint64_t len;
  uint32_t c1, c2;
  std::memcpy(&len, rec.data(), 8);
  std::memcpy(&c1, rec.data() + 8, 4);
  std::memcpy(&c2, rec.data() + 15, 4);
  EXPECT_EQ(len, 3u);
  EXPECT_EQ(c1, masked_crc32c(rec.substr(0, 8)));
  EXPECT_EQ(rec.substr(12, 3), "abc");
  EXPECT_EQ(c2, masked_crc32c("abc"));
}

TEST(TensorBoard, WriterNamesFilesAndFlushesEachStep) {
  TempDir dir;
  const std::string logdir = dir.file("tb/run1");  // created on demand
  TensorBoardWriter a(logdir), b(logdir);
  EXPECT_NE(a.path(), b.path());  // same second, same host: still two files
  const auto name = std::filesystem::path(a.path()).filename().string();
  EXPECT_EQ(name.rfind("events.out.tfevents.", 0), 0u) << name;
  // The first record (file_version) is on disk before any scalar.
  const auto first = std::filesystem::file_size(a.path());
  EXPECT_EQ(first, tfrecord(event_file_version(0)).size());
  a.add_scalar("train/loss", 3.0f, 1, 100.0);
  a.flush();
  EXPECT_EQ(std::filesystem::file_size(a.path()), first + tfrecord(event_scalars({{"train/loss", 3.0f}}, 1, 100.0)).size());
  EXPECT_EQ(read_file(a.path()).substr(first), tfrecord(event_scalars({{"train/loss", 3.0f}}, 1, 100.0)));
  EXPECT_THROW(TensorBoardWriter(dir.file("tb/run1/") + std::filesystem::path(a.path()).filename().string() + "/x"), Error);
}

// ---- the tensorboard package as the oracle ----

std::string missing_tensorboard() {
  std::string out;
  if (run_command("python3 -c 'from tensorboard.backend.event_processing.event_accumulator import EventAccumulator'", out) != 0)
    return "python3 with the tensorboard package is needed (pip install -r tests/requirements.txt)";
  return "";
}

// Checks every record's framing and masked CRCs with tensorboard's own crc code and parses
// each with its Event proto, then loads the directory with EventAccumulator and prints the
// scalars as JSON.
constexpr const char* kPyReader = R"PY(
import glob, json, struct, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c
logdir = sys.argv[1]
records = 0
for path in sorted(glob.glob(logdir + "/*tfevents*")):
    data = open(path, "rb").read()
    pos = 0
    while pos < len(data):
        header = data[pos:pos + 8]
        (n,) = struct.unpack("<Q", header)
        (hc,) = struct.unpack("<I", data[pos + 8:pos + 12])
        assert hc == masked_crc32c(header), ("length crc", path, pos)
        body = data[pos + 12:pos + 12 + n]
        (dc,) = struct.unpack("<I", data[pos + 12 + n:pos + 16 + n])
        assert dc == masked_crc32c(body), ("data crc", path, pos)
        ev = event_pb2.Event.FromString(body)
        if pos == 0:
            assert ev.file_version == "brain.Event:2", ev
        pos += 16 + n
        records += 1
acc = EventAccumulator(logdir)
acc.Reload()
out = {"file_version": acc.file_version, "records": records, "scalars": {}}
for tag in acc.Tags()["scalars"]:
    out["scalars"][tag] = [[e.step, e.value, e.wall_time] for e in acc.Scalars(tag)]
print("TB-JSON " + json.dumps(out))
)PY";

nlohmann::json read_with_tensorboard(const TempDir& dir, const std::string& logdir) {
  write_bytes(dir.file("reader.py"), kPyReader);
  std::string out;
  int rc = run_command("python3 " + dir.file("reader.py") + " " + logdir, out);
  EXPECT_EQ(rc, 0) << out;
  try {
    const auto at = out.find("TB-JSON ");
    if (at == std::string::npos) throw std::runtime_error("no TB-JSON line");
    return nlohmann::json::parse(out.substr(at + 8, out.find('\n', at) - at - 8));
  } catch (const std::exception& e) {
    ADD_FAILURE() << "reader output is not JSON: " << out;
    return {};
  }
}

TEST(TensorBoard, TensorBoardReadsOurScalarsWhileTheRunIsLive) {
  if (auto why = missing_tensorboard(); !why.empty()) GTEST_SKIP() << why;
  TempDir dir;
  const std::string logdir = dir.file("run");
  TensorBoardWriter w(logdir);
  const double t0 = 1.7e9 + 0.25;
  nlohmann::json want = nlohmann::json::object();
  for (int64_t step = 1; step <= 20; ++step) {
    const float loss = 10.0f / float(step), lr = 3e-4f * float(step) / 20.0f;
    w.add_scalars({{"train/loss", loss}, {"train/lr", lr}}, step, t0 + double(step));
    want["train/loss"].push_back({step, loss, t0 + double(step)});
    want["train/lr"].push_back({step, lr, t0 + double(step)});
    if (step % 5 == 0) {
      const float vl = 11.0f / float(step);
      w.add_scalar("val/loss", vl, step, t0 + double(step) + 0.5);
      want["val/loss"].push_back({step, vl, t0 + double(step) + 0.5});
    }
    w.flush();
  }
  // Non-ASCII tag, a step past 2^32, a negative value.
  w.add_scalar("評価/損失", -1.5f, int64_t(1) << 33, t0 + 100);
  want["評価/損失"].push_back({int64_t(1) << 33, -1.5f, t0 + 100});
  w.flush();

  // The writer is still open: flushed steps must already be readable.
  auto got = read_with_tensorboard(dir, logdir);
  EXPECT_EQ(got["file_version"], 2.0);
  EXPECT_EQ(got["records"], 1 + 20 + 4 + 1);
  ASSERT_EQ(got["scalars"].size(), want.size()) << got.dump();
  for (const auto& [tag, series] : want.items()) {
    SCOPED_TRACE(tag);
    const auto& g = got["scalars"][tag];
    ASSERT_EQ(g.size(), series.size());
    for (size_t i = 0; i < series.size(); ++i) {
      EXPECT_EQ(g[i][0].get<int64_t>(), series[i][0].get<int64_t>());
      EXPECT_EQ(g[i][1].get<float>(), series[i][1].get<float>());  // simple_value is a float
      EXPECT_EQ(g[i][2].get<double>(), series[i][2].get<double>());
    }
  }

  // A second writer (a resumed run) adds a file; TensorBoard reads both.
  {
    TensorBoardWriter resumed(logdir);
    resumed.add_scalar("train/loss", 0.25f, 21, t0 + 21);
  }  // destructor flushes
  got = read_with_tensorboard(dir, logdir);
  ASSERT_EQ(got["scalars"]["train/loss"].size(), 21u) << got.dump();
  EXPECT_EQ(got["scalars"]["train/loss"][20][0], 21);
  EXPECT_EQ(got["scalars"]["train/loss"][20][1], 0.25);
}

}  // namespace
}  // namespace tsumugi::formats
