#pragma once
// SentencePiece's ModelProto (the `.model` file) with proto2 semantics: every optional field
// remembers whether it was present, so a model read and written again is byte-identical, and
// fields this code does not know (newer SentencePiece versions, extensions) are carried
// through unchanged. The wire format is read and written by hand: the schema is small and stable,
// and this keeps libprotobuf (and a generated-code step) out of the build.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tsumugi::tokenizer {

enum class PieceType : int32_t { normal = 1, unknown = 2, control = 3, user_defined = 4, unused = 5, byte = 6 };
enum class ModelType : int32_t { unigram = 1, bpe = 2, word = 3, character = 4 };

const char* piece_type_name(PieceType t);
const char* model_type_name(ModelType t);  // "unknown" for values outside the enum

struct SentencePiece {
  std::string piece;                 // field 1
  std::optional<float> score;        // field 2
  std::optional<PieceType> type;     // field 3, default normal
  std::string unknown_fields;        // raw wire bytes of fields not listed above

  PieceType type_or_default() const { return type.value_or(PieceType::normal); }
  float score_or_default() const { return score.value_or(0.0f); }
};

// All fields of SentencePiece 0.1.97's TrainerSpec, numbered as in sentencepiece_model.proto.
// Absent fields take the documented defaults through the *_or_default() accessors.
struct TrainerSpec {
  std::vector<std::string> input;                                // 1
  std::optional<std::string> model_prefix;                       // 2
  std::optional<ModelType> model_type;                           // 3  (unigram)
  std::optional<int32_t> vocab_size;                             // 4  (8000)
  std::vector<std::string> accept_language;                      // 5
  std::optional<int32_t> self_test_sample_size;                  // 6  (0)
  std::optional<std::string> input_format;                       // 7
  std::optional<float> character_coverage;                       // 10 (0.9995)
  std::optional<uint64_t> input_sentence_size;                   // 11 (0)
  std::optional<int32_t> mining_sentence_size;                   // 12 (deprecated)
  std::optional<int32_t> training_sentence_size;                 // 13 (deprecated)
  std::optional<int32_t> seed_sentencepiece_size;                // 14 (1000000)
  std::optional<float> shrinking_factor;                         // 15 (0.75)
  std::optional<int32_t> num_threads;                            // 16 (16)
  std::optional<int32_t> num_sub_iterations;                     // 17 (2)
  std::optional<int32_t> max_sentence_length;                    // 18 (4192)
  std::optional<bool> shuffle_input_sentence;                    // 19 (true)
  std::optional<int32_t> max_sentencepiece_length;               // 20 (16)
  std::optional<bool> split_by_unicode_script;                   // 21 (true)
  std::optional<bool> split_by_whitespace;                       // 22 (true)
  std::optional<bool> split_by_number;                           // 23 (true)
  std::optional<bool> treat_whitespace_as_suffix;                // 24 (false)
  std::optional<bool> split_digits;                              // 25 (false)
  std::optional<bool> allow_whitespace_only_pieces;              // 26 (false)
  std::vector<std::string> control_symbols;                      // 30
  std::vector<std::string> user_defined_symbols;                 // 31
  std::optional<bool> vocabulary_output_piece_score;             // 32 (true)
  std::optional<bool> hard_vocab_limit;                          // 33 (true)
  std::optional<bool> use_all_vocab;                             // 34 (false)
  std::optional<bool> byte_fallback;                             // 35 (false)
  std::optional<std::string> required_chars;                     // 36
  std::optional<int32_t> unk_id;                                 // 40 (0)
  std::optional<int32_t> bos_id;                                 // 41 (1)
  std::optional<int32_t> eos_id;                                 // 42 (2)
  std::optional<int32_t> pad_id;                                 // 43 (-1)
  std::optional<std::string> unk_surface;                        // 44 (" \u2047 ")
  std::optional<std::string> unk_piece;                          // 45 ("<unk>")
  std::optional<std::string> bos_piece;                          // 46 ("<s>")
  std::optional<std::string> eos_piece;                          // 47 ("</s>")
  std::optional<std::string> pad_piece;                          // 48 ("<pad>")
  std::optional<bool> train_extremely_large_corpus;              // 49 (false)
  std::optional<bool> enable_differential_privacy;               // 50 (false)
  std::optional<float> differential_privacy_noise_level;         // 51 (0)
  std::optional<uint64_t> differential_privacy_clipping_threshold;  // 52 (0)
  std::string unknown_fields;

  ModelType model_type_or_default() const { return model_type.value_or(ModelType::unigram); }
  bool byte_fallback_or_default() const { return byte_fallback.value_or(false); }
  bool treat_whitespace_as_suffix_or_default() const { return treat_whitespace_as_suffix.value_or(false); }
  bool vocabulary_output_piece_score_or_default() const { return vocabulary_output_piece_score.value_or(true); }
  // SentencePiece treats an empty piece name like an absent one.
  std::string unk_piece_or_default() const { return unk_piece && !unk_piece->empty() ? *unk_piece : "<unk>"; }
  std::string bos_piece_or_default() const { return bos_piece && !bos_piece->empty() ? *bos_piece : "<s>"; }
  std::string eos_piece_or_default() const { return eos_piece && !eos_piece->empty() ? *eos_piece : "</s>"; }
  std::string pad_piece_or_default() const { return pad_piece && !pad_piece->empty() ? *pad_piece : "<pad>"; }
};

struct NormalizerSpec {
  std::optional<std::string> name;                    // 1
  std::optional<std::string> precompiled_charsmap;    // 2 (bytes)
  std::optional<bool> add_dummy_prefix;               // 3 (true)
  std::optional<bool> remove_extra_whitespaces;       // 4 (true)
  std::optional<bool> escape_whitespaces;             // 5 (true)
  std::optional<std::string> normalization_rule_tsv;  // 6
  std::string unknown_fields;

  bool add_dummy_prefix_or_default() const { return add_dummy_prefix.value_or(true); }
  bool remove_extra_whitespaces_or_default() const { return remove_extra_whitespaces.value_or(true); }
  bool escape_whitespaces_or_default() const { return escape_whitespaces.value_or(true); }
  std::string_view charsmap() const {
    return precompiled_charsmap ? std::string_view(*precompiled_charsmap) : std::string_view();
  }
};

struct SelfTestSample {
  std::optional<std::string> input;     // 1
  std::optional<std::string> expected;  // 2
  std::string unknown_fields;
};

struct SelfTestData {
  std::vector<SelfTestSample> samples;  // 1
  std::string unknown_fields;
};

struct ModelProto {
  std::vector<SentencePiece> pieces;                 // 1
  std::optional<TrainerSpec> trainer_spec;           // 2
  std::optional<NormalizerSpec> normalizer_spec;     // 3
  std::optional<SelfTestData> self_test_data;        // 4
  std::optional<NormalizerSpec> denormalizer_spec;   // 5
  std::string unknown_fields;

  // Absent sub-messages read as all-defaults, as in protobuf.
  const TrainerSpec& trainer() const;
  const NormalizerSpec& normalizer() const;
};

// Parses a serialized ModelProto. Malformed wire data (truncation, bad wire types, lengths past
// the end, wrong field types) throws tsumugi::Error naming `origin` and the byte offset.
// Semantic checks (unk piece present, byte pieces...) are the Tokenizer's job.
ModelProto parse_model_proto(std::string_view bytes, const std::string& origin);
// Serializes in field-number order followed by unknown fields, as protobuf's C++ runtime does.
std::string serialize_model_proto(const ModelProto& model);

ModelProto load_model_proto(const std::string& path);
// Writes atomically (temporary file renamed into place).
void save_model_proto(const ModelProto& model, const std::string& path);

// The `.vocab` text spm_train writes: "piece<TAB>score" per line (score as C++ iostreams print a
// float, i.e. %g), or only the piece when vocabulary_output_piece_score is false.
std::string format_vocab(const ModelProto& model);
void save_vocab(const ModelProto& model, const std::string& path);

// "<0x41>" for byte 0x41, as SentencePiece names byte pieces.
std::string byte_piece(uint8_t b);
// The byte a "<0xNN>" piece stands for (upper-case hex, exactly as byte_piece writes), else -1.
int piece_to_byte(std::string_view piece);

}  // namespace tsumugi::tokenizer
