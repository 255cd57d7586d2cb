#pragma once
// A corpus document: the text being cleaned plus every other JSON field, carried
// through untouched (as minified JSON) so metadata survives the pipeline.
#include <cstdint>
#include <string>
#include <string_view>

namespace tsumugi::corpus {

struct Document {
  std::string text;
  std::string fields_before;  // `"k":v,` ... for fields preceding the text field
  std::string fields_after;   // `,"k":v` ... for fields following it
  std::string id;             // the id field's value, or "file:line" when absent
  uint64_t order = 0;         // global position (file index, line): decides which duplicate survives
  std::string_view file;      // input path (owned by the job)
  uint64_t line = 0;
};

// Global order key: inputs are numbered in the order given, lines from 1.
inline uint64_t make_order(uint32_t file_index, uint64_t line) { return (uint64_t(file_index) << 40) | line; }
inline uint32_t order_file(uint64_t order) { return uint32_t(order >> 40); }
inline uint64_t order_line(uint64_t order) { return order & ((uint64_t(1) << 40) - 1); }

}  // namespace tsumugi::corpus
