#pragma once
// What the unigram and BPE trainers share (SentencePiece's TrainerInterface): loading,
// sampling and normalizing sentences, the required characters (character coverage), meta
// pieces, the piece validity rules (scripts, digits, whitespace, length) and writing the
// ModelProto.
#include <algorithm>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tokenizer/trainer.h"

namespace tsumugi::tokenizer::train {

using Sentence = std::pair<std::string, int64_t>;  // normalized text, frequency
using Piece = std::pair<std::string, float>;       // piece, score

inline constexpr char32_t kUnkChar = 0x2585;        // stands for characters outside the coverage
inline constexpr char32_t kBoundaryChar = 0x09;     // replaces meta pieces found in the text
inline constexpr char32_t kWsChar = 0x2581;

struct Corpus {
  std::vector<Sentence> sentences;
  // Required characters with their counts, ordered as SentencePiece's Sorted(): count
  // descending, then code point ascending.
  std::vector<std::pair<char32_t, int64_t>> required_chars;
  std::map<int32_t, std::pair<std::string, PieceType>> meta_pieces;  // id -> piece, type
};

// Validates options and builds the meta pieces (throws tsumugi::Error).
std::map<int32_t, std::pair<std::string, PieceType>> make_meta_pieces(const TrainOptions& o);

// LoadSentences: reads, samples, normalizes, computes the required characters and replaces
// the others with U+2585.
Corpus load_corpus(const TrainOptions& o, TrainStats* stats);

// Splits every sentence before each U+2581 and counts identical words; sorted by count
// descending then text.
void split_by_whitespace(std::vector<Sentence>& sentences);

std::u32string to_u32(std::string_view s);
void append_utf8(std::string& out, char32_t c);
std::string to_utf8(const std::u32string_view s);

class PieceValidator {
 public:
  explicit PieceValidator(const TrainOptions& o) : o_(o) {}
  bool valid(std::u32string_view piece) const;

 private:
  const TrainOptions& o_;
};

// Pieces (not meta) into a full ModelProto with trainer/normalizer specs.
ModelProto make_model_proto(const TrainOptions& o, const Corpus& corpus, const std::vector<Piece>& final_pieces);

// Worker count actually used: options.num_threads clamped to [1, 256].
unsigned thread_count(const TrainOptions& o);

// Sorts by value descending, then key ascending (SentencePiece's Sorted()).
template <typename K, typename V>
void sort_by_value(std::vector<std::pair<K, V>>& v) {
  std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) {
    return a.second > b.second || (a.second == b.second && a.first < b.first);
  });
}

std::vector<Piece> train_unigram(const TrainOptions& o, Corpus& corpus);
std::vector<Piece> train_bpe(const TrainOptions& o, Corpus& corpus);

}  // namespace tsumugi::tokenizer::train
