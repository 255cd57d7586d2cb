// `tsumugi serve --index`: the corpus-search API over HTTP against the
// library's Index, and the search page in headless Chromium
// (tests/serve/search_page.py under /usr/bin/python3, selenium).
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "index/http_api.h"
#include "index/suffix_index.h"
#include "serve/search_routes.h"
#include "serve/server_harness.h"
#include "serve/tiny_model.h"
#include "test_util.h"
#include "util/log.h"

using namespace tsumugi;
using nlohmann::json;
using tsumugi::testing::RunningServer;
using tsumugi::testing::tiny_engine;
using tsumugi::testing::tiny_model_dir;

namespace {

struct SearchCorpus {
  tsumugi::testing::TempDir dir;
  std::vector<std::string> texts;
  std::unique_ptr<index::Index> idx;
};
SearchCorpus *g = nullptr;

// Whole UTF-8 characters: cuts `text` to at most `max_bytes` without splitting
// a character.
std::string cut_utf8(std::string text, size_t max_bytes) {
  if (text.size() <= max_bytes)
    return text;
  size_t end = max_bytes;
  while (end > 0 && (uint8_t(text[end]) & 0xC0) == 0x80)
    --end;
  text.resize(end);
  return text;
}

// GET with query parameters (URL-encoded by the client).
httplib::Result get(httplib::Client &c, const std::string &path,
                    const httplib::Params &params,
                    const httplib::Headers &headers = {}) {
  return c.Get(path, params, headers);
}

json parse_body(const httplib::Result &r) {
  if (!r) {
    ADD_FAILURE() << "no HTTP response";
    return json::object();
  }
  json j = json::parse(r->body, nullptr, false);
  if (j.is_discarded()) {
    ADD_FAILURE() << "not JSON (status " << r->status << "): " << r->body;
    return json::object();
  }
  return j;
}

void expect_json_error(const httplib::Result &r, int status) {
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, status) << r->body;
  EXPECT_NE(r->get_header_value("Content-Type").find("application/json"),
            std::string::npos);
  const json j = parse_body(r);
  ASSERT_TRUE(j.contains("error")) << r->body;
  EXPECT_TRUE(j["error"]["message"].is_string()) << r->body;
  EXPECT_FALSE(j["error"]["message"].get<std::string>().empty());
}

// Runs a driver under /usr/bin/python3; its last output line is its JSON
// result.
json run_driver(const std::string &script, const std::string &args) {
  std::string out;
  const int status = tsumugi::testing::run_command(
      "/usr/bin/python3 " + std::string(TSUMUGI_SOURCE_DIR) + "/tests/serve/" +
          script + " " + args,
      out);
  EXPECT_EQ(status, 0) << out;
  const std::size_t start =
      out.rfind('\n', out.size() >= 2 ? out.size() - 2 : 0);
  const std::string last =
      out.substr(start == std::string::npos ? 0 : start + 1);
  json j = json::parse(last, nullptr, false);
  if (j.is_discarded()) {
    ADD_FAILURE() << script << " printed no JSON result:\n" << out;
    return json::object();
  }
  return j;
}

// Shell single quotes around any text.
std::string shell_quote(const std::string &s) {
  std::string out = "'";
  for (char c : s)
    out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

class ServeSearch : public ::testing::Test {
protected:
  static void SetUpTestSuite() {
    g = new SearchCorpus;
    // A few dozen documents of the bundled corpus, Japanese and English,
    // indexed with the tiny model's tokenizer (as `tsumugi index build
    // --tokenizer` would).
    std::string jsonl;
    for (const auto &[name, n] :
         std::vector<std::pair<std::string, size_t>>{{"ja", 30}, {"en", 10}}) {
      auto lines =
          tsumugi::testing::read_lines(std::string(TSUMUGI_SOURCE_DIR) +
                                       "/data/corpus/" + name + ".jsonl.gz");
      lines.resize(std::min(lines.size(), n));
      for (const auto &l : lines) {
        json j = json::parse(l);
        j["text"] = cut_utf8(j["text"].get<std::string>(), 3000);
        g->texts.push_back(j["text"]);
        jsonl += j.dump() + "\n";
      }
    }
    const std::string docs = g->dir.file("docs.jsonl");
    tsumugi::testing::write_bytes(docs, jsonl);
    index::BuildOptions o;
    o.text_inputs = {docs};
    o.tokenizer_path = tiny_model_dir() + "/tokenizer.model";
    o.output = g->dir.file("index");
    o.progress = 0;
    o.shard_tokens = 20'000; // several shards
    index::build_index(o);
    g->idx = std::make_unique<index::Index>(index::Index::open(o.output));
  }
  static void TearDownTestSuite() {
    delete g;
    g = nullptr;
  }
  void SetUp() override { log::set_level(log::Level::warn); }
  void TearDown() override { log::set_level(log::Level::info); }

  static std::function<void(serve::Server &)> with_search() {
    return [](serve::Server &s) { serve::add_search(s, *g->idx); };
  }

  // Queries that occur: runs of characters from the documents, plus a few
  // common words.
  static std::vector<std::string> queries() {
    std::vector<std::string> qs = {"の",   "する", "ファイル", "プロセスの",
                                   "場合", "the",  " of the"};
    for (size_t d : {0, 4, 11, 33})
      qs.push_back(cut_utf8(g->texts[d].substr(0, 12), 9));
    return qs;
  }
};

TEST_F(ServeSearch, CountsEqualTheLibraryIndex) {
  RunningServer srv(tiny_engine(), {}, with_search());
  auto c = srv.client();
  const json info = parse_body(c.Get("/v1/search/info"));
  EXPECT_EQ(info["documents"], g->idx->documents());
  EXPECT_EQ(info["tokens"], g->idx->tokens());
  EXPECT_EQ(info["text"], "sentencepiece");
  EXPECT_GT(info["shards"].get<int>(), 1);
  size_t nonzero = 0;
  for (const auto &q : queries()) {
    const auto tokens = g->idx->tokenize(q);
    const uint64_t want = g->idx->count(tokens);
    nonzero += want > 0;
    const json r = parse_body(get(c, "/v1/search/count", {{"q", q}}));
    EXPECT_EQ(r["count"], want) << q << ": " << r.dump();
    EXPECT_EQ(r["tokens"], json(tokens)) << q;
    EXPECT_EQ(r["query"], q);
    // The same query by token ids.
    std::string ids;
    for (int32_t t : tokens)
      ids += (ids.empty() ? "" : " ") + std::to_string(t);
    EXPECT_EQ(parse_body(get(c, "/v1/search/count",
                             {{"q", ids}, {"ids", "1"}}))["count"],
              want)
        << q;
  }
  EXPECT_GE(nonzero, 6u) << "the queries should mostly occur";
  // A CNF counts documents.
  const std::string cnf = "ファイル AND the OR プロセス";
  const index::Cnf want_cnf = {
      {g->idx->tokenize("ファイル")},
      {g->idx->tokenize("the"), g->idx->tokenize("プロセス")}};
  const json r = parse_body(get(c, "/v1/search/count", {{"q", cnf}}));
  EXPECT_EQ(r["documents"], g->idx->count_documents(want_cnf)) << r.dump();
  EXPECT_GT(r["documents"].get<uint64_t>(), 0u);
  EXPECT_EQ(r["clauses"].size(), 2u);
}

TEST_F(ServeSearch, DocsNextProbAndTraceHaveTheDocumentedShapes) {
  RunningServer srv(tiny_engine(), {}, with_search());
  auto c = srv.client();
  const std::string q = "ファイル";
  const auto tokens = g->idx->tokenize(q);
  const uint64_t occurrences = g->idx->count(tokens);
  ASSERT_GT(occurrences, 3u);

  // docs: every hit is a real occurrence, its match the query's text.
  const json docs = parse_body(
      get(c, "/v1/search/docs", {{"q", q}, {"limit", "3"}, {"context", "5"}}));
  EXPECT_EQ(docs["occurrences"], occurrences) << docs.dump();
  EXPECT_EQ(docs["documents"], g->idx->count_documents({{tokens}}));
  EXPECT_EQ(docs["limit"], 3);
  EXPECT_EQ(docs["offset"], 0);
  EXPECT_FALSE(docs["sampled"].get<bool>());
  ASSERT_EQ(docs["hits"].size(), 3u) << docs.dump();
  for (const auto &h : docs["hits"]) {
    for (const char *key : {"doc", "position", "doc_tokens", "metadata",
                            "before", "match", "after"})
      EXPECT_TRUE(h.contains(key)) << key << " in " << h.dump();
    const auto doc = g->idx->document_tokens(h["doc"]);
    EXPECT_EQ(h["doc_tokens"], doc.size());
    const uint64_t at = h["position"];
    ASSERT_LE(at + tokens.size(), doc.size());
    EXPECT_EQ(std::vector<int32_t>(doc.begin() + at,
                                   doc.begin() + at + tokens.size()),
              tokens);
    EXPECT_EQ(h["match"], g->idx->detokenize(tokens));
    EXPECT_TRUE(h["metadata"].is_object()) << h.dump();
    EXPECT_TRUE(h["metadata"].contains("id")) << h.dump();
  }
  // The next page starts where the first ended.
  const json page2 = parse_body(
      get(c, "/v1/search/docs", {{"q", q}, {"limit", "3"}, {"offset", "3"}}));
  ASSERT_FALSE(page2["hits"].empty());
  EXPECT_NE(
      json::array({page2["hits"][0]["doc"], page2["hits"][0]["position"]}),
      json::array({docs["hits"][0]["doc"], docs["hits"][0]["position"]}));

  // next: counts by token, most frequent first, summing with the document ends
  // to the count.
  const json next =
      parse_body(get(c, "/v1/search/next", {{"q", q}, {"top", "1000"}}));
  EXPECT_EQ(next["count"], occurrences) << next.dump();
  ASSERT_FALSE(next["next"].empty());
  uint64_t sum = next["at_doc_end"];
  for (size_t i = 0; i < next["next"].size(); ++i) {
    const auto &n = next["next"][i];
    if (i > 0) {
      EXPECT_GE(next["next"][i - 1]["count"].get<uint64_t>(),
                n["count"].get<uint64_t>());
    }
    std::vector<int32_t> longer = tokens;
    longer.push_back(n["token"]);
    EXPECT_EQ(n["count"], g->idx->count(longer));
    // A lone byte-fallback token is not valid UTF-8 alone: JSON carries it as
    // U+FFFD.
    const std::string piece =
        g->idx->detokenize(std::vector<int32_t>{n["token"].get<int32_t>()});
    EXPECT_EQ(n["text"], json::parse(index::dump_json(json(piece))));
    EXPECT_GT(n["prob"].get<double>(), 0.0);
    sum += n["count"].get<uint64_t>();
  }
  EXPECT_EQ(sum, occurrences);

  // prob: the last token after the rest, as the library computes it.
  const std::string pq = "プロセスの";
  const auto ptoks = g->idx->tokenize(pq);
  ASSERT_GE(ptoks.size(), 2u);
  const json prob = parse_body(get(c, "/v1/search/prob", {{"q", pq}}));
  const index::NgramProb want = g->idx->prob(ptoks);
  EXPECT_EQ(prob["tokens"], json(ptoks));
  EXPECT_EQ(prob["ngram"]["prefix_count"], want.prefix_count) << prob.dump();
  EXPECT_EQ(prob["ngram"]["full_count"], want.full_count);
  EXPECT_EQ(prob["ngram"]["full_count"], g->idx->count(ptoks));
  EXPECT_DOUBLE_EQ(prob["ngram"]["prob"].get<double>(), want.prob);
  for (const char *key :
       {"suffix_tokens", "suffix", "suffix_count", "full_count", "prob"})
    EXPECT_TRUE(prob["infgram"].contains(key)) << key;

  // trace, POST with a JSON body: a run copied from a document is one span,
  // found in that document.
  const std::string copied = cut_utf8(g->texts[2].substr(0, 300), 240);
  const std::string text = "鱒寿司の話（コーパスにない前置き）。\n" + copied;
  const json trace = parse_body(
      c.Post("/v1/search/trace",
             json{{"text", text}, {"min_tokens", 8}, {"docs", 2}}.dump(),
             "application/json"));
  ASSERT_TRUE(trace.contains("spans")) << trace.dump();
  const auto all = g->idx->tokenize(text, true);
  ASSERT_EQ(trace["tokens"].size(), all.size());
  std::string joined;
  for (const auto &t : trace["tokens"])
    joined += t.get<std::string>();
  // The pieces concatenate to the text, byte-fallback characters included (no
  // U+FFFD per byte).
  EXPECT_EQ(joined, g->idx->detokenize(all));
  EXPECT_EQ(joined.find("\xEF\xBF\xBD"), std::string::npos) << joined;
  ASSERT_FALSE(trace["spans"].empty()) << trace.dump();
  size_t longest = 0;
  for (const auto &s : trace["spans"]) {
    const size_t start = s["start"], length = s["length"];
    ASSERT_LE(start + length, trace["tokens"].size());
    EXPECT_GE(length, 8u);
    std::string span_text;
    for (size_t k = start; k < start + length; ++k)
      span_text += trace["tokens"][k].get<std::string>();
    EXPECT_EQ(s["count"], g->idx->count(std::span<const int32_t>(all).subspan(
                              start, length)))
        << span_text;
    EXPECT_GT(s["count"].get<uint64_t>(), 0u);
    EXPECT_GE(s["docs"].size(), 1u);
    EXPECT_LE(s["docs"].size(), 2u);
    longest = std::max(longest, length);
  }
  // The copied run is (nearly) one span: only its first tokens may be segmented
  // differently after the preamble.
  EXPECT_GE(longest + 4, g->idx->tokenize(copied, true).size()) << trace.dump();
  // The same request by GET with query parameters answers the same.
  const json trace_get =
      parse_body(get(c, "/v1/search/trace",
                     {{"text", text}, {"min_tokens", "8"}, {"docs", "2"}}));
  EXPECT_EQ(trace_get, trace);
}

TEST_F(ServeSearch, BadRequestsAnswerJsonErrorsAndTheServerKeepsServing) {
  RunningServer srv(tiny_engine(), {}, with_search());
  auto c = srv.client();
  expect_json_error(get(c, "/v1/search/count", {{"q", ""}}), 400);
  expect_json_error(c.Get("/v1/search/count"), 400); // no q
  expect_json_error(get(c, "/v1/search/count", {{"q", "5 x"}, {"ids", "1"}}),
                    400); // not an id
  expect_json_error(
      get(c, "/v1/search/count", {{"q", "99999999"}, {"ids", "1"}}),
      400); // out of range
  expect_json_error(
      get(c, "/v1/search/docs", {{"q", "です"}, {"limit", "many"}}), 400);
  expect_json_error(c.Post("/v1/search/trace", "{not json", "application/json"),
                    400);
  expect_json_error(c.Post("/v1/search/trace", "[1, 2]", "application/json"),
                    400);
  expect_json_error(get(c, "/v1/search/xyz", {{"q", "です"}}), 404);
  expect_json_error(c.Post("/v1/search/xyz", "{}", "application/json"), 404);
  // Still serving, with the right answers.
  const json r = parse_body(get(c, "/v1/search/count", {{"q", "ファイル"}}));
  EXPECT_EQ(r["count"], g->idx->count(g->idx->tokenize("ファイル")));
  auto page = c.Get("/search");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_NE(page->get_header_value("Content-Type").find("text/html"),
            std::string::npos);
  EXPECT_NE(page->body.find("/v1/search/"), std::string::npos);
}

TEST_F(ServeSearch, ApiKeyGuardsTheSearchEndpoints) {
  serve::ServerOptions opt;
  opt.api_key = "sekrit";
  RunningServer srv(tiny_engine(), opt, with_search());
  auto c = srv.client();
  for (const char *path :
       {"/v1/search/info", "/v1/search/count?q=%E3%81%AE", "/v1/search/xyz"})
    expect_json_error(c.Get(path), 401);
  expect_json_error(
      c.Post("/v1/search/trace", R"({"text": "です"})", "application/json"),
      401);
  expect_json_error(
      c.Get("/v1/search/info", {{"Authorization", "Bearer wrong"}}), 401);
  const httplib::Headers key = {{"Authorization", "Bearer sekrit"}};
  auto ok = get(c, "/v1/search/count", {{"q", "の"}}, key);
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200) << ok->body;
  EXPECT_EQ(parse_body(ok)["count"], g->idx->count(g->idx->tokenize("の")));
  auto traced = c.Post("/v1/search/trace", key, R"({"text": "です"})",
                       "application/json");
  ASSERT_TRUE(traced);
  EXPECT_EQ(traced->status, 200) << traced->body;
}

TEST_F(ServeSearch, SearchPageCountsHighlightsAndTracesInHeadlessChromium) {
  RunningServer srv(tiny_engine(), {}, with_search());
  const std::string query = "プロセス";
  const auto tokens = g->idx->tokenize(query);
  const uint64_t want = g->idx->count(tokens);
  ASSERT_GT(want, 0u);
  // A character the tokenizer spells in byte-fallback tokens, then a run copied
  // from a document.
  const std::string trace_text =
      "鱒 " + cut_utf8(g->texts[5].substr(0, 200), 150);
  const json r =
      run_driver("search_page.py", srv.base_url() + " " + shell_quote(query) +
                                       " " + shell_quote(trace_text));
  ASSERT_TRUE(r.contains("count")) << r.dump();
  EXPECT_NE(r["info"].get<std::string>().find(
                std::to_string(g->idx->documents()) + " documents"),
            std::string::npos)
      << r.dump();
  EXPECT_EQ(r["count"], std::to_string(want)) << r.dump();
  EXPECT_GE(r["marks"].size(), 1u) << r.dump();
  for (const auto &m : r["marks"])
    EXPECT_EQ(m, g->idx->detokenize(tokens));
  EXPECT_GE(r["hits"].get<int>(), 1);
  EXPECT_FALSE(r["search_error"].get<bool>()) << r.dump();
  // The pasted text comes from a document: at least one span, all spans the
  // server found.
  const json trace = parse_body(srv.client().Post(
      "/v1/search/trace",
      json{{"text", trace_text}, {"min_tokens", 8}, {"docs", 3}}.dump(),
      "application/json"));
  ASSERT_FALSE(trace["spans"].empty());
  EXPECT_EQ(r["span_count"], trace["spans"].size()) << r.dump();
  std::vector<std::string> want_spans;
  for (const auto &s : trace["spans"])
    want_spans.push_back(s["text"]);
  EXPECT_EQ(r["span_rows"], json(want_spans)) << r.dump();
  EXPECT_GE(r["highlighted"].size(), 1u) << r.dump();
  // The whole text, as tokenized (the tokenizer folds runs of spaces).
  EXPECT_EQ(r["trace_view"],
            g->idx->detokenize(g->idx->tokenize(trace_text, true)));
  EXPECT_GE(r["span_docs"].get<int>(), 1) << r.dump();
  EXPECT_TRUE(r["console"].empty()) << r.dump();
  // A query the server refuses shows its message on the page.
  EXPECT_NE(r["bad_query_error"].get<std::string>().find("is not a token id"),
            std::string::npos)
      << r.dump();
}

} // namespace
