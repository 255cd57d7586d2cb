// Queries on a token-id index against brute-force scans of the same documents.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <map>
#include <random>

#include "index/index_fixture.h"

namespace tsumugi::testing {
namespace {

using index::Index;

constexpr int32_t kVocab = 700;

struct Corpus {
  TempDir dir;
  Docs docs;
  std::unique_ptr<Index> one, many;  // one shard; several shards
};
Corpus* g = nullptr;

class IndexQuery : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    g = new Corpus;
    g->docs = random_corpus(7, 300, 120, kVocab);
    g->docs.push_back({5});  // a one-token document
    g->one = std::make_unique<Index>(build_ids_index(g->dir, "one", g->docs, kVocab));
    g->many = std::make_unique<Index>(build_ids_index(g->dir, "many", g->docs, kVocab, 9000));
  }
  static void TearDownTestSuite() {
    delete g;
    g = nullptr;
  }

  // Spans of the corpus (which occur), random sequences (which mostly do not), and single tokens.
  static std::vector<std::vector<int32_t>> queries(uint64_t seed, size_t n) {
    std::mt19937_64 rng(seed);
    std::vector<std::vector<int32_t>> qs;
    for (size_t k = 0; k < n; ++k) {
      std::vector<int32_t> q;
      if (k % 3 != 2) {
        const auto& d = g->docs[rng() % g->docs.size()];
        size_t len = 1 + rng() % 12, at = rng() % d.size();
        len = std::min(len, d.size() - at);
        q.assign(d.begin() + at, d.begin() + at + len);
      } else {
        q.resize(1 + rng() % 4);
        for (auto& t : q) t = int32_t(rng() % kVocab);
      }
      qs.push_back(q);
    }
    // Hand-picked: the smallest and largest ids, a whole document, a query crossing a document end.
    qs.push_back({0});
    qs.push_back({kVocab - 1});
    qs.push_back(g->docs[3]);
    std::vector<int32_t> cross(g->docs[0].end() - 2, g->docs[0].end());
    cross.insert(cross.end(), g->docs[1].begin(), g->docs[1].begin() + 2);
    qs.push_back(cross);
    return qs;
  }
};

TEST_F(IndexQuery, CountsEqualBruteForceScan) {
  EXPECT_EQ(g->one->documents(), g->docs.size());
  uint64_t total = 0;
  for (const auto& d : g->docs) total += d.size();
  EXPECT_EQ(g->one->tokens(), total);
  EXPECT_GT(g->many->shard_count(), 3u);
  size_t nonzero = 0;
  for (const auto& q : queries(1, 400)) {
    uint64_t want = brute_count(g->docs, q);
    ASSERT_EQ(g->one->count(q), want) << "query of " << q.size() << " tokens starting " << q[0];
    ASSERT_EQ(g->many->count(q), want) << "multi-shard, query of " << q.size() << " tokens";
    nonzero += want > 0;
  }
  EXPECT_GT(nonzero, 200u);  // the test exercises real matches, not only misses
}

TEST_F(IndexQuery, NextTokenDistributionsSumToThePrefixCount) {
  for (const auto& q : queries(2, 50)) {
    auto nt = g->one->next(q);
    uint64_t sum = nt.at_doc_end;
    size_t step = nt.tokens.size() / 20 + 1;  // brute-force every step-th entry: ASan-friendly
    for (size_t k = 0; k < nt.tokens.size(); ++k) {
      auto [t, c] = nt.tokens[k];
      sum += c;
      if (k % step) continue;
      auto longer = q;
      longer.push_back(t);
      ASSERT_EQ(c, brute_count(g->docs, longer));
    }
    ASSERT_EQ(sum, nt.count);
    ASSERT_EQ(nt.count, brute_count(g->docs, q));
    auto nm = g->many->next(q);
    ASSERT_EQ(nm.tokens, nt.tokens);
    ASSERT_EQ(nm.at_doc_end, nt.at_doc_end);
  }
  // The empty prefix: the unigram distribution of the whole corpus.
  auto all = g->many->next({});
  std::map<int32_t, uint64_t> uni;
  for (const auto& d : g->docs)
    for (int32_t t : d) ++uni[t];
  EXPECT_EQ(all.count, g->many->tokens());
  std::vector<std::pair<int32_t, uint64_t>> want(uni.begin(), uni.end());
  EXPECT_EQ(all.tokens, want);
}

TEST_F(IndexQuery, NgramAndInfinigramProbabilities) {
  for (const auto& q : queries(3, 100)) {
    auto p = g->many->prob(q);
    std::vector<int32_t> prefix(q.begin(), q.end() - 1);
    uint64_t prefix_with_next = 0;
    if (prefix.empty()) {
      prefix_with_next = g->many->tokens();
    } else {
      auto nt = g->one->next(prefix);
      prefix_with_next = nt.count - nt.at_doc_end;
      // Independent of next(): occurrences of the prefix that do not end a document.
      uint64_t brute = 0;
      for (const auto& d : g->docs)
        for (size_t i = 0; i + prefix.size() < d.size(); ++i)
          if (std::equal(prefix.begin(), prefix.end(), d.begin() + i)) ++brute;
      ASSERT_EQ(prefix_with_next, brute);
    }
    ASSERT_EQ(p.prefix_count, prefix_with_next);
    ASSERT_EQ(p.full_count, brute_count(g->docs, q));
    ASSERT_DOUBLE_EQ(p.prob, prefix_with_next ? double(p.full_count) / double(prefix_with_next) : 0.0);

    // ∞-gram: the suffix used occurs followed by a token; one token longer does not.
    auto ig = g->many->infgram_prob(prefix, q.back());
    ASSERT_LE(ig.suffix_tokens, prefix.size());
    std::vector<int32_t> suffix(prefix.end() - ig.suffix_tokens, prefix.end());
    auto with = suffix;
    with.push_back(q.back());
    ASSERT_EQ(ig.full_count, brute_count(g->docs, with));
    if (ig.suffix_tokens < prefix.size()) {
      std::vector<int32_t> longer(prefix.end() - ig.suffix_tokens - 1, prefix.end());
      auto nt = g->one->next(longer);
      ASSERT_EQ(nt.count - nt.at_doc_end, 0u);
    }
    ASSERT_GT(ig.suffix_count, 0u);
  }
}

TEST_F(IndexQuery, CnfDocumentCountsEqualBruteForce) {
  std::mt19937_64 rng(4);
  auto qs = queries(4, 90);
  for (size_t k = 0; k + 2 < qs.size(); k += 3) {
    // a AND (b OR c)
    index::Cnf cnf = {{qs[k]}, {qs[k + 1], qs[k + 2]}};
    auto a = brute_docs(g->docs, qs[k]), b = brute_docs(g->docs, qs[k + 1]), c = brute_docs(g->docs, qs[k + 2]);
    uint64_t want = 0;
    for (uint64_t d : a) want += b.count(d) || c.count(d);
    ASSERT_EQ(g->one->count_documents(cnf), want);
    ASSERT_EQ(g->many->count_documents(cnf), want);
    auto r = g->many->docs(cnf, {.offset = 0, .limit = 1000});
    ASSERT_EQ(r.documents, want);
    for (const auto& h : r.hits) ASSERT_TRUE(a.count(h.doc)) << h.doc;
  }
}

TEST_F(IndexQuery, DocumentsArePagedInCorpusOrderWithTheMatchHighlighted) {
  for (const auto& q : queries(5, 60)) {
    auto want = brute_docs(g->docs, q);
    std::vector<uint64_t> got;
    for (uint64_t off = 0;; off += 7) {
      auto r = g->many->docs(q, {.offset = off, .limit = 7, .context_tokens = 3});
      ASSERT_EQ(r.documents, want.size());
      ASSERT_EQ(r.occurrences, brute_count(g->docs, q));
      ASSERT_FALSE(r.sampled);
      for (const auto& h : r.hits) {
        got.push_back(h.doc);
        ASSERT_EQ(h.match, q);
        const auto& d = g->docs[h.doc];
        ASSERT_TRUE(std::equal(q.begin(), q.end(), d.begin() + h.position));
        ASSERT_EQ(h.before.size(), std::min<uint64_t>(3, h.position));
        ASSERT_EQ(h.doc_tokens, d.size());
        ASSERT_EQ(h.metadata, fmt::format("{{\"shard\":\"many-tokens\",\"document\":{}}}", h.doc));
      }
      if (r.hits.size() < 7) break;
    }
    ASSERT_EQ(got, std::vector<uint64_t>(want.begin(), want.end()));
  }
}

TEST_F(IndexQuery, ManyOccurrencesAreSampledWithTheSeed) {
  std::vector<int32_t> q = {0};  // the most frequent token
  uint64_t occ = brute_count(g->docs, q);
  ASSERT_GT(occ, 50u);
  Index::DocsOptions o{.offset = 0, .limit = 10, .seed = 42, .max_scan = 50};
  auto a = g->many->docs(q, o), b = g->many->docs(q, o);
  EXPECT_TRUE(a.sampled);
  EXPECT_EQ(a.occurrences, occ);
  ASSERT_EQ(a.hits.size(), 10u);
  std::set<uint64_t> distinct;
  for (size_t i = 0; i < a.hits.size(); ++i) {
    EXPECT_EQ(a.hits[i].doc, b.hits[i].doc);  // deterministic
    EXPECT_EQ(g->docs[a.hits[i].doc][a.hits[i].position], 0);
    distinct.insert(a.hits[i].doc);
  }
  EXPECT_EQ(distinct.size(), 10u);
  o.seed = 43;
  auto c = g->many->docs(q, o);
  bool differs = false;
  for (size_t i = 0; i < c.hits.size(); ++i) differs |= c.hits[i].doc != a.hits[i].doc;
  EXPECT_TRUE(differs);
}

TEST_F(IndexQuery, TraceFindsMaximalSpansVerifiedBySearch) {
  std::mt19937_64 rng(6);
  for (int round = 0; round < 8; ++round) {
    // A "model output": pieces copied from documents between random tokens.
    std::vector<int32_t> text;
    for (int p = 0; p < 4; ++p) {
      const auto& d = g->docs[rng() % g->docs.size()];
      size_t at = rng() % d.size(), len = std::min<size_t>(d.size() - at, 5 + rng() % 25);
      text.insert(text.end(), d.begin() + at, d.begin() + at + len);
      for (int r = 0; r < 3; ++r) text.push_back(int32_t(rng() % kVocab));
    }
    const size_t min_tokens = 4;
    auto spans = g->many->trace(text, min_tokens, 2);
    auto one_spans = g->one->trace(text, min_tokens, 2);
    ASSERT_EQ(spans.size(), one_spans.size());
    size_t prev_end = 0;
    for (size_t s = 0; s < spans.size(); ++s) {
      const auto& sp = spans[s];
      ASSERT_EQ(sp.start, one_spans[s].start);
      ASSERT_EQ(sp.length, one_spans[s].length);
      ASSERT_GE(sp.length, min_tokens);
      std::vector<int32_t> span(text.begin() + sp.start, text.begin() + sp.start + sp.length);
      ASSERT_EQ(sp.count, brute_count(g->docs, span));
      ASSERT_GT(sp.count, 0u);
      // Maximal: one more token on either side does not occur.
      if (sp.start + sp.length < text.size()) {
        auto r = span;
        r.push_back(text[sp.start + sp.length]);
        ASSERT_EQ(brute_count(g->docs, r), 0u);
      }
      if (sp.start > 0) {
        auto l = span;
        l.insert(l.begin(), text[sp.start - 1]);
        ASSERT_EQ(brute_count(g->docs, l), 0u);
      }
      ASSERT_TRUE(s == 0 || sp.start + sp.length > prev_end);  // not inside the previous span
      prev_end = sp.start + sp.length;
      for (const auto& h : sp.docs) ASSERT_EQ(h.match, span);
    }
    // Every window of min_tokens that occurs lies inside some reported span.
    for (size_t i = 0; i + min_tokens <= text.size(); ++i) {
      std::vector<int32_t> w(text.begin() + i, text.begin() + i + min_tokens);
      if (!brute_count(g->docs, w)) continue;
      bool inside = false;
      for (const auto& sp : spans) inside |= sp.start <= i && i + min_tokens <= sp.start + sp.length;
      ASSERT_TRUE(inside) << "window at " << i;
    }
  }
}

}  // namespace
}  // namespace tsumugi::testing
