#pragma once
// Export of a SentencePiece model (ModelProto) as a Hugging Face `tokenizers` tokenizer:
// tokenizer.json (Unigram or BPE model, normalizer, decoder, added tokens), tokenizer_config.json
// and special_tokens_map.json, so that `tokenizers.Tokenizer.from_file` or transformers'
// `AutoTokenizer.from_pretrained(dir)` loads it and encodes as spm_encode does.
//
// The mapping (SentencePiece 0.1.97 semantics -> tokenizers >= 0.20 JSON schema):
//   normalizer   Sequence of: Precompiled(charsmap) when the model has one; for
//                remove_extra_whitespaces, Replace(/\A +/ -> "") and Replace(/ {2,}/ -> " ");
//                for escape_whitespaces, Replace(" " -> "▁"); for remove_extra_whitespaces,
//                Replace(/▁+\z/ -> "") (SentencePiece strips trailing U+2581 after escaping, literal
//                ones included); for add_dummy_prefix, Prepend("▁") (which, like SentencePiece,
//                leaves an empty result empty). The dummy prefix is a normalizer and not a Metaspace
//                pre-tokenizer because Metaspace skips it when the text already starts with "▁",
//                and SentencePiece does not.
//   model        Unigram: vocab [[piece, score]], unk_id, byte_fallback. Scores are the ones
//                SentencePiece's Viterbi uses: normal pieces their own; user-defined pieces
//                length_in_bytes * max(FLT_MIN, max normal score) - 0.1; pieces SentencePiece never
//                matches in text (control, unknown, byte, unused) a score low enough that no
//                segmentation picks them (tokenizers' Unigram would otherwise match "<0x41>" or
//                "</s>" typed in the text).
//                BPE: vocab {piece: id} and merges [[left, right]] for every split of every
//                normal piece into two normal pieces, ranked by the merged piece's score
//                (SentencePiece merges the pair whose result scores highest), then by its id.
//   pre_tokenizer none (SentencePiece segments the whole normalized line at once), except for BPE
//                with user-defined pieces: Split isolating them, as SentencePiece freezes them.
//   added_tokens control pieces and <unk> (special, normalized=false). User-defined pieces are
//                deliberately not added tokens: tokenizers matches added tokens either in the raw
//                text, splitting it before normalization (so every chunk would get its own dummy
//                prefix), or after normalizing the token's own text too (which prepends "▁" to it,
//                so it only matches at the start of a line). Unigram finds them in its lattice
//                with SentencePiece's own bonus score; BPE isolates them with the pre-tokenizer.
//   decoder      Replace("▁" -> " "), ByteFallback, Fuse, Strip(" ", 1, 0) for the dummy prefix.
//   post_processor TemplateProcessing adding <s> / </s> when asked (add_bos / add_eos).
// treat_whitespace_as_suffix and word/char models have no tokenizers equivalent and are refused.
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "tokenizer/model_proto.h"

namespace tsumugi::tokenizer {

struct HfExportOptions {
  bool add_bos = false;                 // post-processor prepends the bos piece
  bool add_eos = false;                 // post-processor appends the eos piece
  int64_t model_max_length = 4096;      // tokenizer_config.json
};

// tokenizer.json. Throws tsumugi::Error for models tokenizers cannot express.
nlohmann::ordered_json hf_tokenizer_json(const ModelProto& model, const HfExportOptions& options = {});
// tokenizer_config.json (tokenizer_class PreTrainedTokenizerFast, special tokens, added tokens).
nlohmann::ordered_json hf_tokenizer_config_json(const ModelProto& model, const HfExportOptions& options = {});
// special_tokens_map.json.
nlohmann::ordered_json hf_special_tokens_map_json(const ModelProto& model);

// Writes the three files into `dir` (created if missing), each atomically.
void export_hf(const ModelProto& model, const std::string& dir, const HfExportOptions& options = {});

}  // namespace tsumugi::tokenizer
