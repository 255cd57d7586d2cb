#include "tokenizer/hf_export.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cfloat>
#include <filesystem>
#include <optional>
#include <tuple>
#include <unordered_map>

#include "util/base64.h"
#include "util/error.h"
#include "util/io.h"

namespace tsumugi::tokenizer {

namespace {

using json = nlohmann::ordered_json;

const char kSpaceSymbol[] = "\xE2\x96\x81";  // U+2581


// Code points in a UTF-8 string (continuation bytes not counted).
size_t char_count(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

// Byte offsets of the character boundaries strictly inside `s`.
std::vector<size_t> inner_boundaries(std::string_view s) {
  std::vector<size_t> out;
  for (size_t i = 1; i < s.size(); ++i)
    if ((uint8_t(s[i]) & 0xC0) != 0x80) out.push_back(i);
  return out;
}

json replace_regex(const std::string& pattern, const std::string& content) {
  return json{{"type", "Replace"}, {"pattern", {{"Regex", pattern}}}, {"content", content}};
}
json replace_string(const std::string& pattern, const std::string& content) {
  return json{{"type", "Replace"}, {"pattern", {{"String", pattern}}}, {"content", content}};
}

json added_token(int32_t id, const std::string& content, bool normalized, bool special) {
  return json{{"id", id},         {"content", content},        {"single_word", false}, {"lstrip", false},
              {"rstrip", false},  {"normalized", normalized},  {"special", special}};
}

// The piece `name` if the model has it with type `type`, else empty.
std::optional<int32_t> find_piece(const ModelProto& m, const std::string& name, PieceType type) {
  for (size_t i = 0; i < m.pieces.size(); ++i)
    if (m.pieces[i].piece == name && m.pieces[i].type_or_default() == type) return int32_t(i);
  return std::nullopt;
}

struct Specials {
  std::optional<int32_t> unk, bos, eos, pad;
};

Specials specials(const ModelProto& m) {
  const TrainerSpec& ts = m.trainer();
  Specials s;
  s.unk = find_piece(m, ts.unk_piece_or_default(), PieceType::unknown);
  if (!s.unk) {  // the unknown piece under another name
    for (size_t i = 0; i < m.pieces.size(); ++i)
      if (m.pieces[i].type_or_default() == PieceType::unknown) s.unk = int32_t(i);
  }
  s.bos = find_piece(m, ts.bos_piece_or_default(), PieceType::control);
  s.eos = find_piece(m, ts.eos_piece_or_default(), PieceType::control);
  s.pad = find_piece(m, ts.pad_piece_or_default(), PieceType::control);
  return s;
}

void check_supported(const ModelProto& m) {
  const ModelType type = m.trainer().model_type_or_default();
  if (type != ModelType::unigram && type != ModelType::bpe)
    fail("cannot export a {} model to Hugging Face tokenizers: only unigram and bpe models are supported",
         model_type_name(type));
  if (m.trainer().treat_whitespace_as_suffix_or_default() && m.normalizer().add_dummy_prefix_or_default())
    fail("cannot export a model trained with treat_whitespace_as_suffix: Hugging Face tokenizers has no "
         "normalizer that appends the dummy suffix");
  if (!specials(m).unk) fail("the model has no unknown piece (<unk>)");
  if (m.pieces.empty()) fail("the model has no pieces");
}

json normalizer_json(const ModelProto& m) {
  const NormalizerSpec& ns = m.normalizer();
  json seq = json::array();
  if (!ns.charsmap().empty())
    seq.push_back(json{{"type", "Precompiled"}, {"precompiled_charsmap", base64_encode(ns.charsmap())}});
  const bool remove_ws = ns.remove_extra_whitespaces_or_default();
  const bool escape = ns.escape_whitespaces_or_default();
  if (remove_ws) {
    seq.push_back(replace_regex("\\A +", ""));
    seq.push_back(replace_regex(" {2,}", " "));
  }
  if (escape) seq.push_back(replace_string(" ", kSpaceSymbol));
  if (remove_ws) seq.push_back(replace_regex(escape ? std::string(kSpaceSymbol) + "+\\z" : std::string(" +\\z"), ""));
  if (ns.add_dummy_prefix_or_default())
    seq.push_back(json{{"type", "Prepend"}, {"prepend", escape ? std::string(kSpaceSymbol) : std::string(" ")}});
  if (seq.empty()) return nullptr;
  return json{{"type", "Sequence"}, {"normalizers", std::move(seq)}};
}

json decoder_json(const ModelProto& m) {
  const NormalizerSpec& ns = m.normalizer();
  json seq = json::array();
  if (ns.escape_whitespaces_or_default()) seq.push_back(replace_string(kSpaceSymbol, " "));
  if (m.trainer().byte_fallback_or_default()) seq.push_back(json{{"type", "ByteFallback"}});
  seq.push_back(json{{"type", "Fuse"}});
  if (ns.add_dummy_prefix_or_default())
    seq.push_back(json{{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});
  return json{{"type", "Sequence"}, {"decoders", std::move(seq)}};
}

bool viterbi_piece(PieceType t) { return t == PieceType::normal || t == PieceType::user_defined; }

json unigram_model_json(const ModelProto& m, int32_t unk_id) {
  // SentencePiece's Viterbi: max_score starts at FLT_MIN (the smallest positive float) and is
  // the maximum over normal pieces; user-defined pieces score length * max_score - 0.1.
  float min_normal = FLT_MAX, max_normal = FLT_MIN;
  size_t longest_reserved = 1;
  for (const auto& p : m.pieces) {
    if (p.type_or_default() == PieceType::normal) {
      min_normal = std::min(min_normal, p.score_or_default());
      max_normal = std::max(max_normal, p.score_or_default());
    } else if (!viterbi_piece(p.type_or_default())) {
      longest_reserved = std::max(longest_reserved, char_count(p.piece));
    }
  }
  if (min_normal == FLT_MAX) min_normal = 0.0f;
  // Replacing a reserved piece of n <= longest_reserved characters by its characters' own
  // pieces (each >= min_normal, at most n of them) always scores higher than this.
  const double base = double(std::min(min_normal, 0.0f)) - 1.0;
  const double reserved_score = base * double(longest_reserved + 1);
  json vocab = json::array();
  for (const auto& p : m.pieces) {
    double score;
    switch (p.type_or_default()) {
      case PieceType::normal: score = double(p.score_or_default()); break;
      case PieceType::user_defined: score = double(float(p.piece.size()) * max_normal) - 0.1; break;
      default: score = reserved_score; break;
    }
    vocab.push_back(json::array({p.piece, score}));
  }
  return json{{"type", "Unigram"},
              {"unk_id", unk_id},
              {"vocab", std::move(vocab)},
              {"byte_fallback", m.trainer().byte_fallback_or_default()}};
}

json bpe_model_json(const ModelProto& m, int32_t unk_id) {
  json vocab = json::object();
  std::unordered_map<std::string_view, int32_t> normal;
  for (size_t i = 0; i < m.pieces.size(); ++i) {
    const auto& p = m.pieces[i];
    if (!vocab.contains(p.piece)) vocab[p.piece] = int32_t(i);
    if (p.type_or_default() == PieceType::normal) normal.emplace(p.piece, int32_t(i));
  }
  // (merged piece score descending, merged id, split offset) -> merge
  struct Merge {
    float score;
    int32_t id;
    size_t split;
  };
  std::vector<Merge> merges;
  for (size_t i = 0; i < m.pieces.size(); ++i) {
    const auto& p = m.pieces[i];
    if (p.type_or_default() != PieceType::normal) continue;
    const std::string_view s = p.piece;
    for (size_t cut : inner_boundaries(s))
      if (normal.count(s.substr(0, cut)) && normal.count(s.substr(cut)))
        merges.push_back(Merge{p.score_or_default(), int32_t(i), cut});
  }
  std::sort(merges.begin(), merges.end(), [](const Merge& a, const Merge& b) {
    return std::tie(b.score, a.id, a.split) < std::tie(a.score, b.id, b.split);
  });
  // User-defined pieces come whole out of the Split pre-tokenizer but no merge builds them:
  // ignore_merges takes a pre-token that is a vocabulary piece as it is.
  bool has_user = false;
  for (const auto& p : m.pieces) has_user |= p.type_or_default() == PieceType::user_defined;
  json merge_list = json::array();
  for (const auto& mg : merges) {
    const std::string& s = m.pieces[size_t(mg.id)].piece;
    merge_list.push_back(json::array({s.substr(0, mg.split), s.substr(mg.split)}));
  }
  return json{{"type", "BPE"},
              {"dropout", nullptr},
              {"unk_token", m.pieces[size_t(unk_id)].piece},
              {"continuing_subword_prefix", nullptr},
              {"end_of_word_suffix", nullptr},
              {"fuse_unk", true},
              {"byte_fallback", m.trainer().byte_fallback_or_default()},
              {"ignore_merges", has_user},
              {"vocab", std::move(vocab)},
              {"merges", std::move(merge_list)}};
}

json post_processor_json(const ModelProto& m, const HfExportOptions& o) {
  if (!o.add_bos && !o.add_eos) return nullptr;
  const Specials sp = specials(m);
  if (o.add_bos && !sp.bos) fail("add_bos: the model has no control piece {}", m.trainer().bos_piece_or_default());
  if (o.add_eos && !sp.eos) fail("add_eos: the model has no control piece {}", m.trainer().eos_piece_or_default());
  auto special = [](const std::string& piece) { return json{{"SpecialToken", {{"id", piece}, {"type_id", 0}}}}; };
  auto seq = [](const char* id) { return json{{"Sequence", {{"id", id}, {"type_id", 0}}}}; };
  const std::string bos = sp.bos ? m.pieces[size_t(*sp.bos)].piece : "";
  const std::string eos = sp.eos ? m.pieces[size_t(*sp.eos)].piece : "";
  auto sequence_for = [&](const char* part) {
    json out = json::array();
    if (o.add_bos) out.push_back(special(bos));
    out.push_back(seq(part));
    if (o.add_eos) out.push_back(special(eos));
    return out;
  };
  json single = sequence_for("A"), pair = sequence_for("A"), tokens = json::object();
  for (auto& e : sequence_for("B")) pair.push_back(e);
  if (o.add_bos) tokens[bos] = json{{"id", bos}, {"ids", {*sp.bos}}, {"tokens", {bos}}};
  if (o.add_eos) tokens[eos] = json{{"id", eos}, {"ids", {*sp.eos}}, {"tokens", {eos}}};
  return json{{"type", "TemplateProcessing"}, {"single", single}, {"pair", pair}, {"special_tokens", tokens}};
}

// Control pieces and the unknown piece: special, matched in the raw text. User-defined pieces are
// not added tokens (see the header): their text is handled by the model.
json added_tokens_json(const ModelProto& m) {
  json out = json::array();
  for (size_t i = 0; i < m.pieces.size(); ++i) {
    const auto& p = m.pieces[i];
    const PieceType t = p.type_or_default();
    if (t == PieceType::control || t == PieceType::unknown) out.push_back(added_token(int32_t(i), p.piece, false, true));
  }
  return out;
}

// An Oniguruma pattern matching `s` literally: ASCII other than letters and digits as \x{HH}.
std::string regex_literal(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (c < 0x80 && !std::isalnum(c))
      out += fmt::format("\\x{{{:02X}}}", c);
    else
      out += char(c);
  }
  return out;
}

// BPE: SentencePiece freezes user-defined symbols (leftmost, longest first) before merging, so
// merges never cross them: a Split pre-tokenizer isolating them does the same.
json pre_tokenizer_json(const ModelProto& m) {
  if (m.trainer().model_type_or_default() != ModelType::bpe) return nullptr;
  std::vector<std::string_view> user;
  for (const auto& p : m.pieces)
    if (p.type_or_default() == PieceType::user_defined && !p.piece.empty()) user.push_back(p.piece);
  if (user.empty()) return nullptr;
  std::stable_sort(user.begin(), user.end(), [](auto a, auto b) { return a.size() > b.size(); });
  std::string pattern;
  for (auto u : user) {
    if (!pattern.empty()) pattern += '|';
    pattern += regex_literal(u);
  }
  return json{{"type", "Split"}, {"pattern", {{"Regex", pattern}}}, {"behavior", "Isolated"}, {"invert", false}};
}

json token_entry(const std::string& content, bool normalized) {
  return json{{"content", content}, {"lstrip", false}, {"normalized", normalized}, {"rstrip", false},
              {"single_word", false}};
}

}  // namespace

json hf_tokenizer_json(const ModelProto& model, const HfExportOptions& options) {
  check_supported(model);
  const int32_t unk = *specials(model).unk;
  json j;
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  j["added_tokens"] = added_tokens_json(model);
  j["normalizer"] = normalizer_json(model);
  j["pre_tokenizer"] = pre_tokenizer_json(model);
  j["post_processor"] = post_processor_json(model, options);
  j["decoder"] = decoder_json(model);
  j["model"] = model.trainer().model_type_or_default() == ModelType::unigram ? unigram_model_json(model, unk)
                                                                               : bpe_model_json(model, unk);
  return j;
}

json hf_special_tokens_map_json(const ModelProto& model) {
  const Specials sp = specials(model);
  json j = json::object();
  auto put = [&](const char* key, const std::optional<int32_t>& id) {
    if (id) j[key] = token_entry(model.pieces[size_t(*id)].piece, false);
  };
  put("bos_token", sp.bos);
  put("eos_token", sp.eos);
  put("unk_token", sp.unk);
  put("pad_token", sp.pad);
  return j;
}

json hf_tokenizer_config_json(const ModelProto& model, const HfExportOptions& options) {
  check_supported(model);
  const Specials sp = specials(model);
  json j;
  j["tokenizer_class"] = "PreTrainedTokenizerFast";
  auto piece = [&](const std::optional<int32_t>& id) -> json {
    return id ? json(model.pieces[size_t(*id)].piece) : json(nullptr);
  };
  j["bos_token"] = piece(sp.bos);
  j["eos_token"] = piece(sp.eos);
  j["unk_token"] = piece(sp.unk);
  j["pad_token"] = piece(sp.pad);
  j["add_bos_token"] = options.add_bos;
  j["add_eos_token"] = options.add_eos;
  j["model_max_length"] = options.model_max_length;
  j["clean_up_tokenization_spaces"] = false;
  j["padding_side"] = "right";
  json decoder = json::object();
  for (const auto& t : added_tokens_json(model)) {
    json entry = token_entry(t["content"].get<std::string>(), t["normalized"].get<bool>());
    entry["special"] = t["special"];
    decoder[std::to_string(t["id"].get<int32_t>())] = std::move(entry);
  }
  j["added_tokens_decoder"] = std::move(decoder);
  return j;
}

void export_hf(const ModelProto& model, const std::string& dir, const HfExportOptions& options) {
  const json tok = hf_tokenizer_json(model, options);
  const json config = hf_tokenizer_config_json(model, options);
  const json special = hf_special_tokens_map_json(model);
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) fail("cannot create directory {}: {}", dir, ec.message());
  const std::filesystem::path d(dir);
  // Invalid UTF-8 in a piece would make dump() throw; replace it rather than fail the export.
  auto text = [](const json& j) { return j.dump(2, ' ', false, json::error_handler_t::replace) + "\n"; };
  write_file_atomic((d / "tokenizer.json").string(), text(tok));
  write_file_atomic((d / "tokenizer_config.json").string(), text(config));
  write_file_atomic((d / "special_tokens_map.json").string(), text(special));
}

}  // namespace tsumugi::tokenizer
