// Text indexes over the bundled corpus: a byte-level index counts exactly what grep and
// Python's str.count (overlapping) count; a SentencePiece index counts token sequences.
//
// What a token-level count means: the occurrences of the query's token sequence in the
// corpus's token stream. A string can occur in the text where the tokenizer segmented it
// differently (e.g. "ab" inside "xabc" tokenized as "xa" "bc"), so the token count is at most
// the byte count and often lower. So the SentencePiece index is checked against a brute-force
// scan of independently tokenized documents, and against the byte count as an upper bound;
// exact agreement with grep is checked on the byte index.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>

#include "index/http_api.h"
#include "index/index_fixture.h"
#include "tokenizer/trainer.h"
#include "util/error.h"

namespace tsumugi::testing {
namespace {

using index::Index;

struct TextCorpus {
  TempDir dir;
  std::vector<std::string> texts;
  std::string jsonl, texts_file, model;
  std::unique_ptr<Index> bytes, spm;
};
TextCorpus* g = nullptr;

// Python (an independent implementation) counts overlapping occurrences of each query.
std::vector<uint64_t> python_counts(const std::vector<std::string>& queries) {
  std::string qfile = g->dir.file("queries.json");
  write_bytes(qfile, nlohmann::json(queries).dump());
  std::string script = g->dir.file("count.py");
  write_bytes(script,
              "import json, sys\n"
              "texts = [json.loads(l)['text'].encode() for l in open(sys.argv[1], encoding='utf-8')]\n"
              "def count(t, q):\n"
              "    n = i = 0\n"
              "    while True:\n"
              "        i = t.find(q, i)\n"
              "        if i < 0: return n\n"
              "        n += 1; i += 1\n"
              "for q in json.load(open(sys.argv[2], encoding='utf-8')):\n"
              "    print(sum(count(t, q.encode()) for t in texts))\n");
  std::string out;
  EXPECT_EQ(run_command("python3 " + script + " " + g->jsonl + " " + qfile, out), 0) << out;
  std::vector<uint64_t> counts;
  std::istringstream ss(out);
  for (uint64_t c; ss >> c;) counts.push_back(c);
  return counts;
}

// A substring of a text of 1..max_chars whole characters.
std::string random_substring(std::mt19937_64& rng, size_t max_chars) {
  const auto& t = g->texts[rng() % g->texts.size()];
  size_t a = rng() % t.size();
  while (a > 0 && (uint8_t(t[a]) & 0xC0) == 0x80) --a;
  size_t b = a, chars = 1 + rng() % max_chars;
  for (size_t c = 0; c < chars && b < t.size(); ++c) {
    ++b;
    while (b < t.size() && (uint8_t(t[b]) & 0xC0) == 0x80) ++b;
  }
  return t.substr(a, b - a);
}

class IndexText : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    g = new TextCorpus;
    std::string jsonl, train;
    for (const char* name : {"ja", "en"}) {
      auto lines = read_lines(std::string(TSUMUGI_SOURCE_DIR) + "/data/corpus/" + name + ".jsonl.gz");
      lines.resize(std::min<size_t>(lines.size(), 40));
      for (const auto& l : lines) {
        auto j = nlohmann::json::parse(l);
        std::string text = j["text"];
        if (text.size() > 20000) text.resize(20000);
        while (!text.empty() && (uint8_t(text.back()) & 0xC0) == 0x80) text.pop_back();
        if (!text.empty() && uint8_t(text.back()) >= 0xC0) text.pop_back();
        j["text"] = text;
        jsonl += j.dump() + "\n";
        g->texts.push_back(text);
        train += text + "\n";
      }
    }
    g->jsonl = g->dir.file("docs.jsonl");
    write_bytes(g->jsonl, jsonl);
    g->texts_file = g->dir.file("texts.txt");
    std::string joined;
    for (const auto& t : g->texts) joined += t + "\n";
    write_bytes(g->texts_file, joined);
    write_bytes(g->dir.file("train.txt"), train);

    index::BuildOptions o;
    o.text_inputs = {g->jsonl};
    o.bytes = true;
    o.output = g->dir.file("bytes");
    o.progress = 0;
    o.shard_tokens = 250'000;  // several shards
    index::build_index(o);
    g->bytes = std::make_unique<Index>(Index::open(o.output));

    tokenizer::TrainOptions t;
    t.inputs = {g->dir.file("train.txt")};
    t.vocab_size = 1200;
    t.num_threads = 2;
    t.input_sentence_size = 3000;
    t.model_prefix = g->dir.file("tok");
    // Identity normalization keeping runs of spaces (as LLM-jp's tokenizer): then the tokens'
    // text is the document's text, and a token match is a byte match.
    t.remove_extra_whitespaces = false;
    tokenizer::train_and_save(t, g->dir.file("tok"));
    g->model = g->dir.file("tok.model");
    o.bytes = false;
    o.tokenizer_path = g->model;
    o.output = g->dir.file("spm");
    o.shard_tokens = 100'000;
    index::build_index(o);
    g->spm = std::make_unique<Index>(Index::open(o.output));
  }
  static void TearDownTestSuite() {
    delete g;
    g = nullptr;
  }
};

TEST_F(IndexText, ByteIndexCountsEqualPythonAndGrep) {
  ASSERT_GT(g->bytes->shard_count(), 2u);
  std::mt19937_64 rng(11);
  std::vector<std::string> qs = {"プロセス", "終了", "ファイル", "の", "シグナル", "#include", "NULL", "the", "errno",
                                 "呼び出し元のプロセスを終了させる", "\n\n", "存在しない文字列です"};
  const size_t hand = qs.size();
  for (int i = 0; i < 300; ++i) qs.push_back(random_substring(rng, 1 + i % 12));
  auto want = python_counts(qs);
  ASSERT_EQ(want.size(), qs.size());
  for (size_t i = 0; i < qs.size(); ++i) {
    auto ids = g->bytes->tokenize(qs[i]);
    ASSERT_EQ(g->bytes->count(ids), want[i]) << "query '" << qs[i] << "'";
  }
  // grep -o counts non-overlapping matches per line: the same for these queries, which have
  // no newline and cannot overlap themselves.
  for (size_t i = 0; i < hand; ++i) {
    if (qs[i].find('\n') != std::string::npos) continue;
    std::string out;
    ASSERT_EQ(run_command("grep -o -F -- '" + qs[i] + "' " + g->texts_file + " | wc -l", out), 0);
    EXPECT_EQ(g->bytes->count(g->bytes->tokenize(qs[i])), std::stoull(out)) << qs[i];
  }
}

TEST_F(IndexText, ByteIndexSnippetsAndTraceAreTheText) {
  auto q = g->bytes->tokenize("プロセス");
  auto r = g->bytes->docs(q, {.limit = 5, .context_tokens = 12});
  ASSERT_FALSE(r.hits.empty());
  for (const auto& h : r.hits) {
    EXPECT_EQ(g->bytes->detokenize(h.match), "プロセス");
    std::string doc = g->texts[h.doc];
    EXPECT_EQ(doc.substr(h.position, 12), "プロセス");
    auto meta = nlohmann::json::parse(h.metadata);
    EXPECT_TRUE(meta.contains("id")) << h.metadata;
    // The API trims characters cut by the snippet's edges: what remains is in the document.
    auto hj = index::hit_json(*g->bytes, h);
    std::string snippet = hj["before"].get<std::string>() + hj["match"].get<std::string>() + hj["after"].get<std::string>();
    EXPECT_EQ(snippet.find("\xEF\xBF\xBD"), std::string::npos) << snippet;
    EXPECT_NE(doc.find(snippet), std::string::npos) << snippet;
  }
  // A sentence glued from two documents: trace finds both halves.
  std::string a = g->texts[0].substr(0, 60), b = g->texts[45].substr(0, 60);
  while ((uint8_t(a.back()) & 0xC0) == 0x80 || uint8_t(a.back()) >= 0xC0) a.pop_back();
  auto toks = g->bytes->tokenize(a + "\x01" + b);
  auto spans = g->bytes->trace(toks, 20, 1);
  ASSERT_GE(spans.size(), 2u);
  EXPECT_EQ(spans.front().start, 0u);
  EXPECT_GE(spans.front().length, a.size());
  // The API's pieces are valid UTF-8 and concatenate to the traced text.
  auto j = index::trace_json(*g->bytes, a + "\x01" + b, 20, 1, 10);
  std::string joined;
  for (const auto& p : j["tokens"]) joined += p.get<std::string>();
  EXPECT_EQ(joined, a + "\x01" + b);
  EXPECT_EQ(j["tokens"].size(), toks.size());
}

TEST_F(IndexText, TokenCountsEqualAScanOfIndependentlyTokenizedDocuments) {
  // Documents and queries are tokenized without the dummy prefix; redo that here.
  auto base = tokenizer::Tokenizer::load(g->model);
  auto proto = base.model();
  if (!proto.normalizer_spec) proto.normalizer_spec.emplace();
  proto.normalizer_spec->add_dummy_prefix = false;
  auto tok = tokenizer::Tokenizer::from_proto(proto, "test");
  Docs docs;
  for (const auto& t : g->texts) {
    docs.emplace_back();
    tok.encode(t, docs.back());
  }
  ASSERT_GT(g->spm->shard_count(), 1u);
  std::mt19937_64 rng(12);
  std::vector<std::string> qs = {"プロセス", "終了", "ファイル", "の", "シグナル", "include", "the", "process",
                                 "呼び出し元のプロセスを終了させる"};
  for (int i = 0; i < 120; ++i) qs.push_back(random_substring(rng, 1 + i % 10));
  auto bytes = python_counts(qs);
  size_t equal = 0, unknown = 0;
  for (size_t i = 0; i < qs.size(); ++i) {
    std::vector<int32_t> want_ids;
    tok.encode(qs[i], want_ids);
    if (std::count(want_ids.begin(), want_ids.end(), tok.unk_id())) {
      // <unk> would match any unknown character: such a query is refused.
      EXPECT_THROW(g->spm->tokenize(qs[i]), tsumugi::Error) << qs[i];
      ++unknown;
      continue;
    }
    auto ids = g->spm->tokenize(qs[i]);
    ASSERT_EQ(ids, want_ids);
    if (ids.empty()) continue;
    uint64_t c = g->spm->count(ids);
    ASSERT_EQ(c, brute_count(docs, ids)) << "query '" << qs[i] << "'";
    ASSERT_LE(c, bytes[i]) << "query '" << qs[i] << "'";  // a token match is a byte match
    equal += c == bytes[i];
  }
  // Random cuts often split a token, so equality holds for a minority; zero would mean the
  // index does not find what the text holds.
  EXPECT_GT(equal, qs.size() / 10);
  EXPECT_LT(unknown, qs.size() / 4);
  // Snippets give the text back, spaces included.
  auto r = g->spm->docs(g->spm->tokenize("process"), {.limit = 3});
  for (const auto& h : r.hits) EXPECT_NE(g->spm->detokenize(h.match).find("process"), std::string::npos);
}

}  // namespace
}  // namespace tsumugi::testing
