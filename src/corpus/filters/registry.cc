#include "corpus/filters/groups.h"

namespace tsumugi::corpus {

const std::vector<FilterSpec>& filter_specs() {
  static const std::vector<FilterSpec> specs = [] {
    std::vector<FilterSpec> s;
    add_general_filters(s);
    add_japanese_filters(s);
    add_english_filters(s);
    add_code_filters(s);
    return s;
  }();
  return specs;
}

}  // namespace tsumugi::corpus
