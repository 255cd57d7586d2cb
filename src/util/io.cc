#include "util/io.h"

#include <fcntl.h>
#include <glob.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "util/error.h"

namespace tsumugi {

namespace {
bool ends_with(std::string_view s, std::string_view suf) {
  return s.size() >= suf.size() && s.substr(s.size() - suf.size()) == suf;
}

class FdSource : public ByteSource {
 public:
  FdSource(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  ~FdSource() override {
    if (fd_ > 0) ::close(fd_);
  }
  size_t read(char* buf, size_t cap) override {
    if (!pushback_.empty()) {
      size_t n = std::min(cap, pushback_.size());
      std::memcpy(buf, pushback_.data(), n);
      pushback_.erase(0, n);
      return n;
    }
    for (;;) {
      ssize_t n = ::read(fd_, buf, cap);
      if (n >= 0) {
        consumed_ += uint64_t(n);
        return size_t(n);
      }
      if (errno == EINTR) continue;
      throw Error(fmt::format("{}: read failed: {}", path_, errno_message(errno)));
    }
  }
  uint64_t raw_bytes_consumed() const override { return consumed_; }
  // Lets the stdin sniffer put the magic bytes back.
  void unread(std::string bytes) { pushback_ = std::move(bytes) + pushback_; }

 private:
  int fd_;
  std::string path_;
  uint64_t consumed_ = 0;
  std::string pushback_;
};

class GzipSource : public ByteSource {
 public:
  GzipSource(std::unique_ptr<FdSource> raw, std::string path) : raw_(std::move(raw)), path_(std::move(path)) {
    std::memset(&zs_, 0, sizeof zs_);
    if (inflateInit2(&zs_, 15 + 32) != Z_OK) throw Error(path_ + ": zlib init failed");
    in_.resize(1 << 16);
  }
  ~GzipSource() override { inflateEnd(&zs_); }
  size_t read(char* buf, size_t cap) override {
    if (done_) return 0;
    zs_.next_out = reinterpret_cast<Bytef*>(buf);
    zs_.avail_out = unsigned(cap);
    while (zs_.avail_out == cap) {
      if (zs_.avail_in == 0) {
        size_t n = raw_->read(in_.data(), in_.size());
        if (n == 0) {
          if (in_stream_) throw Error(path_ + ": truncated gzip data (unexpected end of file)");
          done_ = true;
          break;
        }
        zs_.next_in = reinterpret_cast<Bytef*>(in_.data());
        zs_.avail_in = unsigned(n);
      }
      in_stream_ = true;
      int rc = inflate(&zs_, Z_NO_FLUSH);
      if (rc == Z_STREAM_END) {
        // Concatenated gzip members are one stream, as gzip(1) treats them.
        in_stream_ = false;
        inflateReset(&zs_);
      } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
        throw Error(fmt::format("{}: corrupt gzip data: {}", path_, zs_.msg ? zs_.msg : "inflate error"));
      }
    }
    return cap - zs_.avail_out;
  }
  uint64_t raw_bytes_consumed() const override { return raw_->raw_bytes_consumed(); }

 private:
  std::unique_ptr<FdSource> raw_;
  std::string path_;
  z_stream zs_;
  std::vector<char> in_;
  bool in_stream_ = false, done_ = false;
};

class ZstdSource : public ByteSource {
 public:
  ZstdSource(std::unique_ptr<FdSource> raw, std::string path) : raw_(std::move(raw)), path_(std::move(path)) {
    ds_ = ZSTD_createDStream();
    in_.resize(ZSTD_DStreamInSize());
  }
  ~ZstdSource() override { ZSTD_freeDStream(ds_); }
  size_t read(char* buf, size_t cap) override {
    ZSTD_outBuffer out{buf, cap, 0};
    while (out.pos == 0) {
      if (in_pos_ == in_len_) {
        in_len_ = raw_->read(in_.data(), in_.size());
        in_pos_ = 0;
        if (in_len_ == 0) {
          if (last_ != 0) throw Error(path_ + ": truncated zstd data (unexpected end of file)");
          return 0;
        }
      }
      ZSTD_inBuffer in{in_.data(), in_len_, in_pos_};
      last_ = ZSTD_decompressStream(ds_, &out, &in);
      in_pos_ = in.pos;
      if (ZSTD_isError(last_)) throw Error(fmt::format("{}: corrupt zstd data: {}", path_, ZSTD_getErrorName(last_)));
    }
    return out.pos;
  }
  uint64_t raw_bytes_consumed() const override { return raw_->raw_bytes_consumed(); }

 private:
  std::unique_ptr<FdSource> raw_;
  std::string path_;
  ZSTD_DStream* ds_;
  std::vector<char> in_;
  size_t in_pos_ = 0, in_len_ = 0;
  size_t last_ = 0;
};
}  // namespace

Compression compression_for_path(std::string_view path) {
  if (ends_with(path, ".gz")) return Compression::gzip;
  if (ends_with(path, ".zst") || ends_with(path, ".zstd")) return Compression::zstd;
  return Compression::none;
}

std::unique_ptr<ByteSource> open_source(const std::string& path) {
  int fd;
  Compression comp;
  if (path == "-") {
    fd = 0;
    comp = Compression::none;
  } else {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw Error(fmt::format("cannot open input '{}': {}", path, errno_message(errno)));
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
      ::close(fd);
      throw Error(fmt::format("cannot read input '{}': it is a directory", path));
    }
    comp = compression_for_path(path);
  }
  auto raw = std::make_unique<FdSource>(fd, path);
  if (path == "-") {
    // Sniff gzip (1f 8b) and zstd (28 b5 2f fd) magic on stdin.
    char magic[4];
    size_t got = 0;
    while (got < 4) {
      size_t n = raw->read(magic + got, 4 - got);
      if (n == 0) break;
      got += n;
    }
    if (got >= 2 && uint8_t(magic[0]) == 0x1f && uint8_t(magic[1]) == 0x8b) comp = Compression::gzip;
    if (got == 4 && std::memcmp(magic, "\x28\xb5\x2f\xfd", 4) == 0) comp = Compression::zstd;
    raw->unread(std::string(magic, got));
  }
  switch (comp) {
    case Compression::gzip: return std::make_unique<GzipSource>(std::move(raw), path);
    case Compression::zstd: return std::make_unique<ZstdSource>(std::move(raw), path);
    default: return raw;
  }
}

LineReader::LineReader(const std::string& path) : path_(path), src_(open_source(path)) { buf_.resize(1 << 20); }

bool LineReader::fill() {
  if (eof_) return false;
  if (begin_ > 0) {
    std::memmove(buf_.data(), buf_.data() + begin_, end_ - begin_);
    end_ -= begin_;
    scan_ -= begin_;
    begin_ = 0;
  }
  // Grow geometrically so very long lines stay linear-time.
  if (end_ == buf_.size()) buf_.resize(buf_.size() * 2);
  size_t n = src_->read(buf_.data() + end_, buf_.size() - end_);
  if (n == 0) {
    eof_ = true;
    return false;
  }
  end_ += n;
  return true;
}

bool LineReader::next(std::string_view& line) {
  for (;;) {
    const char* p = static_cast<const char*>(std::memchr(buf_.data() + scan_, '\n', end_ - scan_));
    if (p) {
      size_t pos = size_t(p - buf_.data());
      line = std::string_view(buf_.data() + begin_, pos - begin_);
      begin_ = scan_ = pos + 1;
      ++line_no_;
      return true;
    }
    scan_ = end_;
    if (!fill()) {
      if (end_ > begin_) {
        line = std::string_view(buf_.data() + begin_, end_ - begin_);
        begin_ = scan_ = end_;
        ++line_no_;
        missing_final_newline_ = true;
        return true;
      }
      return false;
    }
  }
}

OutputFile::OutputFile(std::string path, int zstd_level) : path_(std::move(path)) {
  comp_ = compression_for_path(path_);
  if (path_ == "-") {
    is_stdout_ = true;
    fp_ = stdout;
  } else {
    std::filesystem::path p(path_);
    tmp_ = (p.parent_path() / ("." + p.filename().string() + ".tmp." + std::to_string(::getpid()))).string();
    fp_ = std::fopen(tmp_.c_str(), "wb");
    if (!fp_) throw Error(fmt::format("cannot write '{}': {}", tmp_, errno_message(errno)));
  }
  if (comp_ == Compression::zstd) {
    auto* cctx = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, zstd_level);
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
    zstd_ = cctx;
    out_buf_.resize(ZSTD_CStreamOutSize());
  } else if (comp_ == Compression::gzip) {
    auto* zs = new z_stream{};
    if (deflateInit2(zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
      delete zs;
      throw Error(path_ + ": zlib init failed");
    }
    zlib_ = zs;
    out_buf_.resize(1 << 16);
  }
}

OutputFile::~OutputFile() {
  if (zstd_) ZSTD_freeCCtx(static_cast<ZSTD_CCtx*>(zstd_));
  if (zlib_) {
    deflateEnd(static_cast<z_stream*>(zlib_));
    delete static_cast<z_stream*>(zlib_);
  }
  if (!committed_ && !is_stdout_) {
    if (fp_) std::fclose(fp_);
    ::unlink(tmp_.c_str());
  }
}

void OutputFile::raw_write(const char* p, size_t n) {
  if (n && std::fwrite(p, 1, n, fp_) != n)
    throw Error(fmt::format("write to '{}' failed: {}", path_, errno_message(errno)));
}

void OutputFile::write(std::string_view bytes) {
  written_ += bytes.size();
  if (comp_ == Compression::none) {
    raw_write(bytes.data(), bytes.size());
    return;
  }
  pending_.append(bytes);
  if (pending_.size() >= (1 << 17)) flush_compressed(false);
}

void OutputFile::write_frames(std::string_view frames, uint64_t uncompressed) {
  // Close any streaming frame first: frames must follow each other whole.
  if (stream_open_ || !pending_.empty()) flush_compressed(true);
  raw_write(frames.data(), frames.size());
  written_ += uncompressed;
  framed_ = true;
}

std::string compress_frame(Compression c, std::string_view data, int zstd_level) {
  if (c == Compression::none) return std::string(data);
  std::string out;
  if (c == Compression::zstd) {
    // One context per thread, freed when the thread ends.
    struct CCtxFree {
      void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
    };
    thread_local std::unique_ptr<ZSTD_CCtx, CCtxFree> ctx(ZSTD_createCCtx());
    ZSTD_CCtx* cctx = ctx.get();
    ZSTD_CCtx_reset(cctx, ZSTD_reset_session_and_parameters);
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, zstd_level);
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
    out.resize(ZSTD_compressBound(data.size()));
    size_t n = ZSTD_compress2(cctx, out.data(), out.size(), data.data(), data.size());
    if (ZSTD_isError(n)) fail("zstd: {}", ZSTD_getErrorName(n));
    out.resize(n);
    return out;
  }
  z_stream zs{};
  if (deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) fail("zlib init failed");
  out.resize(deflateBound(&zs, uLong(data.size())) + 64);
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = uInt(data.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = uInt(out.size());
  int rc = deflate(&zs, Z_FINISH);
  deflateEnd(&zs);
  if (rc != Z_STREAM_END) fail("gzip compression failed");
  out.resize(zs.total_out);
  return out;
}

// Compresses pending_ into the current frame; `end` closes the frame (zstd) or member
// (gzip) so another may follow.
void OutputFile::flush_compressed(bool end) {
  stream_open_ = true;
  if (comp_ == Compression::zstd) {
    auto* cctx = static_cast<ZSTD_CCtx*>(zstd_);
    ZSTD_inBuffer in{pending_.data(), pending_.size(), 0};
    for (;;) {
      ZSTD_outBuffer out{out_buf_.data(), out_buf_.size(), 0};
      size_t rem = ZSTD_compressStream2(cctx, &out, &in, end ? ZSTD_e_end : ZSTD_e_continue);
      if (ZSTD_isError(rem)) throw Error(fmt::format("{}: zstd: {}", path_, ZSTD_getErrorName(rem)));
      raw_write(out_buf_.data(), out.pos);
      if (end ? rem == 0 : in.pos == in.size) break;
    }
  } else {
    auto* zs = static_cast<z_stream*>(zlib_);
    zs->next_in = reinterpret_cast<Bytef*>(pending_.data());
    zs->avail_in = unsigned(pending_.size());
    for (;;) {
      zs->next_out = reinterpret_cast<Bytef*>(out_buf_.data());
      zs->avail_out = unsigned(out_buf_.size());
      int rc = deflate(zs, end ? Z_FINISH : Z_NO_FLUSH);
      if (rc == Z_STREAM_ERROR) throw Error(path_ + ": deflate failed");
      raw_write(out_buf_.data(), out_buf_.size() - zs->avail_out);
      if (end ? rc == Z_STREAM_END : (zs->avail_in == 0 && zs->avail_out != 0)) break;
    }
    if (end) deflateReset(zs);
  }
  pending_.clear();
  if (end) stream_open_ = false;
}

void OutputFile::commit() {
  if (committed_) return;
  // Close the streaming frame unless everything went out as whole frames already.
  if (comp_ != Compression::none && (stream_open_ || !pending_.empty() || !framed_)) flush_compressed(true);
  if (is_stdout_) {
    std::fflush(fp_);
    committed_ = true;
    return;
  }
  if (std::fflush(fp_) != 0 || ::fsync(fileno(fp_)) != 0) {
    throw Error(fmt::format("write to '{}' failed: {}", path_, errno_message(errno)));
  }
  std::fclose(fp_);
  fp_ = nullptr;
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0)
    throw Error(fmt::format("cannot rename '{}' to '{}': {}", tmp_, path_, errno_message(errno)));
  committed_ = true;
}

void write_file_atomic(const std::string& path, std::string_view content) {
  OutputFile f(path);
  f.write(content);
  f.commit();
}

std::string read_file(const std::string& path) {
  auto src = open_source(path);
  std::string out;
  char buf[65536];
  for (size_t n; (n = src->read(buf, sizeof buf)) > 0;) out.append(buf, n);
  return out;
}

std::vector<std::string> expand_inputs(const std::vector<std::string>& patterns) {
  std::vector<std::string> out;
  for (const auto& pat : patterns) {
    if (pat.find_first_of("*?[") == std::string::npos) {
      out.push_back(pat);
      continue;
    }
    glob_t g{};
    int rc = ::glob(pat.c_str(), 0, nullptr, &g);
    if (rc == GLOB_NOMATCH) {
      globfree(&g);
      throw Error(fmt::format("input pattern '{}' matches no file", pat));
    }
    if (rc != 0) {
      globfree(&g);
      throw Error(fmt::format("cannot expand input pattern '{}'", pat));
    }
    for (size_t i = 0; i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);
    globfree(&g);
  }
  return out;
}

uint64_t file_size_or_zero(const std::string& path) {
  struct stat st;
  if (path == "-" || ::stat(path.c_str(), &st) != 0) return 0;
  return uint64_t(st.st_size);
}

}  // namespace tsumugi
