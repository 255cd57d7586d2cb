#pragma once
// Shared by the index tests: corpora of token ids written as Megatron shards and indexed,
// and the brute-force scans the index's answers are checked against.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "data/indexed_dataset.h"
#include "index/suffix_index.h"
#include "../test_util.h"

namespace tsumugi::testing {

using Docs = std::vector<std::vector<int32_t>>;

// Zipf-like random documents over [0, vocab) with a few phrases pasted in many times, so
// that long repeated spans exist, as in a real corpus.
inline Docs random_corpus(uint64_t seed, size_t docs, size_t mean_len, int32_t vocab) {
  std::mt19937_64 rng(seed);
  std::vector<std::vector<int32_t>> phrases;
  for (int p = 0; p < 12; ++p) {
    std::vector<int32_t> ph(5 + rng() % 30);
    for (auto& t : ph) t = int32_t(rng() % vocab);
    phrases.push_back(ph);
  }
  Docs out(docs);
  for (auto& d : out) {
    size_t len = 1 + rng() % (2 * mean_len);
    while (d.size() < len) {
      if (rng() % 20 == 0) {
        const auto& ph = phrases[rng() % phrases.size()];
        d.insert(d.end(), ph.begin(), ph.end());
      } else {
        // Zipf-ish: small ids are much more common.
        double u = std::uniform_real_distribution<double>(0, 1)(rng);
        d.push_back(int32_t(std::min<double>(vocab - 1, std::pow(double(vocab), u * u) - 1)));
      }
    }
  }
  return out;
}

inline void write_shard(const std::string& prefix, const Docs& docs) {
  data::IndexedDatasetWriter w(prefix, data::DType::int32);
  for (const auto& d : docs) w.add_document(d);
  w.finish();
}

inline index::Index build_ids_index(const TempDir& dir, const std::string& name, const Docs& docs, int64_t vocab,
                                    uint64_t shard_tokens = 100'000'000) {
  write_shard(dir.file(name + "-tokens"), docs);
  index::BuildOptions o;
  o.shard_prefixes = {dir.file(name + "-tokens")};
  o.output = dir.file(name);
  o.vocab_size = vocab;
  o.shard_tokens = shard_tokens;
  o.progress = 0;
  index::build_index(o);
  return index::Index::open(o.output);
}

// Occurrences of q inside documents (overlapping, never across a document end).
inline uint64_t brute_count(const Docs& docs, const std::vector<int32_t>& q) {
  uint64_t c = 0;
  for (const auto& d : docs)
    for (size_t i = 0; i + q.size() <= d.size(); ++i)
      if (std::equal(q.begin(), q.end(), d.begin() + i)) ++c;
  return c;
}

inline std::set<uint64_t> brute_docs(const Docs& docs, const std::vector<int32_t>& q) {
  std::set<uint64_t> s;
  for (size_t k = 0; k < docs.size(); ++k)
    for (size_t i = 0; i + q.size() <= docs[k].size(); ++i)
      if (std::equal(q.begin(), q.end(), docs[k].begin() + i)) {
        s.insert(k);
        break;
      }
  return s;
}

}  // namespace tsumugi::testing
