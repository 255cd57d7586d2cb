#pragma once
// A SentencePiece-compatible tokenizer: loads a `.model` file (ModelProto) and encodes and
// decodes exactly as SentencePiece 0.1.97 does — unigram (Viterbi), BPE (merge by score), word
// and char models; byte fallback; user-defined and control symbols; the precompiled
// normalization map (nmt_nfkc, nfkc, identity, ...); dummy prefix, extra-whitespace removal,
// whitespace escaping and treat_whitespace_as_suffix.
//
// A Tokenizer is cheap to copy (the loaded model is shared and immutable) and every const
// method is safe to call from many threads at once.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/model_proto.h"

namespace tsumugi::tokenizer {

class Tokenizer {
 public:
  // Throws tsumugi::Error naming the file on a missing, truncated, non-protobuf or otherwise
  // unusable model (unknown model type, no <unk>, missing byte pieces, ...).
  static Tokenizer load(const std::string& model_path);
  static Tokenizer from_bytes(std::string_view serialized, const std::string& origin);
  static Tokenizer from_proto(ModelProto model, const std::string& origin);

  // Appends the ids of `text` (one line; any bytes: invalid UTF-8 becomes U+FFFD as in
  // SentencePiece). Same ids as spm_encode --output_format=id.
  void encode(std::string_view text, std::vector<int32_t>& ids) const;
  // Appends the pieces, as spm_encode --output_format=piece prints them.
  void encode_pieces(std::string_view text, std::vector<std::string>& pieces) const;
  // Text for ids, as spm_decode --input_format=id. Throws tsumugi::Error on an id outside
  // [0, vocab_size).
  std::string decode(const std::vector<int32_t>& ids) const;
  // Text for pieces, as spm_decode --input_format=piece (unknown pieces are copied through).
  std::string decode_pieces(const std::vector<std::string_view>& pieces) const;
  std::string decode_pieces(const std::vector<std::string>& pieces) const;

  // The normalized form the model segments (U+2581 for escaped spaces).
  std::string normalize(std::string_view text) const;

  int32_t vocab_size() const;
  int32_t piece_to_id(std::string_view piece) const;  // unk id if absent
  const std::string& id_to_piece(int32_t id) const;   // throws on an id out of range
  float score(int32_t id) const;
  PieceType piece_type(int32_t id) const;
  bool is_control(int32_t id) const { return piece_type(id) == PieceType::control; }
  bool is_unknown(int32_t id) const { return piece_type(id) == PieceType::unknown; }
  bool is_byte(int32_t id) const { return piece_type(id) == PieceType::byte; }
  bool is_unused(int32_t id) const { return piece_type(id) == PieceType::unused; }
  bool is_user_defined(int32_t id) const { return piece_type(id) == PieceType::user_defined; }
  int32_t unk_id() const;
  int32_t bos_id() const;  // -1 if the model has no such control piece
  int32_t eos_id() const;
  int32_t pad_id() const;

  ModelType model_type() const;
  const ModelProto& model() const;
  const std::string& origin() const;

  struct Impl;

 private:
  explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

}  // namespace tsumugi::tokenizer
