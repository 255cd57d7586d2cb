#pragma once
// `tsumugi tokenizer train --recipe llm-jp`: the LLM-jp tokenizer v2.1 recipe in one call.
//   1. one unigram model per domain (code, English, Japanese), each with identity
//      normalization, byte fallback, split digits, no extra-whitespace removal;
//   2. the union of their normal pieces (deduplicated), plus whitespace-run pieces
//      "▁▁" .. "▁" x max_whitespace_run as normal pieces;
//   3. the scores of that merged vocabulary re-estimated by a few EM rounds of the unigram model
//      over the joint corpus (no pruning);
//   4. the final model: ids 0-7 = <unk> <s> </s> <mask> <pad> <CLS> <SEP> <EOD>
//      (<unk> unknown; <s> </s> <pad> control, as spm_train makes bos/eos/pad; <mask> <CLS>
//      <SEP> <EOD> user-defined, as LLM-jp's v2 models were built with --user_defined_symbols:
//      they are matched in raw text, so "<EOD>" typed in a document becomes id 7 — strip or
//      escape them in untrusted text), id 8 = "\n" (user-defined, so newlines survive as one
//      piece instead of bytes), 256 byte pieces (ids 9..264), then the merged pieces by score.
//      Whitespace runs are normal pieces scored by the joint EM (user-defined pieces would
//      always win the lattice and be matched greedily; as normal pieces, runs only win where the
//      data supports them). Identity normalization, add_dummy_prefix true,
//      remove_extra_whitespaces false (so indentation survives).
// The re-estimation EM runs over whole sentences (no whitespace pre-split) so that whitespace
// runs get counts. With `mecab`, the Japanese model is trained on text pre-split into MeCab
// words, as LLM-jp's was, so none of its pieces spans two words (LLM-jp ran `mecab -Owakati`,
// trained on the space-separated words and stripped the "▁" this put before every word from the
// Japanese pieces; here the boundaries are marked without spaces, which leaves the same pieces
// and keeps the text's real spaces). The re-estimation and the final model do not use MeCab.
#include <cstdint>
#include <string>
#include <vector>

#include "tokenizer/model_proto.h"

namespace tsumugi::tokenizer {

struct LlmjpRecipeOptions {
  std::vector<std::string> code_inputs, en_inputs, ja_inputs;  // as TrainOptions::inputs
  std::string text_field = "text";
  int32_t code_vocab_size = 10000, en_vocab_size = 20000, ja_vocab_size = 30000;  // per-domain models
  uint64_t input_sentence_size = 0;  // per domain; 0: all
  uint64_t seed = 12345678;
  int32_t num_threads = 16;
  int32_t em_iterations = 2;       // re-estimation rounds over the joint corpus
  int32_t max_whitespace_run = 16;  // "▁▁".."▁"*N added as pieces (0 or 1: none)
  float character_coverage = 0.9995f;
  bool mecab = false;       // pre-split the Japanese text into MeCab words
  std::string mecab_args;   // MeCab options (e.g. "-d DICDIR"); empty: the system dictionary
  std::string model_prefix;
};

struct LlmjpRecipeStats {
  size_t code_pieces = 0, en_pieces = 0, ja_pieces = 0;  // normal pieces of each domain model
  size_t merged_pieces = 0;                              // normal pieces after union + whitespace runs
  int32_t vocab_size = 0;                                // final
  double seconds = 0;
};

// The domain specials at ids 0..7, in order.
const std::vector<std::string>& llmjp_special_pieces();

// `domain_models`, when given, receives the code, en and ja models (in that order).
ModelProto train_llmjp(const LlmjpRecipeOptions& options, LlmjpRecipeStats* stats = nullptr,
                       std::vector<ModelProto>* domain_models = nullptr);
// Writes PREFIX.model / PREFIX.vocab; with `keep_domain_models` also PREFIX.{code,en,ja}.model.
void train_llmjp_and_save(const LlmjpRecipeOptions& options, const std::string& prefix,
                          LlmjpRecipeStats* stats = nullptr, bool keep_domain_models = false);

}  // namespace tsumugi::tokenizer
