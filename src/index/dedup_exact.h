#pragma once
// Exact-substring deduplication (Lee et al., "Deduplicating Training Data Makes Language Models
// Better", 2022) on a suffix-array index: every run of at least N tokens that occurs more than
// once in the corpus is kept at its first occurrence (corpus order: shards, then documents,
// then position) and removed everywhere else.
//
// Rule, per token: a token is removed when it lies inside an occurrence of some N-token
// sequence that is not that sequence's first occurrence. A repeated span of L >= N tokens is
// thus removed whole from every later copy, and nothing shorter than N tokens is touched.
// Sequences never cross a document end.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "index/suffix_index.h"

namespace tsumugi::index {

// Removed token ranges [begin, end) of each document (by global document number).
std::vector<std::vector<std::pair<uint64_t, uint64_t>>> duplicate_spans(const Index& index, size_t min_tokens);

struct DedupExactOptions {
  std::string index_dir;
  std::string output;       // JSONL (.gz/.zst by extension): metadata fields + "text"
  size_t min_tokens = 50;   // Lee et al. used 50 BPE tokens
  bool keep_empty = false;  // write documents that lose every token (with empty text)
};

struct DedupExactStats {
  uint64_t documents = 0, written = 0, emptied = 0, changed = 0;
  uint64_t tokens = 0, removed_tokens = 0, removed_spans = 0;
};

// Writes the deduplicated documents, in corpus order, as text detokenized from the kept
// tokens (a SentencePiece index gives its normalized text; a byte index, the bytes, with
// removal widened or narrowed to whole UTF-8 characters by their lead byte).
DedupExactStats dedup_exact(const DedupExactOptions& options);

}  // namespace tsumugi::index
