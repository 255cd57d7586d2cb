#pragma once
// What every JSONL-consuming job shares (corpus clean, tokenize): reading inputs as
// batches of lines, borrowing per-thread parsers, and writing error records.
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "corpus/jsonl.h"

namespace tsumugi::corpus {

// Lines of one input file handed to a worker as a unit.
struct LineBatch {
  uint32_t file_index = 0;
  uint64_t first_line = 0;      // line number of the first line (from 1)
  std::string data;             // the lines, back to back, without '\n'
  std::vector<uint32_t> ends;   // end offset of each line in data
  std::string read_error;       // set when the input broke off after these lines
  uint64_t raw_bytes = 0;       // input file bytes this batch accounts for (progress)

  size_t size() const { return ends.size(); }
  std::string_view line(size_t i) const {
    uint32_t begin = i == 0 ? 0 : ends[i - 1];
    return std::string_view(data.data() + begin, ends[i] - begin);
  }
  uint64_t line_number(size_t i) const { return first_line + i; }
};

struct ReadCounts {
  uint64_t lines = 0, jsonl_bytes = 0, input_bytes = 0;
  uint64_t files_empty = 0, files_missing_final_newline = 0, files_truncated = 0;
};

// Streams files[i] for every i with take(i), in order, cutting their lines into batches of
// about batch_bytes and passing each to sink. Input that breaks off (truncated or corrupt
// compressed data) ends its file with a batch carrying read_error and is counted; the lines
// before the break are delivered. Any other error (including one thrown by sink) propagates.
void read_line_batches(const std::vector<std::string>& files, const std::function<bool(size_t)>& take,
                       size_t batch_bytes, const std::function<void(LineBatch&&)>& sink, ReadCounts& counts);

// Lines holding only spaces, tabs or a CR are not records.
bool is_blank_line(std::string_view line);

// DocumentParser is not thread-safe; tasks borrow one for a batch and give it back.
class ParserPool {
 public:
  ParserPool(std::string text_field, std::string id_field)
      : text_field_(std::move(text_field)), id_field_(std::move(id_field)) {}
  std::unique_ptr<DocumentParser> borrow();
  void give_back(std::unique_ptr<DocumentParser> p);

 private:
  std::string text_field_, id_field_;
  std::mutex mu_;
  std::vector<std::unique_ptr<DocumentParser>> free_;
};

// One line of an errors.jsonl file: file, line, error, and the raw record so nothing is lost
// (`raw`, or `raw_base64` when the bytes are not UTF-8). raw may be null.
void append_error_record(std::string& out, std::string_view file, uint64_t line, std::string_view error,
                         const std::string_view* raw);
// The part of an error message before its first ':', used to count errors by kind.
std::string error_kind(const std::string& error);
inline constexpr const char* kBrokenInputKind = "input broke off (truncated or corrupt compressed data)";

}  // namespace tsumugi::corpus
