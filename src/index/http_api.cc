#include "index/http_api.h"

#include <algorithm>
#include <charconv>

#include "text/utf8.h"
#include "util/error.h"

namespace tsumugi::index {

namespace {

std::vector<int32_t> parse_ids(std::string_view s) {
  std::vector<int32_t> ids;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == ',' || s[i] == '\t')) ++i;
    if (i >= s.size()) break;
    size_t j = i;
    while (j < s.size() && s[j] != ' ' && s[j] != ',' && s[j] != '\t') ++j;
    int64_t v = 0;
    auto [p, ec] = std::from_chars(s.data() + i, s.data() + j, v);
    if (ec != std::errc() || p != s.data() + j)
      fail("'{}' is not a token id (at character {} of the query)", std::string(s.substr(i, j - i)), i + 1);
    if (v < 0 || v > INT32_MAX) fail("token id {} is out of range", v);
    ids.push_back(int32_t(v));
    i = j;
  }
  return ids;
}

uint64_t get_u64(const Params& p, const std::string& key, uint64_t def) {
  auto it = p.find(key);
  if (it == p.end() || it->second.empty()) return def;
  uint64_t v = 0;
  auto [q, ec] = std::from_chars(it->second.data(), it->second.data() + it->second.size(), v);
  if (ec != std::errc() || q != it->second.data() + it->second.size())
    fail("parameter '{}' must be a non-negative integer, got '{}'", key, it->second);
  return v;
}

bool get_bool(const Params& p, const std::string& key) {
  auto it = p.find(key);
  return it != p.end() && (it->second == "1" || it->second == "true" || it->second == "yes");
}

const std::string& get_str(const Params& p, const std::string& key) {
  auto it = p.find(key);
  if (it == p.end()) fail("missing parameter '{}'", key);
  return it->second;
}

std::vector<int32_t> single_term(const Index& index, std::string_view query, bool ids) {
  Cnf cnf = parse_query(index, query, ids);
  if (cnf.size() != 1 || cnf[0].size() != 1) fail("this query takes one sequence, not AND/OR terms");
  return cnf[0][0];
}

}  // namespace

Cnf parse_query(const Index& index, std::string_view query, bool ids) {
  if (query.empty()) fail("empty query");
  Cnf cnf;
  for (const auto& clause : parse_cnf_text(query)) {
    cnf.emplace_back();
    for (const auto& term : clause) {
      auto toks = ids ? parse_ids(term) : index.tokenize(term);
      if (toks.empty()) fail("query term '{}' has no tokens", term);
      index.check_query(toks);
      cnf.back().push_back(std::move(toks));
    }
  }
  return cnf;
}

std::string dump_json(const nlohmann::json& j, int indent) {
  return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

nlohmann::json info_json(const Index& index) {
  return {{"index", index.dir()},           {"text", index.text_kind()},
          {"tokens", index.tokens()},       {"documents", index.documents()},
          {"shards", index.shard_count()},  {"vocab_size", index.vocab_size()},
          {"token_width", index.token_width()}};
}

nlohmann::json count_json(const Index& index, std::string_view query, bool ids) {
  Cnf cnf = parse_query(index, query, ids);
  if (cnf.size() == 1 && cnf[0].size() == 1)
    return {{"query", query}, {"tokens", cnf[0][0]}, {"count", index.count(cnf[0][0])}};
  return {{"query", query}, {"clauses", cnf}, {"documents", index.count_documents(cnf)}};
}

nlohmann::json hit_json(const Index& index, const DocHit& h) {
  nlohmann::json meta;
  try {
    meta = nlohmann::json::parse(h.metadata);
  } catch (const nlohmann::json::exception&) {
    meta = h.metadata;
  }
  std::span<const int32_t> before(h.before), after(h.after);
  if (index.text_kind() == "bytes") {
    // Snippet edges fall anywhere: drop the partial characters there.
    while (!before.empty() && (before.front() & 0xC0) == 0x80) before = before.subspan(1);
    size_t end = after.size(), k = end;
    while (k > 0 && (after[k - 1] & 0xC0) == 0x80) --k;  // k-1: the last character's lead byte
    if (k > 0 && after[k - 1] >= 0xC0) {
      int need = after[k - 1] >= 0xF0 ? 4 : after[k - 1] >= 0xE0 ? 3 : 2;
      if (end - (k - 1) < size_t(need)) after = after.first(k - 1);
    }
  }
  return {{"doc", h.doc},
          {"position", h.position},
          {"doc_tokens", h.doc_tokens},
          {"metadata", meta},
          {"before", index.detokenize(before)},
          {"match", index.detokenize(h.match)},
          {"after", index.detokenize(after)}};
}

nlohmann::json docs_json(const Index& index, std::string_view query, bool ids, const Index::DocsOptions& o) {
  Cnf cnf = parse_query(index, query, ids);
  DocsResult r = index.docs(cnf, o);
  nlohmann::json hits = nlohmann::json::array();
  for (const auto& h : r.hits) hits.push_back(hit_json(index, h));
  return {{"query", query},       {"occurrences", r.occurrences}, {"documents", r.documents},
          {"sampled", r.sampled}, {"offset", o.offset},          {"limit", o.limit},
          {"hits", hits}};
}

nlohmann::json next_json(const Index& index, std::string_view query, bool ids, size_t top) {
  auto q = single_term(index, query, ids);
  NextTokens nt = index.next(q);
  auto toks = nt.tokens;
  std::stable_sort(toks.begin(), toks.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  if (toks.size() > top) toks.resize(top);
  const uint64_t with_next = nt.count - nt.at_doc_end;
  nlohmann::json next = nlohmann::json::array();
  for (auto [t, c] : toks) {
    int32_t one[1] = {t};
    next.push_back({{"token", t},
                    {"text", index.detokenize(one)},
                    {"count", c},
                    {"prob", with_next ? double(c) / double(with_next) : 0.0}});
  }
  return {{"query", query}, {"tokens", q}, {"count", nt.count}, {"at_doc_end", nt.at_doc_end}, {"next", next}};
}

nlohmann::json prob_json(const Index& index, std::string_view query, bool ids) {
  auto q = single_term(index, query, ids);
  NgramProb ng = index.prob(q);
  std::span<const int32_t> all(q);
  InfGramProb ig = index.infgram_prob(all.first(q.size() - 1), q.back());
  auto suffix = all.first(q.size() - 1).last(ig.suffix_tokens);
  return {{"query", query},
          {"tokens", q},
          {"ngram", {{"prefix_count", ng.prefix_count}, {"full_count", ng.full_count}, {"prob", ng.prob}}},
          {"infgram",
           {{"suffix_tokens", ig.suffix_tokens},
            {"suffix", index.detokenize(suffix)},
            {"suffix_count", ig.suffix_count},
            {"full_count", ig.full_count},
            {"prob", ig.prob}}}};
}

nlohmann::json trace_json(const Index& index, std::string_view text, size_t min_tokens, size_t docs_per_span,
                          size_t context_tokens) {
  auto toks = index.tokenize(text, /*allow_unknown=*/true);
  auto spans = index.trace(toks, min_tokens, docs_per_span, context_tokens);
  nlohmann::json pieces = nlohmann::json::array();
  if (index.text_kind() == "bytes") {
    // One entry per byte, as the spans count them: a character's bytes go to its first byte's
    // entry (the rest are empty), so every entry is valid UTF-8 and they still concatenate.
    for (size_t i = 0; i < toks.size(); ++i) {
      if ((toks[i] & 0xC0) == 0x80 && i > 0) {
        pieces.push_back("");
        continue;
      }
      size_t j = i + 1;
      while (j < toks.size() && (toks[j] & 0xC0) == 0x80) ++j;
      pieces.push_back(index.detokenize(std::span<const int32_t>(toks).subspan(i, j - i)));
    }
  } else {
    // Byte-fallback tokens spell a character over several tokens: the character goes to the
    // first token's entry and the rest are empty, so that entries are valid UTF-8 (not U+FFFD
    // per byte) and still concatenate to the text.
    std::span<const int32_t> all_toks(toks);
    for (size_t i = 0; i < toks.size();) {
      size_t j = i + 1;
      std::string piece = index.detokenize(all_toks.subspan(i, 1));
      while (!text::is_valid_utf8(piece) && j < toks.size() && j - i < 4) {
        ++j;
        piece = index.detokenize(all_toks.subspan(i, j - i));
      }
      if (!text::is_valid_utf8(piece)) {  // a stray byte: keep it on its own entry
        j = i + 1;
        piece = index.detokenize(all_toks.subspan(i, 1));
      }
      pieces.push_back(piece);
      for (size_t k = i + 1; k < j; ++k) pieces.push_back("");
      i = j;
    }
  }
  nlohmann::json js = nlohmann::json::array();
  std::span<const int32_t> all(toks);
  for (const auto& s : spans) {
    nlohmann::json docs = nlohmann::json::array();
    for (const auto& h : s.docs) docs.push_back(hit_json(index, h));
    js.push_back({{"start", s.start},
                  {"length", s.length},
                  {"text", index.detokenize(all.subspan(s.start, s.length))},
                  {"count", s.count},
                  {"docs", docs}});
  }
  return {{"tokens", pieces}, {"spans", js}};
}

Params params_from_json(const nlohmann::json& body) {
  if (!body.is_object()) fail("the request body must be a JSON object");
  Params p;
  for (const auto& [k, v] : body.items()) p[k] = v.is_string() ? v.get<std::string>() : v.dump();
  return p;
}

ApiResponse handle_search_request(const Index& index, std::string_view path, const Params& p) {
  try {
    if (path == "/v1/search/info") return {200, info_json(index)};
    if (path == "/v1/search/count") return {200, count_json(index, get_str(p, "q"), get_bool(p, "ids"))};
    if (path == "/v1/search/docs") {
      Index::DocsOptions o;
      o.offset = get_u64(p, "offset", 0);
      o.limit = std::min<uint64_t>(get_u64(p, "limit", 10), 1000);
      o.seed = get_u64(p, "seed", 0);
      o.context_tokens = std::min<uint64_t>(get_u64(p, "context", 20), 2000);
      return {200, docs_json(index, get_str(p, "q"), get_bool(p, "ids"), o)};
    }
    if (path == "/v1/search/next")
      return {200, next_json(index, get_str(p, "q"), get_bool(p, "ids"), std::min<uint64_t>(get_u64(p, "top", 20), 100000))};
    if (path == "/v1/search/prob") return {200, prob_json(index, get_str(p, "q"), get_bool(p, "ids"))};
    if (path == "/v1/search/trace")
      return {200, trace_json(index, get_str(p, "text"), get_u64(p, "min_tokens", 8),
                              std::min<uint64_t>(get_u64(p, "docs", 3), 100),
                              std::min<uint64_t>(get_u64(p, "context", 20), 2000))};
    return {404, {{"error", {{"message", fmt::format("no endpoint {}", path)}, {"type", "not_found"}}}}};
  } catch (const Error& e) {
    return {400, {{"error", {{"message", e.what()}, {"type", "invalid_request_error"}}}}};
  }
}

}  // namespace tsumugi::index
