#pragma once
// A token-level suffix-array index over a corpus (infini-gram's design, on one machine):
// exact-sequence counts, AND/OR document counts, documents with snippets, next-token
// distributions, n-gram and ∞-gram probabilities, and the provenance trace of a text.
//
// INDEXDIR/
//   manifest.json         format, version, token width, vocabulary, tokenizer and its xxh3,
//                         totals, and for every shard its files' sizes and xxh3 checksums
//   tokenizer.model       the SentencePiece model queries are tokenized with (absent for
//                         byte-level indexes and for token shards indexed without one)
//   errors.jsonl          unreadable input records (file, line, reason), when there were any
//   shard-NNNNN/
//     tokens.bin          the documents' tokens, BIG-endian, width W (1, 2 or 4 bytes), each
//                         document followed by the separator (all bits set), so byte order
//                         equals token order and no match crosses a document end
//     sa.bin              the suffix array: n token positions, each a little-endian integer
//                         of P bytes (the fewest that hold n), in suffix order
//     docs.bin            uint64 LE, documents + 1 entries: where each document starts; the
//                         last entry is n
//     meta.bin, meta.idx  each document's metadata as a JSON object; uint64 LE offsets
//
// Size per token: W + P bytes (2 + 4 for 100M-token shards of a < 65,535 vocabulary).
// A shard's suffix array is built by libdivsufsort over tokens.bin's bytes, keeping the
// suffixes that start on a token (the even ones when W is 2): with big-endian tokens, byte
// order of those suffixes is token order. Each shard is built from at most --shard-tokens
// tokens so it fits in memory; queries add up over shards.
//
// Opening checks the manifest against every file's size and (Verify::full) checksum, so a
// truncated, corrupt or mismatched index fails with an Error naming the file, and every
// suffix-array read is bounds-checked so not even an unchecked open can read out of bounds.
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace tsumugi::index {

inline constexpr int kFormatVersion = 1;
inline constexpr const char* kFormatName = "tsumugi-suffix-index";

struct BuildOptions {
  std::vector<std::string> text_inputs;    // JSONL(.gz/.zst) files or globs
  std::vector<std::string> shard_prefixes;  // Megatron PREFIX (.bin/.idx)
  std::string output;                       // INDEXDIR
  std::string tokenizer_path;               // required for text unless bytes
  bool bytes = false;                       // index UTF-8 bytes (byte-level counts, like grep)
  std::string text_field = "text";
  std::vector<std::string> meta_fields = {"id", "source"};  // kept per document (text input)
  uint64_t shard_tokens = 100'000'000;      // tokens per shard (memory while sorting: ~5 B/token x W)
  int64_t vocab_size = 0;                   // token shards without a tokenizer: 0 = largest id + 1
  int progress = -1;                        // -1: when stderr is a terminal, 0: never, 1: always
  bool force = false;                       // replace an existing INDEXDIR
};

struct BuildStats {
  uint64_t documents = 0, tokens = 0, shards = 0;
  uint64_t bad_records = 0, empty_documents = 0;
  uint64_t index_bytes = 0;
  double seconds = 0;
};

BuildStats build_index(const BuildOptions& options);

// Where a query occurs: a document and the token offset in it.
struct Occurrence {
  uint64_t doc = 0;       // global document number (shards in order)
  uint64_t position = 0;  // token offset inside the document
};

struct NextTokens {
  uint64_t count = 0;        // occurrences of the prefix
  uint64_t at_doc_end = 0;   // of those, how many end a document (no next token)
  std::vector<std::pair<int32_t, uint64_t>> tokens;  // next token and its count, by token id
};

struct NgramProb {
  uint64_t prefix_count = 0;  // occurrences of the prefix followed by some token
  uint64_t full_count = 0;    // occurrences of prefix + last
  double prob = 0;            // full / prefix (0 when the prefix never occurs)
};

struct InfGramProb {
  size_t suffix_tokens = 0;   // length of the longest suffix of the context that occurs
  uint64_t suffix_count = 0;  // occurrences of that suffix with a next token
  uint64_t full_count = 0;    // of those, followed by the queried token
  double prob = 0;
};

struct DocHit {
  uint64_t doc = 0, position = 0, doc_tokens = 0;
  std::vector<int32_t> before, match, after;  // the snippet's tokens around the match
  std::string metadata;                       // JSON object
};

struct DocsResult {
  uint64_t occurrences = 0;  // single term: occurrences; CNF: 0
  uint64_t documents = 0;    // documents containing the query (exact unless sampled)
  bool sampled = false;      // too many to list: hits are a seeded random sample
  std::vector<DocHit> hits;
};

struct TraceSpan {
  size_t start = 0, length = 0;  // in the traced text's tokens
  uint64_t count = 0;
  std::vector<DocHit> docs;
};

// A query in conjunctive normal form: AND over clauses, each an OR over token sequences.
using Cnf = std::vector<std::vector<std::vector<int32_t>>>;

class Index {
 public:
  enum class Verify { full, sizes };
  static Index open(const std::string& dir, Verify verify = Verify::full);
  Index(Index&&) noexcept;
  Index& operator=(Index&&) noexcept;
  ~Index();

  const std::string& dir() const;
  int token_width() const;
  int64_t vocab_size() const;
  uint64_t tokens() const;     // corpus tokens (separators not counted)
  uint64_t documents() const;
  size_t shard_count() const;
  // "sentencepiece", "bytes" or "none" (token ids only).
  const std::string& text_kind() const;
  bool accepts_text() const { return text_kind() != "none"; }

  // Tokenizes a query as documents were (SentencePiece without the dummy prefix, so a word
  // matches mid-sentence; or UTF-8 bytes). Throws Error when the index has no tokenizer, and
  // unless allow_unknown, when the text has characters the tokenizer maps to <unk> (which
  // would match any unknown character).
  std::vector<int32_t> tokenize(std::string_view text, bool allow_unknown = false) const;
  // Text of tokens, piece by piece (spaces kept even at the start).
  std::string detokenize(std::span<const int32_t> tokens) const;
  // Throws Error for an empty query or an id outside [0, vocab_size).
  void check_query(std::span<const int32_t> query) const;

  uint64_t count(std::span<const int32_t> query) const;
  // Documents satisfying the CNF.
  uint64_t count_documents(const Cnf& cnf) const;
  NextTokens next(std::span<const int32_t> prefix) const;
  // P(query.back() | the rest); an empty rest means the unigram probability.
  NgramProb prob(std::span<const int32_t> query) const;
  // ∞-gram: P(token | longest suffix of context that occurs). context may be empty.
  InfGramProb infgram_prob(std::span<const int32_t> context, int32_t token) const;
  // Longest suffix of context occurring with a next token, and that distribution.
  NextTokens infgram_next(std::span<const int32_t> context, size_t& suffix_tokens) const;

  struct DocsOptions {
    uint64_t offset = 0, limit = 10;
    uint64_t seed = 0;
    uint64_t max_scan = 10'000;  // occurrences to list exactly (in corpus order); beyond: sample
    size_t context_tokens = 20;   // snippet tokens on each side
  };
  DocsResult docs(std::span<const int32_t> query, const DocsOptions& o) const;
  DocsResult docs(const Cnf& cnf, const DocsOptions& o) const;

  // Maximal spans of tokens of at least min_tokens that occur in the corpus (spans never
  // include the tokenizer's <unk>).
  std::vector<TraceSpan> trace(std::span<const int32_t> tokens, size_t min_tokens, size_t docs_per_span,
                               size_t context_tokens = 20) const;

  std::vector<int32_t> document_tokens(uint64_t doc) const;
  std::string document_metadata(uint64_t doc) const;
  // All occurrences (unordered), for callers that need positions (dedup, tests).
  std::vector<Occurrence> occurrences(std::span<const int32_t> query, uint64_t limit = UINT64_MAX) const;

  struct Impl;
  const Impl& impl() const { return *impl_; }

 private:
  explicit Index(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Splits "a AND b OR c" into clauses of terms (AND binds looser than OR: a AND (b OR c)).
std::vector<std::vector<std::string>> parse_cnf_text(std::string_view query);

}  // namespace tsumugi::index
