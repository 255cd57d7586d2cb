#include "index/dedup_exact.h"

#include <nlohmann/json.hpp>

#include "util/error.h"
#include "util/io.h"

namespace tsumugi::index {

DedupExactStats dedup_exact(const DedupExactOptions& opt) {
  if (opt.output.empty()) fail("no output file (-o OUT.jsonl)");
  Index index = Index::open(opt.index_dir);
  if (!index.accepts_text())
    fail("{}: built from token ids without a tokenizer, so its documents cannot be written back as text; "
         "rebuild it with --tokenizer",
         opt.index_dir);
  auto spans = duplicate_spans(index, opt.min_tokens);
  const bool bytes = index.text_kind() == "bytes";
  DedupExactStats st;
  OutputFile out(opt.output);
  std::vector<int32_t> kept;
  for (uint64_t d = 0; d < index.documents(); ++d) {
    auto toks = index.document_tokens(d);
    ++st.documents;
    st.tokens += toks.size();
    std::vector<bool> removed(toks.size(), false);
    for (auto [a, b] : spans[d]) {
      ++st.removed_spans;
      for (uint64_t t = a; t < b && t < toks.size(); ++t) removed[t] = true;
    }
    if (bytes) {
      // A UTF-8 continuation byte follows its lead byte, so no character is cut in half.
      for (size_t t = 1; t < toks.size(); ++t)
        if ((toks[t] & 0xC0) == 0x80) removed[t] = removed[t - 1];
    }
    kept.clear();
    for (size_t t = 0; t < toks.size(); ++t)
      if (!removed[t]) kept.push_back(toks[t]);
    st.removed_tokens += toks.size() - kept.size();
    if (kept.size() != toks.size()) ++st.changed;
    if (kept.empty()) {
      ++st.emptied;
      if (!opt.keep_empty) continue;
    }
    nlohmann::json j = nlohmann::json::parse(index.document_metadata(d));
    j["text"] = index.detokenize(kept);
    out.write(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
    ++st.written;
  }
  out.commit();
  return st;
}

}  // namespace tsumugi::index
