#pragma once
// Training SentencePiece-compatible models (`tsumugi tokenizer train`): unigram (suffix-array
// seed pieces, EM with the digamma sparse prior, loss-based pruning, as spm_train does) and BPE
// (frequency-ordered merges, score = -order). The result is a ModelProto that SentencePiece
// loads: meta pieces (<unk>, <s>, </s>, control / user-defined symbols, <0x00>..<0xFF> with byte
// fallback) at the ids spm_train gives them, trainer_spec and normalizer_spec filled.
//
// Normalization: identity, nfkc or nmt_nfkc; the model carries the precompiled charsmap built by
// src/tokenizer/charsmap_builder.h (the *_cf rules are refused).
//
// `mecab`: the sentences are pre-split into MeCab words (src/tokenizer/mecab.h) and no piece is
// learned across a word boundary; the model itself does not need MeCab to encode. This is
// SentencePiece's pretokenization_delimiter (>= 0.1.99) with MeCab as the splitter: unigram
// seed pieces come from within words and EM then runs on the unsplit sentences; BPE never
// merges across a boundary.
#include <cstdint>
#include <string>
#include <vector>

#include "tokenizer/model_proto.h"

namespace tsumugi::tokenizer {

struct TrainOptions {
  std::vector<std::string> inputs;  // text (one sentence a line) or .jsonl[.gz|.zst] (`text_field`)
  std::string text_field = "text";
  std::string model_prefix;         // recorded in trainer_spec
  ModelType model_type = ModelType::unigram;
  int32_t vocab_size = 8000;
  float character_coverage = 0.9995f;
  uint64_t input_sentence_size = 0;  // 0: all sentences; else a reservoir sample of this many
  bool shuffle_input_sentence = true;
  uint64_t seed = 12345678;          // sampling seed
  int32_t max_sentencepiece_length = 16;
  int32_t max_sentence_length = 4192;  // bytes; longer lines are skipped
  int32_t num_threads = 16;
  int32_t seed_sentencepiece_size = 1000000;
  float shrinking_factor = 0.75f;
  int32_t num_sub_iterations = 2;
  bool split_by_unicode_script = true;
  bool split_by_number = true;
  bool split_by_whitespace = true;
  bool split_digits = false;
  bool byte_fallback = false;
  bool hard_vocab_limit = true;
  bool vocabulary_output_piece_score = true;
  std::vector<std::string> control_symbols;
  std::vector<std::string> user_defined_symbols;
  std::string required_chars;
  std::string normalization_rule_name = "identity";
  bool add_dummy_prefix = true;
  bool remove_extra_whitespaces = true;
  int32_t unk_id = 0, bos_id = 1, eos_id = 2, pad_id = -1;
  std::string unk_piece = "<unk>", bos_piece = "<s>", eos_piece = "</s>", pad_piece = "<pad>";
  std::string unk_surface = " \xE2\x81\x87 ";
  bool mecab = false;        // pre-split into MeCab words (see above)
  std::string mecab_args;    // MeCab options, e.g. "-d /var/lib/mecab/dic/juman-utf8"
};

struct TrainStats {
  uint64_t sentences = 0;        // sentences used for training (after sampling)
  uint64_t sentences_total = 0;  // non-empty lines read
  uint64_t skipped_too_long = 0;
  size_t required_chars = 0;
  uint64_t mecab_boundaries = 0;  // word boundaries MeCab added (with TrainOptions::mecab)
  double seconds = 0;
};

// Trains a model. Throws tsumugi::Error on bad options or input (no input, no sentences,
// vocab_size smaller than the meta pieces + required characters, unsupported normalization...).
ModelProto train_model(const TrainOptions& options, TrainStats* stats = nullptr);

// Trains and writes PREFIX.model and PREFIX.vocab.
void train_and_save(const TrainOptions& options, const std::string& prefix, TrainStats* stats = nullptr);

// Re-estimates the scores of a fixed unigram vocabulary: `iterations` EM rounds (forward-backward
// expected counts, digamma M step) over `sentences` (normalized text as the trainer sees it,
// U+2581 for spaces, with frequencies), whole sentences (no whitespace pre-split, so pieces
// spanning several U+2581 get counts). No pruning: every piece is kept, expected counts are
// floored at 0.5 so unseen pieces get a low finite score. Returns the pieces in input order.
std::vector<std::pair<std::string, float>> reestimate_unigram_scores(
    const std::vector<std::pair<std::string, int64_t>>& sentences,
    const std::vector<std::pair<std::string, float>>& pieces, int iterations, int num_threads);

}  // namespace tsumugi::tokenizer
