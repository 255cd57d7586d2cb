#pragma once
// Streaming line readers and writers for plain, gzip and zstd files (chosen by the
// file name's extension), and atomic file output (temporary name, renamed on commit).
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace tsumugi {

enum class Compression { none, gzip, zstd };

// Compression implied by a path's extension (.gz, .zst/.zstd), else none.
Compression compression_for_path(std::string_view path);

// Reads a byte stream, decompressing as needed. Truncated or corrupt compressed data
// raises tsumugi::Error naming the file.
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  // Returns bytes read (0 at end of stream).
  virtual size_t read(char* buf, size_t cap) = 0;
  // Bytes of the underlying (possibly compressed) file consumed so far.
  virtual uint64_t raw_bytes_consumed() const = 0;
};

// Opens `path` ("-" is stdin). Throws Error with the path and reason if it cannot be opened.
// Compression is chosen by extension; for stdin it is sniffed from the magic bytes.
std::unique_ptr<ByteSource> open_source(const std::string& path);

// Splits a byte stream into lines of any length. The '\n' is not included; a final
// line without '\n' is returned too (and noted).
class LineReader {
 public:
  explicit LineReader(const std::string& path);
  // Returns false at end of input. The view stays valid until the next call.
  bool next(std::string_view& line);
  uint64_t line_number() const { return line_no_; }
  const std::string& path() const { return path_; }
  uint64_t raw_bytes_consumed() const { return src_->raw_bytes_consumed(); }
  bool missing_final_newline() const { return missing_final_newline_; }

 private:
  bool fill();
  std::string path_;
  std::unique_ptr<ByteSource> src_;
  std::vector<char> buf_;
  size_t begin_ = 0, end_ = 0, scan_ = 0;
  bool eof_ = false;
  bool missing_final_newline_ = false;
  uint64_t line_no_ = 0;
};

// Writes a file through a temporary name in the same directory and renames it into place
// on commit(); destroyed without commit, the temporary is removed and nothing is left
// half-written. Compression follows the final path's extension. "-" writes to stdout.
class OutputFile {
 public:
  explicit OutputFile(std::string path, int zstd_level = 3);
  ~OutputFile();
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;

  void write(std::string_view bytes);
  // Appends data already compressed into complete frames of this file's format
  // (zstd frames / gzip members; both formats allow concatenation), so callers can
  // compress on worker threads. `uncompressed` counts toward bytes_written().
  void write_frames(std::string_view frames, uint64_t uncompressed);
  Compression compression() const { return comp_; }
  void commit();
  // Uncompressed bytes written so far.
  uint64_t bytes_written() const { return written_; }
  const std::string& path() const { return path_; }

 private:
  void flush_compressed(bool end);
  void raw_write(const char* p, size_t n);
  std::string path_, tmp_;
  Compression comp_;
  FILE* fp_ = nullptr;
  void* zstd_ = nullptr;   // ZSTD_CCtx*
  void* zlib_ = nullptr;   // z_stream*
  std::string pending_;    // uncompressed bytes waiting to be compressed/written
  std::vector<char> out_buf_;
  uint64_t written_ = 0;
  bool committed_ = false;
  bool is_stdout_ = false;
  bool stream_open_ = false;  // a streaming frame/member has started and is not closed
  bool framed_ = false;       // whole frames were appended by write_frames
};

// Compresses `data` as one complete frame (zstd) or member (gzip); `none` returns it as is.
std::string compress_frame(Compression c, std::string_view data, int zstd_level = 3);

// Writes a whole file atomically.
void write_file_atomic(const std::string& path, std::string_view content);
std::string read_file(const std::string& path);

// Expands shell-style globs; a pattern matching nothing is an error naming it.
// Plain paths are returned as they are (their existence is checked on open).
std::vector<std::string> expand_inputs(const std::vector<std::string>& patterns);

uint64_t file_size_or_zero(const std::string& path);

}  // namespace tsumugi
