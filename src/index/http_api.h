#pragma once
// The search API as request -> JSON, with no HTTP library: `tsumugi serve` routes requests
// here, and the CLI's --json output is the same JSON.
//
// Endpoints (parameters from the query string, or for POST from a JSON object body; all
// responses are JSON; errors are {"error": {"message", "type": "invalid_request_error"}}
// with status 400, or 404 for an unknown endpoint):
//   GET  /v1/search/info
//        -> {"index", "text", "tokens", "documents", "shards", "vocab_size", "token_width"}
//   GET  /v1/search/count?q=QUERY[&ids=1]
//        QUERY is text, or with ids=1 space-separated token ids; "a AND b OR c" is a CNF
//        (AND of OR-clauses).
//        -> one term: {"query", "tokens": [ids], "count"}  (occurrences)
//           CNF:      {"query", "clauses": [[[ids]...]...], "documents"}  (documents matching)
//   GET  /v1/search/docs?q=QUERY[&ids=1][&offset=0][&limit=10][&seed=0][&context=20]
//        -> {"query", "occurrences", "documents", "sampled", "offset", "limit",
//            "hits": [{"doc", "position", "doc_tokens", "metadata": {...},
//                      "before", "match", "after"}]}   (snippet texts; highlight "match")
//   GET  /v1/search/next?q=PREFIX[&ids=1][&top=20]
//        -> {"query", "tokens", "count", "at_doc_end",
//            "next": [{"token", "text", "count", "prob"}]}  (most frequent first)
//   GET  /v1/search/prob?q=QUERY[&ids=1]
//        -> {"query", "tokens", "ngram": {"prefix_count", "full_count", "prob"},
//            "infgram": {"suffix_tokens", "suffix", "suffix_count", "full_count", "prob"}}
//        (the probability of the query's last token after the rest)
//   GET|POST /v1/search/trace  text=TEXT[&min_tokens=8][&docs=3][&context=20]
//        -> {"tokens": [piece texts], "spans": [{"start", "length", "text", "count",
//            "docs": [hit as above]}]}   (start/length in tokens; the pieces concatenate
//            to the traced text)
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "index/suffix_index.h"

namespace tsumugi::index {

using Params = std::map<std::string, std::string>;

struct ApiResponse {
  int status = 200;
  nlohmann::json body;
};

// A POST body (a JSON object) as parameters: strings as they are, numbers and booleans as
// their JSON text. Throws Error when the body is not an object.
Params params_from_json(const nlohmann::json& body);

// Dispatches on the path (e.g. "/v1/search/count"). Never throws for bad input: it answers 400.
ApiResponse handle_search_request(const Index& index, std::string_view path, const Params& params);

// The query as a CNF of token sequences: text tokenized with the index's tokenizer, or (ids)
// space-separated token ids. Throws Error on an empty query or an unknown token.
Cnf parse_query(const Index& index, std::string_view query, bool ids);

nlohmann::json info_json(const Index& index);
nlohmann::json count_json(const Index& index, std::string_view query, bool ids);
nlohmann::json docs_json(const Index& index, std::string_view query, bool ids, const Index::DocsOptions& o);
nlohmann::json next_json(const Index& index, std::string_view query, bool ids, size_t top);
nlohmann::json prob_json(const Index& index, std::string_view query, bool ids);
nlohmann::json trace_json(const Index& index, std::string_view text, size_t min_tokens, size_t docs_per_span,
                          size_t context_tokens);
nlohmann::json hit_json(const Index& index, const DocHit& hit);

// JSON text safe for any bytes (invalid UTF-8 in snippets of a byte index becomes U+FFFD).
std::string dump_json(const nlohmann::json& j, int indent = -1);

}  // namespace tsumugi::index
