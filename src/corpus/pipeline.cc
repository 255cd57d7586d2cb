#include "corpus/pipeline.h"

#include <chrono>

#include "text/utf8.h"
#include "util/error.h"

namespace tsumugi::corpus {

Pipeline::Pipeline(const Profile& profile) {
  for (size_t i = 0; i < profile.filters.size(); ++i) {
    try {
      filters_.push_back(make_filter(profile.filters[i]));
    } catch (const Error& e) {
      fail("profile '{}', filter #{}: {}", profile.name, i + 1, e.what());
    }
    types_.push_back(profile.filters[i]["type"].get<std::string>());
  }
  for (size_t i = 0; i < filters_.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (filters_[i]->name() == filters_[j]->name())
        fail("profile '{}': two filters are named '{}'; give one a distinct `name`", profile.name, filters_[i]->name());
}

int Pipeline::run(Document& doc, std::string& reason, std::vector<FilterStats>& stats) const {
  using clock = std::chrono::steady_clock;
  uint64_t chars = text::count_codepoints(doc.text);
  for (size_t i = 0; i < filters_.size(); ++i) {
    auto& st = stats[i];
    st.docs_in++;
    st.chars_in += chars;
    size_t bytes_before = doc.text.size();
    auto t0 = clock::now();
    bool keep = filters_[i]->apply(doc, reason);
    st.seconds += std::chrono::duration<double>(clock::now() - t0).count();
    if (!keep) return int(i);
    // Only text rewriters change the size; recounting is needed only then.
    if (doc.text.size() != bytes_before) chars = text::count_codepoints(doc.text);
    st.docs_out++;
    st.chars_out += chars;
  }
  return -1;
}

}  // namespace tsumugi::corpus
