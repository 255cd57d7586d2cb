#pragma once
// Dedup keys: exact (hash of whitespace-normalized text) or MinHash-LSH band keys over
// character n-grams. Two documents are duplicate candidates when they share a key;
// the job decides globally, across files and ranks, which copy survives.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tsumugi::corpus {

enum class DedupMode { none, exact, minhash };
DedupMode parse_dedup_mode(const std::string& s);
const char* dedup_mode_name(DedupMode m);

struct DedupOptions {
  DedupMode mode = DedupMode::none;
  int ngram = 5;     // characters (code points) per shingle, as HojiChar
  int bands = 20;    // LSH bands ...
  int rows = 12;     // ... of this many hashes: threshold ≈ (1/bands)^(1/rows) ≈ 0.78
  uint64_t seed = 1;
  int num_perm() const { return bands * rows; }
  // The Jaccard similarity at which a pair becomes a candidate with probability 1/2-ish.
  double threshold() const;
};

class DedupKeyer {
 public:
  explicit DedupKeyer(const DedupOptions& opt);
  // Appends this text's keys (none for empty text).
  void keys(std::string_view text, std::vector<uint64_t>& out) const;
  // MinHash signature (num_perm values); exposed for tests and tools.
  void signature(std::string_view text, std::vector<uint32_t>& sig) const;
  const DedupOptions& options() const { return opt_; }

 private:
  DedupOptions opt_;
  std::vector<uint32_t> mul_, add_;
};

// Fraction of equal signature slots: an unbiased estimate of Jaccard similarity.
double estimate_jaccard(const std::vector<uint32_t>& a, const std::vector<uint32_t>& b);
// Exact Jaccard of the two texts' character n-gram sets (for tests and diagnostics).
double ngram_jaccard(std::string_view a, std::string_view b, int n);

}  // namespace tsumugi::corpus
