#include "tokenizer/train_common.h"

#include <algorithm>
#include <chrono>
#include <random>
#include <set>
#include <unordered_map>

#include "corpus/document.h"
#include "corpus/jsonl.h"
#include "tokenizer/charsmap_builder.h"
#include "tokenizer/mecab.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/trie.h"
#include "tokenizer/unicode_script_table.h"
#include "util/error.h"
#include "util/io.h"
#include "util/log.h"
#include "util/thread_pool.h"

namespace tsumugi::tokenizer::train {

namespace {

// Unicode Script of c (generated table; code points not listed are Common, as in
// SentencePiece's unicode_script). Hiragana, Katakana and U+30FC (the prolonged sound mark, Common
// in Unicode) are folded into Han, as SentencePiece's IsValidSentencePiece does.
int32_t script_of(char32_t c) {
  namespace us = unicode_script;
  const us::Range* end = std::end(us::kRanges);
  const us::Range* it =
      std::upper_bound(std::begin(us::kRanges), end, c, [](char32_t v, const us::Range& r) { return v < r.lo; });
  const int32_t s = it != std::begin(us::kRanges) && c <= (it - 1)->hi ? (it - 1)->script : us::kCommon;
  if (s == us::kHiragana || s == us::kKatakana || c == 0x30FC) return us::kHan;
  return s;
}

// SentencePiece's split_by_number / split_digits rules look at ASCII digits only.
bool is_ascii_digit(char32_t c) { return c >= '0' && c <= '9'; }

bool valid_codepoint(char32_t c) { return c < 0xD800 || (c >= 0xE000 && c <= 0x10FFFF); }

bool has_suffix(std::string_view s, std::string_view suf) {
  return s.size() >= suf.size() && s.substr(s.size() - suf.size()) == suf;
}

bool is_jsonl(const std::string& path) {
  return has_suffix(path, ".jsonl") || has_suffix(path, ".jsonl.gz") || has_suffix(path, ".jsonl.zst") ||
         has_suffix(path, ".jsonl.zstd") || has_suffix(path, ".json.gz");
}

// Reservoir sampling (Algorithm R) with a seeded generator, or plain collection.
class Selector {
 public:
  Selector(const TrainOptions& o, std::vector<Sentence>& out) : o_(o), out_(out), rng_(o.seed) {}
  // Returns false once enough sentences are taken without shuffling.
  bool add(std::string_view s) {
    ++total_;
    if (o_.input_sentence_size == 0) {
      out_.emplace_back(std::string(s), 1);
      return true;
    }
    if (!o_.shuffle_input_sentence) {
      out_.emplace_back(std::string(s), 1);
      return out_.size() < o_.input_sentence_size;
    }
    if (out_.size() < o_.input_sentence_size) {
      out_.emplace_back(std::string(s), 1);
    } else {
      const uint64_t r = std::uniform_int_distribution<uint64_t>(0, total_ - 1)(rng_);
      if (r < o_.input_sentence_size) out_[r] = Sentence(std::string(s), 1);
    }
    return true;
  }
  uint64_t total() const { return total_; }

 private:
  const TrainOptions& o_;
  std::vector<Sentence>& out_;
  std::mt19937_64 rng_;
  uint64_t total_ = 0;
};

// MeCab pre-splitting: a NUL goes between words. No NUL is left in the sentences by then (NUL
// is never a required character, so load_corpus has turned any into U+2585), and no piece may
// contain one (PieceValidator), so a NUL is a boundary no piece crosses. MeCab reads the
// normalized text with each U+2581 as three spaces: same byte offsets, and MeCab skips spaces.
uint64_t presplit_with_mecab(const TrainOptions& o, std::vector<Sentence>& sentences) {
  const MecabSplitter mecab(o.mecab_args);
  log::info("trainer: pre-splitting {} sentences into MeCab words ({})", sentences.size(), mecab.dictionary());
  ThreadPool pool(thread_count(o));
  const size_t n = sentences.size(), chunks = std::min<size_t>(n, pool.size() * 4);
  std::vector<std::future<uint64_t>> futs;
  for (size_t c = 0; c < chunks; ++c) {
    futs.push_back(pool.submit([&, c] {
      MecabSplitter::Session session(mecab);
      std::string view, out;
      std::vector<size_t> starts;
      uint64_t boundaries = 0;
      for (size_t i = n * c / chunks; i < n * (c + 1) / chunks; ++i) {
        std::string& s = sentences[i].first;
        view = s;
        for (size_t p = view.find(kSpaceSymbol); p != std::string::npos; p = view.find(kSpaceSymbol, p + 3))
          view.replace(p, 3, "   ");
        session.word_starts(view, starts);
        if (starts.empty()) continue;
        out.clear();
        size_t prev = 0;
        for (size_t at : starts) {
          out.append(s, prev, at - prev);
          out.push_back('\0');
          prev = at;
        }
        out.append(s, prev, std::string::npos);
        s.swap(out);
        boundaries += starts.size();
      }
      return boundaries;
    }));
  }
  uint64_t total = 0;
  for (auto& f : futs) total += f.get();
  log::info("trainer: MeCab added {} word boundaries", total);
  return total;
}

}  // namespace

unsigned thread_count(const TrainOptions& o) { return unsigned(std::clamp(o.num_threads, 1, 256)); }

std::u32string to_u32(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  const char* p = s.data();
  const char* end = p + s.size();
  while (p < end) {
    const size_t n = valid_utf8_len(p, end);
    if (n == 0) {
      out.push_back(0xFFFD);
      ++p;
      continue;
    }
    const uint8_t c = uint8_t(*p);
    char32_t cp;
    if (n == 1) cp = c;
    else if (n == 2) cp = ((c & 0x1Fu) << 6) | (uint8_t(p[1]) & 0x3Fu);
    else if (n == 3) cp = ((c & 0x0Fu) << 12) | ((uint8_t(p[1]) & 0x3Fu) << 6) | (uint8_t(p[2]) & 0x3Fu);
    else
      cp = ((c & 0x07u) << 18) | ((uint8_t(p[1]) & 0x3Fu) << 12) | ((uint8_t(p[2]) & 0x3Fu) << 6) |
           (uint8_t(p[3]) & 0x3Fu);
    out.push_back(cp);
    p += n;
  }
  return out;
}

void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out.push_back(char(c));
  } else if (c < 0x800) {
    out.push_back(char(0xC0 | (c >> 6)));
    out.push_back(char(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out.push_back(char(0xE0 | (c >> 12)));
    out.push_back(char(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(char(0x80 | (c & 0x3F)));
  } else {
    out.push_back(char(0xF0 | (c >> 18)));
    out.push_back(char(0x80 | ((c >> 12) & 0x3F)));
    out.push_back(char(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(char(0x80 | (c & 0x3F)));
  }
}

std::string to_utf8(const std::u32string_view s) {
  std::string out;
  out.reserve(s.size() * 3);
  for (char32_t c : s) append_utf8(out, c);
  return out;
}

bool PieceValidator::valid(std::u32string_view piece) const {
  if (piece.empty() || piece.size() > size_t(o_.max_sentencepiece_length)) return false;
  constexpr int32_t kAny = -1;
  int32_t prev = kAny;
  for (size_t pos = 0; pos < piece.size(); ++pos) {
    const char32_t c = piece[pos];
    if (c == kUnkChar || c == 0 || c == kBoundaryChar || c == 0x20 || !valid_codepoint(c)) return false;
    if (c == kWsChar) {
      // Whitespace only at the start (treat_whitespace_as_suffix is not supported).
      if ((o_.split_by_whitespace && pos > 0) || (!o_.split_by_whitespace && pos > 0 && pos == piece.size() - 1))
        return false;
      continue;
    }
    int32_t s = script_of(c);
    if (s == unicode_script::kInherited) s = prev;
    const bool digit = is_ascii_digit(c);
    if (!o_.split_by_number && digit) s = kAny;
    if (o_.split_digits && digit && piece.size() > 1) return false;
    if (o_.split_by_unicode_script && s != kAny && prev != kAny && prev != s) return false;
    prev = s;
  }
  return true;
}

std::map<int32_t, std::pair<std::string, PieceType>> make_meta_pieces(const TrainOptions& o) {
  if (o.vocab_size <= 0) fail("--vocab-size must be positive (got {})", o.vocab_size);
  if (o.model_type != ModelType::unigram && o.model_type != ModelType::bpe)
    fail("model type {} is not supported by the trainer (unigram or bpe)", model_type_name(o.model_type));
  if (o.max_sentencepiece_length < 1 || o.max_sentencepiece_length > 512)
    fail("--max-sentencepiece-length must be in 1..512 (got {})", o.max_sentencepiece_length);
  if (!(o.character_coverage > 0 && o.character_coverage <= 1))
    fail("--character-coverage must be in (0, 1] (got {})", o.character_coverage);
  if (o.normalization_rule_name != "identity" && o.normalization_rule_name != "nfkc" &&
      o.normalization_rule_name != "nmt_nfkc")
    fail("normalization rule '{}' is not supported by the trainer (identity, nfkc or nmt_nfkc)",
         o.normalization_rule_name);
  if (!(o.shrinking_factor > 0 && o.shrinking_factor < 1)) fail("shrinking factor must be in (0, 1)");

  std::map<int32_t, std::pair<std::string, PieceType>> meta;
  bool has_unk = false;
  auto insert_id = [&](int32_t id, const std::string& w, const char* what) {
    if (id < 0) return;
    if (w.empty()) fail("the {} piece must not be empty", what);
    if (id >= o.vocab_size) fail("{} id {} is outside the vocabulary (size {})", what, id, o.vocab_size);
    if (meta.count(id)) fail("{} id {} is already used by '{}'", what, id, meta[id].first);
    if (has_unk && w == o.unk_piece) fail("'{}' is defined twice", w);
    if (w == o.unk_piece) has_unk = true;
    meta[id] = {w, w == o.unk_piece ? PieceType::unknown : PieceType::control};
  };
  insert_id(o.unk_id, o.unk_piece, "unk");
  insert_id(o.bos_id, o.bos_piece, "bos");
  insert_id(o.eos_id, o.eos_piece, "eos");
  insert_id(o.pad_id, o.pad_piece, "pad");
  if (!has_unk) fail("{} must be defined (--unk-id must be >= 0)", o.unk_piece);

  std::set<std::string> dup;
  int32_t id = 0;
  auto insert_symbol = [&](const std::string& w, PieceType type) {
    if (w.empty()) fail("empty control or user-defined symbol");
    if (!dup.insert(w).second) fail("symbol '{}' is defined twice", w);
    if (w == o.unk_piece) fail("{} must not be given as a control or user-defined symbol", o.unk_piece);
    if (w == o.bos_piece && o.bos_id >= 0) {
      meta[o.bos_id].second = type;
    } else if (w == o.eos_piece && o.eos_id >= 0) {
      meta[o.eos_id].second = type;
    } else if (w == o.pad_piece && o.pad_id >= 0) {
      meta[o.pad_id].second = type;
    } else {
      while (meta.count(id)) ++id;
      meta[id] = {w, type};
    }
  };
  for (const auto& w : o.control_symbols) insert_symbol(w, PieceType::control);
  for (const auto& w : o.user_defined_symbols) insert_symbol(w, PieceType::user_defined);
  if (o.byte_fallback)
    for (int b = 0; b < 256; ++b) insert_symbol(byte_piece(uint8_t(b)), PieceType::byte);
  if (int64_t(meta.size()) >= o.vocab_size)
    fail("--vocab-size {} leaves no room for learned pieces: {} meta pieces (special, control, user-defined{})",
         o.vocab_size, meta.size(), o.byte_fallback ? ", 256 byte pieces" : "");
  return meta;
}

Corpus load_corpus(const TrainOptions& o, TrainStats* stats) {
  Corpus corpus;
  corpus.meta_pieces = make_meta_pieces(o);
  if (o.inputs.empty()) fail("no input files (give --input FILE...)");
  const std::vector<std::string> inputs = expand_inputs(o.inputs);
  std::vector<Sentence>& sentences = corpus.sentences;
  Selector selector(o, sentences);
  uint64_t too_long = 0;
  const std::string unk_utf8 = "\xE2\x96\x85";

  auto add_line = [&](std::string_view s) -> bool {
    if (s.empty()) return true;
    if (s.size() > size_t(o.max_sentence_length)) {
      ++too_long;
      return true;
    }
    if (s.find(unk_utf8) != std::string_view::npos) return true;  // reserved character
    return selector.add(s);
  };
  bool more = true;
  for (const auto& path : inputs) {
    if (!more) break;
    LineReader reader(path);
    std::string_view line;
    if (is_jsonl(path)) {
      corpus::DocumentParser parser(o.text_field, "");
      corpus::Document doc;
      std::string error;
      while (more && reader.next(line)) {
        if (line.empty()) continue;
        if (!parser.parse(line, doc, error)) throw InputError(path, reader.line_number(), error);
        std::string_view text = doc.text;
        size_t pos = 0;
        while (more && pos <= text.size()) {
          size_t nl = text.find('\n', pos);
          if (nl == std::string_view::npos) nl = text.size();
          std::string_view l = text.substr(pos, nl - pos);
          if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
          more = add_line(l);
          pos = nl + 1;
        }
      }
    } else {
      while (more && reader.next(line)) {
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        more = add_line(line);
      }
    }
  }
  if (too_long) log::warn("skipped {} lines longer than {} bytes (--max-sentence-length)", too_long, o.max_sentence_length);
  if (sentences.empty()) fail("no sentences in the input");
  if (stats) {
    stats->sentences_total = selector.total();
    stats->skipped_too_long = too_long;
  }

  // Normalize (with the charsmap the model will carry) and replace meta pieces with a boundary.
  NormalizerSpec spec;
  spec.name = o.normalization_rule_name;
  spec.precompiled_charsmap = precompiled_charsmap(o.normalization_rule_name);
  spec.add_dummy_prefix = o.add_dummy_prefix;
  spec.remove_extra_whitespaces = o.remove_extra_whitespaces;
  spec.escape_whitespaces = true;
  const Normalizer normalizer(spec, false, nullptr, "trainer");
  // Meta pieces found in the text, longest first; a trie, since byte fallback makes 256 of them.
  std::vector<std::pair<std::string, int32_t>> meta_keys;
  for (const auto& [id, p] : corpus.meta_pieces) meta_keys.emplace_back(p.first, id);
  const Trie metas(std::move(meta_keys));
  {
    ThreadPool pool(thread_count(o));
    const size_t n = sentences.size(), chunks = std::min<size_t>(n, pool.size() * 4);
    std::vector<std::future<void>> futs;
    for (size_t c = 0; c < chunks; ++c) {
      futs.push_back(pool.submit([&, c] {
        std::string norm, out;
        for (size_t i = n * c / chunks; i < n * (c + 1) / chunks; ++i) {
          normalizer.normalize(sentences[i].first, norm);
          out.clear();
          for (size_t p = 0; p < norm.size();) {
            const size_t len = metas.longest_prefix(std::string_view(norm).substr(p));
            if (len > 0) {
              out.push_back('\t');
              p += len;
            } else {
              out.push_back(norm[p++]);
            }
          }
          sentences[i].first.swap(out);
        }
      }));
    }
    for (auto& f : futs) f.get();
  }
  sentences.erase(std::remove_if(sentences.begin(), sentences.end(), [](const Sentence& s) { return s.first.empty(); }),
                  sentences.end());
  if (sentences.empty()) fail("no sentences left after normalization");

  // Required characters: the most frequent ones covering character_coverage of all.
  std::unordered_map<char32_t, std::pair<bool, int64_t>> counts;
  for (char32_t c : to_u32(o.required_chars))
    if (c != 0) counts[c].first = true;
  int64_t all = 0;
  for (const auto& s : sentences) {
    for (char32_t c : to_u32(s.first)) {
      if (c == 0 || c == 0x20) continue;
      counts[c].second += s.second;
      all += s.second;
    }
  }
  std::vector<std::pair<char32_t, std::pair<bool, int64_t>>> sorted(counts.begin(), counts.end());
  sort_by_value(sorted);
  int64_t acc = 0;
  std::unordered_map<char32_t, bool> required;
  for (const auto& [c, v] : sorted) {
    const double coverage = all ? double(acc) / double(all) : 1.0;
    if (coverage >= o.character_coverage) break;
    acc += v.second;
    if (c == kBoundaryChar) continue;
    corpus.required_chars.emplace_back(c, v.second);
    required[c] = true;
  }
  sort_by_value(corpus.required_chars);
  if (corpus.required_chars.size() + corpus.meta_pieces.size() > size_t(o.vocab_size))
    fail("vocabulary size is smaller than the required characters: --vocab-size {} < {} ({} characters + {} meta "
         "pieces); increase --vocab-size or decrease --character-coverage",
         o.vocab_size, corpus.required_chars.size() + corpus.meta_pieces.size(), corpus.required_chars.size(),
         corpus.meta_pieces.size());

  for (auto& s : sentences) {
    std::u32string u = to_u32(s.first);
    bool changed = false;
    for (auto& c : u) {
      if (!required.count(c)) {
        c = kUnkChar;
        changed = true;
      }
    }
    if (changed) s.first = to_utf8(u);
  }
  if (o.mecab) {
    const uint64_t n = presplit_with_mecab(o, sentences);
    if (stats) stats->mecab_boundaries = n;
  }
  if (stats) {
    stats->sentences = sentences.size();
    stats->required_chars = corpus.required_chars.size();
  }
  log::info("trainer: {} sentences ({} read), {} required characters (coverage {:.4f})", sentences.size(),
            selector.total(), corpus.required_chars.size(), all ? double(acc) / double(all) : 1.0);
  return corpus;
}

void split_by_whitespace(std::vector<Sentence>& sentences) {
  std::unordered_map<std::string, int64_t> tokens;
  const std::string_view ws = kSpaceSymbol;
  for (const auto& s : sentences) {
    std::string_view t = s.first;
    size_t start = 0;
    for (size_t p = 1; p <= t.size(); ++p) {
      if (p == t.size() || t.compare(p, ws.size(), ws) == 0) {
        if (p > start) tokens[std::string(t.substr(start, p - start))] += s.second;
        start = p;
        if (p < t.size()) p += ws.size() - 1;
      }
    }
  }
  sentences.assign(tokens.begin(), tokens.end());
  sort_by_value(sentences);
}

ModelProto make_model_proto(const TrainOptions& o, const Corpus& corpus, const std::vector<Piece>& final_pieces) {
  ModelProto m;
  std::set<std::string> dup;
  size_t fid = 0;
  for (int32_t id = 0; id < o.vocab_size; ++id) {
    SentencePiece sp;
    if (auto it = corpus.meta_pieces.find(id); it != corpus.meta_pieces.end()) {
      sp.piece = it->second.first;
      sp.type = it->second.second;
      sp.score = 0.0f;
    } else if (fid < final_pieces.size()) {
      sp.piece = final_pieces[fid].first;
      sp.score = final_pieces[fid].second;
      ++fid;
    } else {
      break;
    }
    if (!dup.insert(sp.piece).second) fail("piece '{}' is defined twice", sp.piece);
    m.pieces.push_back(std::move(sp));
  }
  if (o.hard_vocab_limit && int32_t(m.pieces.size()) != o.vocab_size)
    fail("vocabulary size too high ({}): the input yields only {} pieces; lower --vocab-size", o.vocab_size,
         m.pieces.size());

  TrainerSpec t;
  t.input = o.inputs;
  t.model_prefix = o.model_prefix;
  t.model_type = o.model_type;
  t.vocab_size = o.hard_vocab_limit ? o.vocab_size : int32_t(m.pieces.size());
  t.self_test_sample_size = 0;
  t.input_format = "";
  t.character_coverage = o.character_coverage;
  t.input_sentence_size = o.input_sentence_size;
  t.seed_sentencepiece_size = o.seed_sentencepiece_size;
  t.shrinking_factor = o.shrinking_factor;
  t.num_threads = o.num_threads;
  t.num_sub_iterations = o.num_sub_iterations;
  t.max_sentence_length = o.max_sentence_length;
  t.shuffle_input_sentence = o.shuffle_input_sentence;
  t.max_sentencepiece_length = o.max_sentencepiece_length;
  t.split_by_unicode_script = o.split_by_unicode_script;
  t.split_by_whitespace = o.split_by_whitespace;
  t.split_by_number = o.split_by_number;
  t.treat_whitespace_as_suffix = false;
  t.split_digits = o.split_digits;
  t.allow_whitespace_only_pieces = false;
  t.control_symbols = o.control_symbols;
  t.user_defined_symbols = o.user_defined_symbols;
  t.vocabulary_output_piece_score = o.vocabulary_output_piece_score;
  t.hard_vocab_limit = o.hard_vocab_limit;
  t.use_all_vocab = false;
  t.byte_fallback = o.byte_fallback;
  t.required_chars = o.required_chars;
  t.unk_id = o.unk_id;
  t.bos_id = o.bos_id;
  t.eos_id = o.eos_id;
  t.pad_id = o.pad_id;
  t.unk_surface = o.unk_surface;
  t.unk_piece = o.unk_piece;
  t.bos_piece = o.bos_piece;
  t.eos_piece = o.eos_piece;
  t.pad_piece = o.pad_piece;
  t.train_extremely_large_corpus = false;
  t.enable_differential_privacy = false;
  t.differential_privacy_noise_level = 0.0f;
  t.differential_privacy_clipping_threshold = 0;
  m.trainer_spec = std::move(t);

  NormalizerSpec n;
  n.name = o.normalization_rule_name;
  n.precompiled_charsmap = precompiled_charsmap(o.normalization_rule_name);
  n.add_dummy_prefix = o.add_dummy_prefix;
  n.remove_extra_whitespaces = o.remove_extra_whitespaces;
  n.escape_whitespaces = true;
  n.normalization_rule_tsv = std::string();
  m.normalizer_spec = std::move(n);
  return m;
}

}  // namespace tsumugi::tokenizer::train

namespace tsumugi::tokenizer {

ModelProto train_model(const TrainOptions& options, TrainStats* stats) {
  const auto t0 = std::chrono::steady_clock::now();
  train::Corpus corpus = train::load_corpus(options, stats);
  std::vector<train::Piece> pieces = options.model_type == ModelType::bpe ? train::train_bpe(options, corpus)
                                                                          : train::train_unigram(options, corpus);
  ModelProto m = train::make_model_proto(options, corpus, pieces);
  if (stats) stats->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return m;
}

void train_and_save(const TrainOptions& options, const std::string& prefix, TrainStats* stats) {
  if (prefix.empty()) fail("no output prefix (-o PREFIX)");
  TrainOptions o = options;
  if (o.model_prefix.empty()) o.model_prefix = prefix;
  const ModelProto m = train_model(o, stats);
  save_model_proto(m, prefix + ".model");
  save_vocab(m, prefix + ".vocab");
}

}  // namespace tsumugi::tokenizer
