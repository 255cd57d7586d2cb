#include "corpus/batches.h"

#include <fmt/format.h>

#include "text/utf8.h"
#include "util/base64.h"
#include "util/error.h"
#include "util/io.h"
#include "util/log.h"

namespace tsumugi::corpus {


void read_line_batches(const std::vector<std::string>& files, const std::function<bool(size_t)>& take,
                       size_t batch_bytes, const std::function<void(LineBatch&&)>& sink, ReadCounts& counts) {
  for (size_t fi = 0; fi < files.size(); ++fi) {
    if (!take(fi)) continue;
    counts.input_bytes += file_size_or_zero(files[fi]);
    LineReader reader(files[fi]);
    LineBatch batch;
    batch.file_index = uint32_t(fi);
    batch.first_line = 1;
    uint64_t last_raw = 0;
    auto flush = [&](std::string read_error) {
      uint64_t raw = reader.raw_bytes_consumed();
      batch.raw_bytes = raw - last_raw;
      last_raw = raw;
      batch.read_error = std::move(read_error);
      uint64_t next_first = batch.first_line + batch.ends.size();
      sink(std::move(batch));
      batch = LineBatch{};
      batch.file_index = uint32_t(fi);
      batch.first_line = next_first;
    };
    std::string read_error;
    std::string_view line;
    for (;;) {
      // Only a failure of the input itself counts as a broken-off file.
      try {
        if (!reader.next(line)) break;
      } catch (const Error& e) {
        counts.files_truncated++;
        log::warn("{} (after line {}); the records before it are kept", e.what(), reader.line_number());
        read_error = e.what();
        break;
      }
      if (line.size() >= UINT32_MAX) throw InputError(files[fi], reader.line_number(), "line longer than 4 GiB");
      if (!batch.ends.empty() && batch.data.size() + line.size() >= UINT32_MAX) flush({});
      batch.data.append(line);
      batch.ends.push_back(uint32_t(batch.data.size()));
      counts.jsonl_bytes += line.size() + 1;
      if (batch.data.size() >= batch_bytes) flush({});
    }
    if (!batch.ends.empty() || !read_error.empty()) flush(std::move(read_error));
    counts.lines += reader.line_number();
    if (reader.line_number() == 0 && reader.raw_bytes_consumed() == 0) {
      counts.files_empty++;
      log::warn("{}: empty input", files[fi]);
    }
    if (reader.missing_final_newline()) counts.files_missing_final_newline++;
  }
}

bool is_blank_line(std::string_view line) { return line.find_first_not_of(" \t\r") == std::string_view::npos; }

std::unique_ptr<DocumentParser> ParserPool::borrow() {
  {
    std::lock_guard lock(mu_);
    if (!free_.empty()) {
      auto p = std::move(free_.back());
      free_.pop_back();
      return p;
    }
  }
  return std::make_unique<DocumentParser>(text_field_, id_field_);
}

void ParserPool::give_back(std::unique_ptr<DocumentParser> p) {
  std::lock_guard lock(mu_);
  free_.push_back(std::move(p));
}

void append_error_record(std::string& out, std::string_view file, uint64_t line, std::string_view error,
                         const std::string_view* raw) {
  out += "{\"file\":";
  append_json_string(out, file);
  out += fmt::format(",\"line\":{},\"error\":", line);
  append_json_string(out, error);
  if (raw) {
    if (text::is_valid_utf8(*raw)) {
      out += ",\"raw\":";
      append_json_string(out, *raw);
    } else {
      out += ",\"raw_base64\":\"";
      out += base64_encode(*raw);
      out += '"';
    }
  }
  out += "}\n";
}

std::string error_kind(const std::string& e) {
  auto colon = e.find(':');
  return colon == std::string::npos ? e : e.substr(0, colon);
}

}  // namespace tsumugi::corpus
