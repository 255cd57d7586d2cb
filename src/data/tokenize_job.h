#pragma once
// The `tokenize` job: JSONL documents → a Megatron-LM indexed dataset (PREFIX.bin + PREFIX.idx).
//
// Inputs are read as a stream in batches of lines; batches are parsed and encoded on a thread
// pool and written back in submission order, so the output is byte-identical for any thread
// count and equals the input order. Memory is bounded by the batches in flight plus 4 bytes
// per written document (the sequence lengths the index needs at the end).
//
// Per non-blank line: a record that cannot be read (malformed JSON, missing or non-string text
// field, invalid UTF-8, a tokenizer failure) is counted and written to PREFIX.errors.jsonl with
// file, line and the raw bytes; a document whose text encodes to no tokens is skipped and
// counted: like Megatron's tools/preprocess_data.py it gets no sequence and no EOD (EOD goes
// only after non-empty documents), and unlike it no document entry either (Megatron's
// add_document repeats the previous document index, leaving an empty document that its GPT
// datasets, which sample by sequence, never see). Every other document becomes one sequence
// and one document in the dataset, with the EOD token appended when one is set.
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "data/indexed_dataset.h"

namespace tsumugi::data {

// Appends the token ids of text to ids. Called from several threads at once.
using EncodeFn = std::function<void(std::string_view text, std::vector<int32_t>& ids)>;

struct TokenizeOptions {
  std::vector<std::string> inputs;  // files or globs; empty or "-": stdin
  std::string prefix;               // writes PREFIX.bin, PREFIX.idx (a trailing .bin/.idx is dropped)
  std::string text_field = "text";
  unsigned threads = 0;             // 0: all cores
  int progress = -1;                // -1: when stderr is a terminal, 0: never, 1: always
  int64_t vocab_size = 0;           // picks the dtype: uint16 below 65,500, else int32
  int32_t eod_id = -1;              // appended to every written document; < 0: none
  size_t batch_bytes = 1 << 20;     // JSONL bytes per work unit
};

struct TokenizeStats {
  std::string bin_path, idx_path, errors_path;  // errors_path empty when there were no errors
  DType dtype = DType::uint16;
  unsigned threads = 0;
  uint64_t files = 0, files_truncated = 0;
  uint64_t input_bytes = 0;       // on disk (compressed where the input is)
  uint64_t jsonl_bytes = 0;       // uncompressed JSONL bytes read
  uint64_t text_bytes = 0;        // UTF-8 bytes of the texts that were encoded
  uint64_t lines = 0, blank_lines = 0;
  uint64_t records = 0;           // non-blank lines
  uint64_t bad_records = 0;       // unreadable records (in PREFIX.errors.jsonl)
  uint64_t empty_documents = 0;   // encoded to no tokens: skipped
  uint64_t documents = 0;         // written
  uint64_t tokens = 0;            // written, EOD included
  uint64_t eod_tokens = 0;
  uint64_t bin_bytes = 0, idx_bytes = 0;
  std::map<std::string, uint64_t> error_kinds;
  double seconds = 0;
};

TokenizeStats run_tokenize(const TokenizeOptions& opt, const EncodeFn& encode);

// The summary printed at the end: documents, empty ones skipped, bad records, tokens, bytes,
// tokens/s and MB/s (over uncompressed JSONL).
std::string format_tokenize_summary(const TokenizeStats& s);

}  // namespace tsumugi::data
