#include "formats/tensorboard.h"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "util/error.h"

namespace tsumugi::formats {

namespace {

// Byte-at-a-time table: event records are small (tens of bytes per scalar), so a faster
// slicing or SSE4.2 variant would not show up next to a training step.
constexpr std::array<uint32_t, 256> make_crc_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
    t[i] = c;
  }
  return t;
}
constexpr auto kCrcTable = make_crc_table();

// Protocol buffer wire format, just what Event needs.
void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(char(v | 0x80));
    v >>= 7;
  }
  out.push_back(char(v));
}
void put_key(std::string& out, int field, int wire_type) { put_varint(out, uint64_t(field) << 3 | uint64_t(wire_type)); }
void put_fixed(std::string& out, const void* p, size_t n) { out.append(static_cast<const char*>(p), n); }
void put_bytes(std::string& out, int field, std::string_view bytes) {
  put_key(out, field, 2);
  put_varint(out, bytes.size());
  out.append(bytes);
}

std::string event_header(double wall_time, int64_t step) {
  static_assert(std::endian::native == std::endian::little);
  std::string e;
  put_key(e, 1, 1);  // wall_time: double, fixed64
  put_fixed(e, &wall_time, 8);
  if (step != 0) {  // proto3 omits default values
    put_key(e, 2, 0);
    put_varint(e, uint64_t(step));  // int64: two's complement as a 10-byte varint when negative
  }
  return e;
}

double now_seconds() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

std::string hostname() {
  char buf[256] = {0};
  if (::gethostname(buf, sizeof buf - 1) != 0 || buf[0] == 0) return "localhost";
  return buf;
}

}  // namespace

uint32_t crc32c(std::string_view data, uint32_t crc) {
  crc = ~crc;
  for (unsigned char b : data) crc = kCrcTable[(crc ^ b) & 0xff] ^ (crc >> 8);
  return ~crc;
}

uint32_t masked_crc32c(std::string_view data) {
  // Masking keeps a CRC of data that itself embeds CRCs from being degenerate (TFRecord's rule).
  uint32_t c = crc32c(data);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

std::string tfrecord(std::string_view data) {
  std::string r;
  r.reserve(data.size() + 16);
  uint64_t len = data.size();
  put_fixed(r, &len, 8);
  uint32_t c = masked_crc32c(std::string_view(r.data(), 8));
  put_fixed(r, &c, 4);
  r.append(data);
  c = masked_crc32c(data);
  put_fixed(r, &c, 4);
  return r;
}

std::string event_file_version(double wall_time) {
  std::string e = event_header(wall_time, 0);
  put_bytes(e, 3, "brain.Event:2");
  return e;
}

std::string event_scalars(const std::vector<std::pair<std::string, float>>& values, int64_t step, double wall_time) {
  std::string summary;
  for (const auto& [tag, v] : values) {
    std::string value;
    put_bytes(value, 1, tag);
    put_key(value, 2, 5);  // simple_value: float, fixed32
    put_fixed(value, &v, 4);
    put_bytes(summary, 1, value);
  }
  std::string e = event_header(wall_time, step);
  put_bytes(e, 5, summary);
  return e;
}

TensorBoardWriter::TensorBoardWriter(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) fail("cannot create TensorBoard directory '{}': {}", dir, ec.message());
  const double t = now_seconds();
  const std::string base = fmt::format("{}/events.out.tfevents.{:010d}.{}", dir, int64_t(t), hostname());
  // O_EXCL, with a numeric suffix on collision, so two writers started in the same second
  // (say, a quick restart) never interleave records in one file.
  for (int k = 0; k < 1000 && !fp_; ++k) {
    path_ = k == 0 ? base : fmt::format("{}.{}", base, k);
    int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
      if (errno == EEXIST) continue;
      fail("cannot create TensorBoard event file '{}': {}", path_, errno_message(errno));
    }
    fp_ = ::fdopen(fd, "wb");
    if (!fp_) {
      int err = errno;
      ::close(fd);
      fail("cannot open TensorBoard event file '{}': {}", path_, errno_message(err));
    }
  }
  if (!fp_) fail("cannot create a TensorBoard event file in '{}': too many files named {}.*", dir, base);
  write_record(event_file_version(t));
  flush();
}

TensorBoardWriter::~TensorBoardWriter() {
  if (fp_) std::fclose(fp_);
}

void TensorBoardWriter::write_record(std::string_view event) {
  std::string r = tfrecord(event);
  if (std::fwrite(r.data(), 1, r.size(), fp_) != r.size())
    fail("write to TensorBoard event file '{}' failed: {}", path_, errno_message(errno));
}

void TensorBoardWriter::add_scalar(std::string_view tag, float value, int64_t step, double wall_time) {
  add_scalars({{std::string(tag), value}}, step, wall_time);
}

void TensorBoardWriter::add_scalars(const std::vector<std::pair<std::string, float>>& values, int64_t step, double wall_time) {
  if (values.empty()) return;
  write_record(event_scalars(values, step, wall_time < 0 ? now_seconds() : wall_time));
}

void TensorBoardWriter::flush() {
  if (std::fflush(fp_) != 0) fail("write to TensorBoard event file '{}' failed: {}", path_, errno_message(errno));
}

}  // namespace tsumugi::formats
