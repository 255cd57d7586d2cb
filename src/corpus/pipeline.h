#pragma once
// A pipeline runs a profile's filters in order on one document and keeps per-filter
// counts (documents and characters in/out, time) that threads merge afterwards.
#include <memory>
#include <string>
#include <vector>

#include "corpus/filter.h"
#include "corpus/profile.h"

namespace tsumugi::corpus {

struct FilterStats {
  uint64_t docs_in = 0, docs_out = 0, chars_in = 0, chars_out = 0;
  double seconds = 0;
  void merge(const FilterStats& o) {
    docs_in += o.docs_in;
    docs_out += o.docs_out;
    chars_in += o.chars_in;
    chars_out += o.chars_out;
    seconds += o.seconds;
  }
};

class Pipeline {
 public:
  explicit Pipeline(const Profile& profile);
  size_t size() const { return filters_.size(); }
  const Filter& filter(size_t i) const { return *filters_[i]; }
  const std::string& filter_type(size_t i) const { return types_[i]; }

  // Runs every filter. Returns -1 if the document is kept, else the index of the filter
  // that rejected it (with `reason` set). stats must have size() entries.
  int run(Document& doc, std::string& reason, std::vector<FilterStats>& stats) const;

 private:
  std::vector<std::unique_ptr<Filter>> filters_;
  std::vector<std::string> types_;
};

}  // namespace tsumugi::corpus
