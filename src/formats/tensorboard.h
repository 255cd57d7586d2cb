#pragma once
// TensorBoard event files, written without TensorFlow or libprotobuf.
//
// A file `events.out.tfevents.<unix seconds>.<host>` is a TFRecord stream: each record is
//   uint64 LE length | uint32 LE masked CRC32C of those 8 bytes | data | uint32 LE masked CRC32C of data
// where masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8. Each record's data is a serialized
// `tensorflow.Event` (tensorflow/core/util/event.proto); the first carries
// file_version "brain.Event:2", the rest a Summary of `simple_value` scalars by tag:
//   Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
//   Summary { repeated Value value = 1; }   Value { string tag = 1; float simple_value = 2; }
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tsumugi::formats {

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as TFRecord uses.
uint32_t crc32c(std::string_view data, uint32_t crc = 0);
uint32_t masked_crc32c(std::string_view data);
// One TFRecord: the framing above around `data`.
std::string tfrecord(std::string_view data);

// Serialized Event messages (exposed for tests).
std::string event_file_version(double wall_time);
std::string event_scalars(const std::vector<std::pair<std::string, float>>& values, int64_t step, double wall_time);

// Appends scalars to a new event file in `dir` (created if missing). Records are buffered
// until flush(); call it after each logging step so a running TensorBoard sees the step.
// Resuming a run writes a new file beside the old ones; TensorBoard reads all of them.
class TensorBoardWriter {
 public:
  explicit TensorBoardWriter(const std::string& dir);
  ~TensorBoardWriter();  // flushes and closes
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  // wall_time in seconds since the epoch; a negative value means now.
  void add_scalar(std::string_view tag, float value, int64_t step, double wall_time = -1);
  // Several scalars of one step in one Event (smaller than one Event each).
  void add_scalars(const std::vector<std::pair<std::string, float>>& values, int64_t step, double wall_time = -1);
  // Pushes buffered records to the file (fflush; not fsync: a reader on the same host sees
  // them at once, and losing the last seconds of a crashed run's curves is acceptable).
  void flush();
  const std::string& path() const { return path_; }

 private:
  void write_record(std::string_view event);
  std::string path_;
  FILE* fp_ = nullptr;
};

}  // namespace tsumugi::formats
