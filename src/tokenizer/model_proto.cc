#include "tokenizer/model_proto.h"

#include <fmt/format.h>

#include <cstring>
#include <variant>

#include "util/error.h"
#include "util/io.h"

namespace tsumugi::tokenizer {

const char* piece_type_name(PieceType t) {
  switch (t) {
    case PieceType::normal: return "normal";
    case PieceType::unknown: return "unknown";
    case PieceType::control: return "control";
    case PieceType::user_defined: return "user_defined";
    case PieceType::unused: return "unused";
    case PieceType::byte: return "byte";
  }
  return "invalid";
}

const char* model_type_name(ModelType t) {
  switch (t) {
    case ModelType::unigram: return "unigram";
    case ModelType::bpe: return "bpe";
    case ModelType::word: return "word";
    case ModelType::character: return "char";
  }
  return "unknown";
}

const TrainerSpec& ModelProto::trainer() const {
  static const TrainerSpec kDefault;
  return trainer_spec ? *trainer_spec : kDefault;
}

const NormalizerSpec& ModelProto::normalizer() const {
  static const NormalizerSpec kDefault;
  return normalizer_spec ? *normalizer_spec : kDefault;
}

namespace {

enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLen = 2, kStartGroup = 3, kEndGroup = 4, kFixed32 = 5 };

// ---- reading -------------------------------------------------------------------------------

class Reader {
 public:
  Reader(const uint8_t* begin, const uint8_t* end, const uint8_t* base, const std::string& origin)
      : p_(begin), end_(end), base_(base), origin_(origin) {}

  bool done() const { return p_ >= end_; }
  const uint8_t* pos() const { return p_; }

  [[noreturn]] void bad(std::string_view what) const {
    fail("{}: not a valid SentencePiece model: {} at byte {}", origin_, what, size_t(p_ - base_));
  }

  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
      if (p_ >= end_) bad("truncated varint");
      uint8_t b = *p_++;
      if (shift == 63 && b > 1) bad("varint overflows 64 bits");
      v |= uint64_t(b & 0x7F) << shift;
      if (!(b & 0x80)) return v;
    }
    bad("varint longer than 10 bytes");
  }
  uint32_t fixed32() {
    if (end_ - p_ < 4) bad("truncated fixed32");
    uint32_t v;
    std::memcpy(&v, p_, 4);  // little-endian hosts only (x86-64, aarch64)
    p_ += 4;
    return v;
  }
  std::string_view bytes() {
    uint64_t n = varint();
    if (n > uint64_t(end_ - p_)) bad(fmt::format("length {} runs past the end of the data", n));
    std::string_view s(reinterpret_cast<const char*>(p_), size_t(n));
    p_ += n;
    return s;
  }
  Reader sub(std::string_view s) const {
    auto b = reinterpret_cast<const uint8_t*>(s.data());
    return Reader(b, b + s.size(), base_, origin_);
  }
  // Skips the value of a field whose tag was just read (a whole group for a start-group tag).
  void skip(uint32_t wire, uint32_t number, int depth = 0) {
    switch (wire) {
      case kVarint: varint(); return;
      case kFixed64:
        if (end_ - p_ < 8) bad("truncated fixed64");
        p_ += 8;
        return;
      case kLen: bytes(); return;
      case kFixed32: fixed32(); return;
      case kStartGroup: {
        if (depth > 64) bad("groups nested too deeply");
        for (;;) {
          if (done()) bad("unterminated group");
          uint64_t tag = varint();
          uint32_t w = uint32_t(tag & 7), n = uint32_t(tag >> 3);
          if (n == 0) bad("field number 0");
          if (w == kEndGroup) {
            if (n != number) bad("mismatched end of group");
            return;
          }
          skip(w, n, depth + 1);
        }
      }
      case kEndGroup: bad("unexpected end of group");
      default: bad(fmt::format("invalid wire type {}", wire));
    }
  }

 private:
  const uint8_t* p_;
  const uint8_t* end_;
  const uint8_t* base_;
  const std::string& origin_;
};

// Reads one tag and lets `handle(number, wire, reader)` consume known fields (returning true);
// anything else is skipped and kept verbatim in `unknown`.
template <typename Handle>
void parse_message(Reader& r, std::string& unknown, Handle&& handle) {
  while (!r.done()) {
    const uint8_t* start = r.pos();
    uint64_t tag = r.varint();
    uint32_t wire = uint32_t(tag & 7);
    uint64_t number = tag >> 3;
    if (number == 0) r.bad("field number 0");
    if (number > 0x1FFFFFFF) r.bad("field number out of range");
    if (wire == kEndGroup) r.bad("unexpected end of group");
    if (handle(uint32_t(number), wire, r)) continue;
    r.skip(wire, uint32_t(number));
    unknown.append(reinterpret_cast<const char*>(start), size_t(r.pos() - start));
  }
}

// Field tables: each message's scalar and string fields by number, so parsing and
// serializing walk the same list.
template <typename M>
using Member = std::variant<std::optional<std::string> M::*, std::optional<int32_t> M::*,
                            std::optional<uint64_t> M::*, std::optional<bool> M::*,
                            std::optional<float> M::*, std::optional<ModelType> M::*,
                            std::vector<std::string> M::*>;
template <typename M>
struct Field {
  uint32_t number;
  Member<M> member;
};

template <typename M>
bool read_field(M& msg, const Field<M>& f, uint32_t wire, Reader& r) {
  return std::visit(
      [&](auto mp) -> bool {
        using T = std::remove_cvref_t<decltype(msg.*mp)>;
        if constexpr (std::is_same_v<T, std::vector<std::string>>) {
          if (wire != kLen) return false;
          (msg.*mp).emplace_back(r.bytes());
        } else if constexpr (std::is_same_v<T, std::optional<std::string>>) {
          if (wire != kLen) return false;
          msg.*mp = std::string(r.bytes());
        } else if constexpr (std::is_same_v<T, std::optional<float>>) {
          if (wire != kFixed32) return false;
          uint32_t bits = r.fixed32();
          float v;
          std::memcpy(&v, &bits, 4);
          msg.*mp = v;
        } else if constexpr (std::is_same_v<T, std::optional<bool>>) {
          if (wire != kVarint) return false;
          msg.*mp = r.varint() != 0;
        } else if constexpr (std::is_same_v<T, std::optional<uint64_t>>) {
          if (wire != kVarint) return false;
          msg.*mp = r.varint();
        } else if constexpr (std::is_same_v<T, std::optional<int32_t>>) {
          if (wire != kVarint) return false;
          msg.*mp = int32_t(uint32_t(r.varint()));
        } else {  // enum
          if (wire != kVarint) return false;
          msg.*mp = static_cast<typename T::value_type>(int32_t(uint32_t(r.varint())));
        }
        return true;
      },
      f.member);
}

// ---- writing -------------------------------------------------------------------------------

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(char(uint8_t(v) | 0x80));
    v >>= 7;
  }
  out.push_back(char(v));
}
void put_tag(std::string& out, uint32_t number, uint32_t wire) { put_varint(out, (uint64_t(number) << 3) | wire); }
void put_bytes(std::string& out, uint32_t number, std::string_view s) {
  put_tag(out, number, kLen);
  put_varint(out, s.size());
  out.append(s);
}
void put_fixed32(std::string& out, uint32_t number, float v) {
  put_tag(out, number, kFixed32);
  char b[4];
  std::memcpy(b, &v, 4);
  out.append(b, 4);
}
// int32 and enums are sign-extended to 64 bits on the wire, as protobuf does.
void put_int32(std::string& out, uint32_t number, int32_t v) {
  put_tag(out, number, kVarint);
  put_varint(out, uint64_t(int64_t(v)));
}

template <typename M>
void write_field(const M& msg, const Field<M>& f, std::string& out) {
  std::visit(
      [&](auto mp) {
        using T = std::remove_cvref_t<decltype(msg.*mp)>;
        const auto& v = msg.*mp;
        if constexpr (std::is_same_v<T, std::vector<std::string>>) {
          for (const auto& s : v) put_bytes(out, f.number, s);
        } else {
          if (!v) return;
          if constexpr (std::is_same_v<T, std::optional<std::string>>) {
            put_bytes(out, f.number, *v);
          } else if constexpr (std::is_same_v<T, std::optional<float>>) {
            put_fixed32(out, f.number, *v);
          } else if constexpr (std::is_same_v<T, std::optional<bool>>) {
            put_tag(out, f.number, kVarint);
            put_varint(out, *v ? 1 : 0);
          } else if constexpr (std::is_same_v<T, std::optional<uint64_t>>) {
            put_tag(out, f.number, kVarint);
            put_varint(out, *v);
          } else if constexpr (std::is_same_v<T, std::optional<int32_t>>) {
            put_int32(out, f.number, *v);
          } else {
            put_int32(out, f.number, int32_t(*v));
          }
        }
      },
      f.member);
}

using TS = TrainerSpec;
// In field-number order (the serialization order).
const std::vector<Field<TS>>& trainer_fields() {
  static const std::vector<Field<TS>> kFields = {
      {1, &TS::input},
      {2, &TS::model_prefix},
      {3, &TS::model_type},
      {4, &TS::vocab_size},
      {5, &TS::accept_language},
      {6, &TS::self_test_sample_size},
      {7, &TS::input_format},
      {10, &TS::character_coverage},
      {11, &TS::input_sentence_size},
      {12, &TS::mining_sentence_size},
      {13, &TS::training_sentence_size},
      {14, &TS::seed_sentencepiece_size},
      {15, &TS::shrinking_factor},
      {16, &TS::num_threads},
      {17, &TS::num_sub_iterations},
      {18, &TS::max_sentence_length},
      {19, &TS::shuffle_input_sentence},
      {20, &TS::max_sentencepiece_length},
      {21, &TS::split_by_unicode_script},
      {22, &TS::split_by_whitespace},
      {23, &TS::split_by_number},
      {24, &TS::treat_whitespace_as_suffix},
      {25, &TS::split_digits},
      {26, &TS::allow_whitespace_only_pieces},
      {30, &TS::control_symbols},
      {31, &TS::user_defined_symbols},
      {32, &TS::vocabulary_output_piece_score},
      {33, &TS::hard_vocab_limit},
      {34, &TS::use_all_vocab},
      {35, &TS::byte_fallback},
      {36, &TS::required_chars},
      {40, &TS::unk_id},
      {41, &TS::bos_id},
      {42, &TS::eos_id},
      {43, &TS::pad_id},
      {44, &TS::unk_surface},
      {45, &TS::unk_piece},
      {46, &TS::bos_piece},
      {47, &TS::eos_piece},
      {48, &TS::pad_piece},
      {49, &TS::train_extremely_large_corpus},
      {50, &TS::enable_differential_privacy},
      {51, &TS::differential_privacy_noise_level},
      {52, &TS::differential_privacy_clipping_threshold},
  };
  return kFields;
}

using NS = NormalizerSpec;
const std::vector<Field<NS>>& normalizer_fields() {
  static const std::vector<Field<NS>> kFields = {
      {1, &NS::name},
      {2, &NS::precompiled_charsmap},
      {3, &NS::add_dummy_prefix},
      {4, &NS::remove_extra_whitespaces},
      {5, &NS::escape_whitespaces},
      {6, &NS::normalization_rule_tsv},
  };
  return kFields;
}

template <typename M>
void parse_table_message(Reader r, M& msg, const std::vector<Field<M>>& fields) {
  parse_message(r, msg.unknown_fields, [&](uint32_t number, uint32_t wire, Reader& rr) {
    for (const auto& f : fields)
      if (f.number == number) return read_field(msg, f, wire, rr);
    return false;
  });
}

template <typename M>
std::string serialize_table_message(const M& msg, const std::vector<Field<M>>& fields) {
  std::string out;
  for (const auto& f : fields) write_field(msg, f, out);
  out += msg.unknown_fields;
  return out;
}

void parse_piece(Reader r, SentencePiece& sp) {
  parse_message(r, sp.unknown_fields, [&](uint32_t number, uint32_t wire, Reader& rr) {
    if (number == 1 && wire == kLen) {
      sp.piece = std::string(rr.bytes());
    } else if (number == 2 && wire == kFixed32) {
      uint32_t bits = rr.fixed32();
      float v;
      std::memcpy(&v, &bits, 4);
      sp.score = v;
    } else if (number == 3 && wire == kVarint) {
      sp.type = static_cast<PieceType>(int32_t(uint32_t(rr.varint())));
    } else {
      return false;
    }
    return true;
  });
}

std::string serialize_piece(const SentencePiece& sp) {
  std::string out;
  put_bytes(out, 1, sp.piece);
  if (sp.score) put_fixed32(out, 2, *sp.score);
  if (sp.type) put_int32(out, 3, int32_t(*sp.type));
  out += sp.unknown_fields;
  return out;
}

void parse_self_test(Reader r, SelfTestData& data) {
  parse_message(r, data.unknown_fields, [&](uint32_t number, uint32_t wire, Reader& rr) {
    if (number != 1 || wire != kLen) return false;
    SelfTestSample s;
    Reader sr = rr.sub(rr.bytes());
    parse_message(sr, s.unknown_fields, [&](uint32_t n, uint32_t w, Reader& r3) {
      if (w != kLen || (n != 1 && n != 2)) return false;
      (n == 1 ? s.input : s.expected) = std::string(r3.bytes());
      return true;
    });
    data.samples.push_back(std::move(s));
    return true;
  });
}

std::string serialize_self_test(const SelfTestData& data) {
  std::string out;
  for (const auto& s : data.samples) {
    std::string m;
    if (s.input) put_bytes(m, 1, *s.input);
    if (s.expected) put_bytes(m, 2, *s.expected);
    m += s.unknown_fields;
    put_bytes(out, 1, m);
  }
  out += data.unknown_fields;
  return out;
}

}  // namespace

ModelProto parse_model_proto(std::string_view bytes, const std::string& origin) {
  ModelProto model;
  auto b = reinterpret_cast<const uint8_t*>(bytes.data());
  Reader r(b, b + bytes.size(), b, origin);
  // A repeated singular message field merges, as in protobuf.
  parse_message(r, model.unknown_fields, [&](uint32_t number, uint32_t wire, Reader& rr) {
    if (wire != kLen || number < 1 || number > 5) return false;
    Reader sub = rr.sub(rr.bytes());
    switch (number) {
      case 1: parse_piece(sub, model.pieces.emplace_back()); break;
      case 2:
        if (!model.trainer_spec) model.trainer_spec.emplace();
        parse_table_message(sub, *model.trainer_spec, trainer_fields());
        break;
      case 3:
        if (!model.normalizer_spec) model.normalizer_spec.emplace();
        parse_table_message(sub, *model.normalizer_spec, normalizer_fields());
        break;
      case 4:
        if (!model.self_test_data) model.self_test_data.emplace();
        parse_self_test(sub, *model.self_test_data);
        break;
      case 5:
        if (!model.denormalizer_spec) model.denormalizer_spec.emplace();
        parse_table_message(sub, *model.denormalizer_spec, normalizer_fields());
        break;
    }
    return true;
  });
  return model;
}

std::string serialize_model_proto(const ModelProto& model) {
  std::string out;
  out.reserve(model.pieces.size() * 24 + 4096);
  for (const auto& p : model.pieces) put_bytes(out, 1, serialize_piece(p));
  if (model.trainer_spec) put_bytes(out, 2, serialize_table_message(*model.trainer_spec, trainer_fields()));
  if (model.normalizer_spec)
    put_bytes(out, 3, serialize_table_message(*model.normalizer_spec, normalizer_fields()));
  if (model.self_test_data) put_bytes(out, 4, serialize_self_test(*model.self_test_data));
  if (model.denormalizer_spec)
    put_bytes(out, 5, serialize_table_message(*model.denormalizer_spec, normalizer_fields()));
  out += model.unknown_fields;
  return out;
}

ModelProto load_model_proto(const std::string& path) { return parse_model_proto(read_file(path), path); }

void save_model_proto(const ModelProto& model, const std::string& path) {
  write_file_atomic(path, serialize_model_proto(model));
}

std::string format_vocab(const ModelProto& model) {
  std::string out;
  out.reserve(model.pieces.size() * 16);
  const bool with_score = model.trainer().vocabulary_output_piece_score_or_default();
  char buf[64];
  for (const auto& p : model.pieces) {
    out += p.piece;
    if (with_score) {
      // std::ostream << float: default precision 6 in %g style.
      int n = std::snprintf(buf, sizeof buf, "\t%g", double(p.score_or_default()));
      out.append(buf, size_t(n));
    }
    out += '\n';
  }
  return out;
}

void save_vocab(const ModelProto& model, const std::string& path) { write_file_atomic(path, format_vocab(model)); }

std::string byte_piece(uint8_t b) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string s = "<0x00>";
  s[3] = kHex[b >> 4];
  s[4] = kHex[b & 15];
  return s;
}

int piece_to_byte(std::string_view piece) {
  if (piece.size() != 6 || piece.substr(0, 3) != "<0x" || piece[5] != '>') return -1;
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  int hi = hex(piece[3]), lo = hex(piece[4]);
  if (hi < 0 || lo < 0) return -1;
  return hi * 16 + lo;
}

}  // namespace tsumugi::tokenizer
