#include "tokenizer/tokenizer.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include "tokenizer/normalizer.h"
#include "tokenizer/trie.h"
#include "util/error.h"
#include "util/io.h"

namespace tsumugi::tokenizer {

namespace {

constexpr float kUnkPenalty = 10.0f;       // SentencePiece: unk score = min piece score - 10
constexpr int32_t kUserDefinedFlag = 1 << 30;  // marks user-defined ids in the Viterbi trie

// A piece of the segmentation: bytes [begin, begin + len) of the normalized text.
struct Token {
  uint32_t begin;
  uint32_t len;
  int32_t id;
};

// Per-thread working memory, so encoding allocates nothing once warm.
struct Scratch {
  std::string normalized;
  std::vector<Token> tokens;
  struct Best {
    float score;
    int32_t start;
    int32_t id;
  };
  std::vector<Best> best;
  std::vector<uint16_t> char_ids;   // unigram character path: id of each character
  std::vector<uint32_t> char_offs;  // and its byte offset (one more: the end)
  struct Symbol {
    int32_t prev, next;
    uint32_t begin, len;
    int32_t node;  // `pieces` trie node reached by the symbol's bytes, -1 if none
    bool freeze;
  };
  std::vector<Symbol> symbols;
  struct Pair {
    uint64_t key;  // score (order-preserving bits) << 32 | ~left: larger is merged first
    int32_t right;
    uint32_t size;
    int32_t node;  // trie node of the merged piece
    int32_t left() const { return int32_t(~uint32_t(key)); }
  };
  std::vector<Pair> agenda;
  // BPE: encodings of recently seen whitespace-delimited chunks (see segment_bpe).
  struct ChunkCache {
    struct Slot {
      uint64_t hash;
      uint32_t key_off;
      uint32_t key_len;  // 0: empty slot
      uint32_t tok_off;
      uint32_t ntok;
    };
    static constexpr size_t kSlots = size_t(1) << 17;
    static constexpr size_t kMaxEntries = kSlots / 2;
    static constexpr size_t kMaxKey = 256;
    uint64_t owner = 0;  // Impl::uid of the tokenizer the entries belong to
    size_t entries = 0;
    std::vector<Slot> slots;
    std::string keys;
    std::vector<std::pair<uint32_t, int32_t>> toks;  // (length, id)
    void reset(uint64_t uid) {
      owner = uid;
      entries = 0;
      slots.assign(kSlots, Slot{0, 0, 0, 0, 0});
      keys.clear();
      toks.clear();
    }
  } chunk_cache;
};

uint64_t hash_bytes(const char* p, size_t n) {
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (uint64_t(n) * 0xC2B2AE3D27D4EB4Full);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t v;
    std::memcpy(&v, p + i, 8);
    h = (h ^ v) * 0x9FB21C651E98DF25ull;
    h ^= h >> 29;
  }
  if (i < n) {
    uint64_t v = 0;
    std::memcpy(&v, p + i, n - i);
    h = (h ^ v) * 0x9FB21C651E98DF25ull;
    h ^= h >> 29;
  }
  h *= 0xBF58476D1CE4E5B9ull;
  return h ^ (h >> 31);
}

Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

}  // namespace

struct Tokenizer::Impl {
  ModelProto model;
  std::string origin;
  ModelType type = ModelType::unigram;
  std::vector<PieceType> types;
  std::vector<float> scores;
  // Normal, user-defined and unused pieces -> id (SentencePiece's pieces_). The unigram encoder
  // never needs it, so for unigram models it is built on first lookup: loading stays quick.
  mutable Trie pieces_trie;
  mutable std::once_flag pieces_once;
  mutable std::vector<std::pair<std::string, int32_t>> pieces_keys;  // until it is built
  const Trie& pieces() const {
    std::call_once(pieces_once, [this] { pieces_trie = Trie(std::move(pieces_keys)); });
    return pieces_trie;
  }
  Trie reserved;   // control, unknown and byte pieces -> id (reserved_id_map_)
  Trie user;       // user-defined symbols (the prefix matcher)
  // Unigram, byte path (segment_unigram).
  struct ByteViterbi {
    Trie trie;  // normal and user-defined pieces, score in the payload
    // The trie node reached by each 2- or 3-byte character (U+0080..U+FFFF) from the root, so a
    // Viterbi step starts after the first character with one load instead of a walk of three
    // dependent ones. kNoPiece: no piece starts with the character; kWalk: walk.
    std::vector<int32_t> first_char;
  };
  static constexpr int32_t kNoPiece = -1, kWalk = -2;
  mutable std::unique_ptr<ByteViterbi> byte_viterbi;
  mutable std::once_flag byte_viterbi_once;
  std::vector<std::pair<std::string, int32_t>> byte_viterbi_keys;  // until it is built
  std::unique_ptr<ByteViterbi> build_byte_viterbi(const std::vector<std::pair<std::string, int32_t>>& keys) const;
  const ByteViterbi& get_byte_viterbi() const {
    if (char_path) std::call_once(byte_viterbi_once, [this] { byte_viterbi = build_byte_viterbi(byte_viterbi_keys); });
    return *byte_viterbi;
  }
  // Unigram, character path (segment_unigram_chars): the same pieces as strings of dense
  // character ids, so a walk takes one step per character instead of one per byte (three for
  // Japanese) through a trie a fraction of the size, which is what bounds the encoder's speed
  // (cache misses). Used when every Viterbi piece is valid UTF-8 and so is the normalized text;
  // otherwise the byte path runs. Both give the same segmentation.
  bool char_path = false;
  // The trie's units (Trie::Unit) with their payload inline: a walk step that ends a piece then
  // needs one cache line, not two.
  struct CharUnit {
    int32_t base;
    uint32_t check;
    int32_t value;
    float score;
  };
  std::vector<CharUnit> char_units;
  std::vector<uint16_t> bmp_id;                          // code point < 0x10000 -> id; 0: in no piece
  std::vector<std::pair<char32_t, uint16_t>> astral_id;  // code points >= 0x10000, sorted
  void init_char_path(const std::vector<std::pair<std::string, int32_t>>& viterbi_keys);
  bool segment_unigram_chars(std::string_view normalized, std::vector<Token>& out, Scratch& s) const;
  Normalizer normalizer;
  std::unique_ptr<Normalizer> denormalizer;
  int32_t unk = -1;
  bool byte_fallback = false;
  bool has_unused = false;
  int32_t byte_ids[256];
  std::vector<int32_t> canonical;  // piece_to_id(id_to_piece(id)), used by decode(ids)
  float min_score = FLT_MAX, max_score = FLT_MIN;
  std::string unk_surface;
  // BPE: no piece has U+2581 after its first byte, so no merge crosses a U+2581 that starts a
  // symbol and the text can be encoded in chunks that each start there.
  bool bpe_chunkable = false;
  uint64_t uid = 0;  // distinguishes tokenizers in the per-thread chunk cache

  int32_t lookup(std::string_view piece) const {
    int32_t id = reserved.exact(piece);
    if (id >= 0) return id;
    id = pieces().exact(piece);
    return id >= 0 ? id : unk;
  }

  void init();
  void segment(std::string_view normalized, std::vector<Token>& out, Scratch& s) const;
  void segment_unigram(std::string_view normalized, std::vector<Token>& out, Scratch& s) const;
  void segment_bpe(std::string_view normalized, std::vector<Token>& out, Scratch& s) const;
  void segment_bpe_core(std::string_view normalized, std::vector<Token>& out, Scratch& s) const;
  void segment_word(std::string_view normalized, std::vector<Token>& out) const;
  void segment_char(std::string_view normalized, std::vector<Token>& out) const;
  std::string decode_pieces(const std::vector<std::string_view>& pieces, const int32_t* ids) const;
};

void Tokenizer::Impl::init() {
  auto bad = [&](const std::string& what) {
    throw Error(fmt::format("{}: unusable SentencePiece model: {}", origin, what));
  };
  const TrainerSpec& ts = model.trainer();
  type = ts.model_type_or_default();
  if (type != ModelType::unigram && type != ModelType::bpe && type != ModelType::word &&
      type != ModelType::character)
    bad(fmt::format("unknown model type {} (known: 1 unigram, 2 bpe, 3 word, 4 char)", int32_t(type)));
  if (model.pieces.empty()) bad("it has no pieces (is this a SentencePiece .model file?)");
  if (model.pieces.size() >= size_t(kUserDefinedFlag)) bad(fmt::format("too many pieces ({})", model.pieces.size()));
  byte_fallback = ts.byte_fallback_or_default();

  const size_t n = model.pieces.size();
  types.resize(n);
  scores.resize(n);
  std::fill(std::begin(byte_ids), std::end(byte_ids), -1);
  std::vector<std::pair<std::string, int32_t>> normal_keys, reserved_keys, user_keys, viterbi_keys;
  for (size_t i = 0; i < n; ++i) {
    const auto& sp = model.pieces[i];
    const PieceType t = sp.type_or_default();
    if (int32_t(t) < 1 || int32_t(t) > 6) bad(fmt::format("piece {} ({}) has unknown type {}", i, sp.piece, int32_t(t)));
    if (sp.piece.empty()) bad(fmt::format("piece {} is empty", i));
    types[i] = t;
    scores[i] = sp.score_or_default();
    const bool normal_like = t == PieceType::normal || t == PieceType::user_defined || t == PieceType::unused;
    (normal_like ? normal_keys : reserved_keys).emplace_back(sp.piece, int32_t(i));
    if (t == PieceType::user_defined) user_keys.emplace_back(sp.piece, int32_t(i));
    if (t == PieceType::unused) has_unused = true;
    if (t == PieceType::normal) {
      min_score = std::min(min_score, scores[i]);
      max_score = std::max(max_score, scores[i]);
    }
    if (t == PieceType::unknown) {
      if (unk >= 0) bad(fmt::format("more than one unknown piece ({} and {})", model.pieces[size_t(unk)].piece, sp.piece));
      unk = int32_t(i);
    }
    if (t == PieceType::byte) {
      if (!byte_fallback) bad(fmt::format("byte piece {} is present although byte_fallback is off", sp.piece));
      int b = piece_to_byte(sp.piece);
      if (b < 0) bad(fmt::format("byte piece {} is not of the form <0xNN>", sp.piece));
      byte_ids[b] = int32_t(i);
    }
  }
  if (unk < 0) bad("it defines no unknown piece (<unk>)");
  if (byte_fallback)
    for (int b = 0; b < 256; ++b)
      if (byte_ids[b] < 0) bad(fmt::format("byte_fallback is on but byte piece {} is missing", byte_piece(uint8_t(b))));
  auto check_unique = [&](std::vector<std::pair<std::string, int32_t>>& keys) {
    std::sort(keys.begin(), keys.end());
    for (size_t i = 1; i < keys.size(); ++i)
      if (keys[i].first == keys[i - 1].first) bad(fmt::format("piece {} is defined twice", keys[i].first));
  };
  check_unique(normal_keys);
  check_unique(reserved_keys);
  // piece_to_id(id_to_piece(id)): the reserved piece of that text if there is one (lookup tries
  // the reserved pieces first), else the id itself. One merge of the two sorted lists.
  canonical.resize(n);
  for (size_t i = 0; i < n; ++i) canonical[i] = int32_t(i);
  for (size_t a = 0, b = 0; a < normal_keys.size() && b < reserved_keys.size();) {
    const int c = normal_keys[a].first.compare(reserved_keys[b].first);
    if (c == 0) canonical[size_t(normal_keys[a].second)] = reserved_keys[b].second;
    if (c <= 0) ++a;
    if (c >= 0) ++b;
  }
  if (type == ModelType::bpe && !has_unused) {
    bpe_chunkable = true;
    for (const auto& [key, value] : normal_keys)
      if (key.find("\xE2\x96\x81", 1) != std::string::npos) bpe_chunkable = false;
  }
  if (type == ModelType::unigram && normal_keys.empty()) bad("a unigram model needs at least one normal piece");
  // The Viterbi pieces in byte order (normal_keys is sorted): with character ids in code point
  // order their id strings come out sorted too, and the tries need no sort.
  viterbi_keys.clear();
  for (const auto& [key, id] : normal_keys)
    if (types[size_t(id)] != PieceType::unused)
      viterbi_keys.emplace_back(key, id | (types[size_t(id)] == PieceType::user_defined ? kUserDefinedFlag : 0));
  pieces_keys = std::move(normal_keys);
  if (type != ModelType::unigram) pieces();  // the BPE encoder walks it
  reserved = Trie(std::move(reserved_keys));
  user = Trie(std::move(user_keys));
  if (type == ModelType::unigram) {
    init_char_path(viterbi_keys);
    // The byte path serves every text when the character path is off; otherwise only text
    // that is not UTF-8 after normalization (possible only with odd charsmaps), so it is built on
    // first use and loading stays quick.
    if (char_path)
      byte_viterbi_keys = std::move(viterbi_keys);
    else
      byte_viterbi = build_byte_viterbi(viterbi_keys);
  }
  {
    static std::atomic<uint64_t> next_uid{1};
    uid = next_uid.fetch_add(1);
  }
  unk_surface = ts.unk_surface ? *ts.unk_surface : std::string(" \xE2\x81\x87 ");

  normalizer = Normalizer(model.normalizer(), ts.treat_whitespace_as_suffix_or_default(), &user, origin);
  if (model.denormalizer_spec && !model.denormalizer_spec->charsmap().empty())
    denormalizer = std::make_unique<Normalizer>(*model.denormalizer_spec, false, nullptr, origin);
}

std::unique_ptr<Tokenizer::Impl::ByteViterbi> Tokenizer::Impl::build_byte_viterbi(
    const std::vector<std::pair<std::string, int32_t>>& keys) const {
  auto bv = std::make_unique<ByteViterbi>();
  Trie& viterbi = bv->trie;
  viterbi = Trie(keys);
  for (const auto& [key, value] : keys) {
    int32_t node = viterbi.find_node(key);
    viterbi.set_score(node, scores[size_t(value & ~kUserDefinedFlag)]);
  }
  bv->first_char.assign(0x10000, kWalk);
  for (uint32_t cp = 0x80; cp < 0x10000; ++cp) {
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    uint8_t buf[3];
    size_t len;
    if (cp < 0x800) {
      buf[0] = uint8_t(0xC0 | (cp >> 6));
      buf[1] = uint8_t(0x80 | (cp & 0x3F));
      len = 2;
    } else {
      buf[0] = uint8_t(0xE0 | (cp >> 12));
      buf[1] = uint8_t(0x80 | ((cp >> 6) & 0x3F));
      buf[2] = uint8_t(0x80 | (cp & 0x3F));
      len = 3;
    }
    int32_t node = 0;
    bool value_inside = false;
    for (size_t i = 0; i < len && node >= 0; ++i) {
      node = viterbi.child(node, buf[i]);
      if (node >= 0 && i + 1 < len && Trie::has_value(viterbi.units()[node])) value_inside = true;
    }
    bv->first_char[cp] = value_inside ? kWalk : node < 0 ? kNoPiece : node;
  }
  return bv;
}

namespace {
// The code point of the well-formed character of `len` bytes at p.
inline char32_t decode_utf8(const char* p, size_t len) {
  const uint8_t c = uint8_t(p[0]);
  if (len == 1) return c;
  if (len == 2) return ((c & 0x1Fu) << 6) | (uint8_t(p[1]) & 0x3Fu);
  if (len == 3) return ((c & 0x0Fu) << 12) | ((uint8_t(p[1]) & 0x3Fu) << 6) | (uint8_t(p[2]) & 0x3Fu);
  return ((c & 0x07u) << 18) | ((uint8_t(p[1]) & 0x3Fu) << 12) | ((uint8_t(p[2]) & 0x3Fu) << 6) |
         (uint8_t(p[3]) & 0x3Fu);
}
}  // namespace

void Tokenizer::Impl::init_char_path(const std::vector<std::pair<std::string, int32_t>>& viterbi_keys) {
  // Characters of all pieces, numbered in code point order (= UTF-8 byte order, so keys that
  // come sorted by bytes stay sorted as id strings).
  std::vector<uint32_t> bmp_count(0x10000, 0);
  std::unordered_map<char32_t, uint32_t> astral_count;
  std::vector<std::u32string> decoded;
  decoded.reserve(viterbi_keys.size());
  for (const auto& [key, value] : viterbi_keys) {
    std::u32string cps;
    for (size_t p = 0; p < key.size();) {
      const size_t len = valid_utf8_len(key.data() + p, key.data() + key.size());
      if (len == 0) return;  // a piece that is not UTF-8: bytes only
      cps.push_back(decode_utf8(key.data() + p, len));
      p += len;
    }
    for (char32_t c : cps) ++(c < 0x10000 ? bmp_count[c] : astral_count[c]);
    decoded.push_back(std::move(cps));
  }
  std::vector<std::pair<char32_t, uint32_t>> chars;
  for (char32_t c = 0; c < 0x10000; ++c)
    if (bmp_count[c]) chars.emplace_back(c, bmp_count[c]);
  const size_t bmp_chars = chars.size();
  chars.insert(chars.end(), astral_count.begin(), astral_count.end());
  std::sort(chars.begin() + ptrdiff_t(bmp_chars), chars.end());
  if (chars.size() >= 0xFFFF) return;
  bmp_id.assign(0x10000, 0);
  for (size_t i = 0; i < chars.size(); ++i) {
    const auto id = uint16_t(i + 1);
    if (chars[i].first < 0x10000)
      bmp_id[chars[i].first] = id;
    else
      astral_id.emplace_back(chars[i].first, id);
  }
  std::sort(astral_id.begin(), astral_id.end());
  auto id_of = [&](char32_t c) {
    if (c < 0x10000) return bmp_id[c];
    return std::lower_bound(astral_id.begin(), astral_id.end(), std::pair<char32_t, uint16_t>(c, 0))->second;
  };
  std::vector<std::pair<std::u16string, int32_t>> keys;
  keys.reserve(decoded.size());
  for (size_t k = 0; k < decoded.size(); ++k) {
    std::u16string ids;
    for (char32_t c : decoded[k]) ids.push_back(char16_t(id_of(c)));
    keys.emplace_back(std::move(ids), viterbi_keys[k].second);
  }
  Trie char_trie(keys, chars.size() + 1);
  for (const auto& [ids, value] : keys) {
    int32_t node = 0;
    for (char16_t id : ids) node = char_trie.child_label(node, id);
    char_trie.set_score(node, scores[size_t(value & ~kUserDefinedFlag)]);
  }
  char_units.resize(char_trie.num_nodes());
  for (size_t i = 0; i < char_units.size(); ++i) {
    const auto& u = char_trie.units()[i];
    const auto& p = char_trie.payloads()[i];
    char_units[i] = CharUnit{u.base, u.check, p.value, p.score};
  }
  char_path = true;
}

// ---- segmentation --------------------------------------------------------------------------

void Tokenizer::Impl::segment(std::string_view normalized, std::vector<Token>& out, Scratch& s) const {
  out.clear();
  if (normalized.empty()) return;
  switch (type) {
    case ModelType::unigram:
      if (!char_path || !segment_unigram_chars(normalized, out, s)) segment_unigram(normalized, out, s);
      break;
    case ModelType::bpe: segment_bpe(normalized, out, s); break;
    case ModelType::word: segment_word(normalized, out); break;
    case ModelType::character: segment_char(normalized, out); break;
  }
}

// Viterbi over the pieces that start at each character, as SentencePiece's optimized unigram
// encoder: best[i] is the best path ending at byte i; ties keep the earlier candidate. The
// arithmetic (double sums, float storage) follows SentencePiece so that near-ties break the
// same way.
void Tokenizer::Impl::segment_unigram(std::string_view normalized, std::vector<Token>& out, Scratch& s) const {
  const char* text = normalized.data();
  const size_t size = normalized.size();
  auto& best = s.best;
  best.assign(size + 1, Scratch::Best{0.0f, -1, -1});
  const ByteViterbi& bv = get_byte_viterbi();
  const Trie::Unit* units = bv.trie.units();
  const Trie::Payload* payload = bv.trie.payloads();
  const int32_t* first_char = bv.first_char.data();
  const float unk_score = min_score - kUnkPenalty;
  const float max_sc = max_score;

  for (size_t start = 0; start < size;) {
    const size_t mblen = std::min(one_char_len(uint8_t(text[start])), size - start);
    const float here = best[start].score;
    bool has_single = false;
    int32_t node = 0;
    int32_t base = units[0].base;
    size_t k = start;
    const uint8_t lead = uint8_t(text[start]);
    // Jump over the whole first character when it is well-formed (normalized text is, unless a
    // model's own rules or user symbols are not UTF-8; then the walk below handles it).
    if (lead >= 0xC2 && lead < 0xF0 && mblen >= 2 && (uint8_t(text[start + 1]) & 0xC0) == 0x80 &&
        (mblen == 2 || (uint8_t(text[start + 2]) & 0xC0) == 0x80)) {
      const uint32_t cp = mblen == 2 ? ((lead & 0x1Fu) << 6) | (uint8_t(text[start + 1]) & 0x3Fu)
                                     : ((lead & 0x0Fu) << 12) | ((uint8_t(text[start + 1]) & 0x3Fu) << 6) |
                                           (uint8_t(text[start + 2]) & 0x3Fu);
      const int32_t jump = (mblen == 3 && cp < 0x800) ? kWalk : first_char[cp];  // overlong: walk
      if (jump == kNoPiece) {
        k = size;  // nothing to walk: the character is unknown
      } else if (jump >= 0) {
        node = jump;
        base = units[jump].base;
        k = start + mblen;
        if (Trie::has_value(units[jump])) {
          const int32_t value = payload[jump].value;
          auto& target = best[k];
          const double score =
              (value & kUserDefinedFlag) ? double(float(mblen) * max_sc) - 0.1 : double(payload[jump].score);
          const double cand = score + double(here);
          if (target.start == -1 || cand > double(target.score)) {
            target.score = float(cand);
            target.start = int32_t(start);
            target.id = value & ~kUserDefinedFlag;
          }
          has_single = true;
        }
      }
    }
    for (; k < size; ++k) {
      const int32_t t = base + uint8_t(text[k]);
      const uint32_t check = units[t].check;
      if ((check & Trie::kParentMask) != uint32_t(node)) break;
      node = t;
      base = units[t].base;
      if (!(check & Trie::kHasValue)) continue;  // no piece ends here
      const int32_t value = payload[t].value;
      const size_t length = k + 1 - start;
      auto& target = best[k + 1];
      // SentencePiece's `cond ? length * max_score - 0.1 : score` is a double, so the sum and
      // the comparison happen in double and only the stored best score is rounded to float.
      const double score =
          (value & kUserDefinedFlag) ? double(float(length) * max_sc) - 0.1 : double(payload[t].score);
      const double cand = score + double(here);
      if (target.start == -1 || cand > double(target.score)) {
        target.score = float(cand);
        target.start = int32_t(start);
        target.id = value & ~kUserDefinedFlag;
      }
      if (length == mblen) has_single = true;
    }
    if (!has_single) {
      auto& target = best[start + mblen];
      const float cand = unk_score + here;
      if (target.start == -1 || cand > target.score) {
        target.score = cand;
        target.start = int32_t(start);
        target.id = unk;
      }
    }
    start += mblen;
  }
  for (size_t end = size; end > 0;) {
    const auto& b = best[end];
    out.push_back(Token{uint32_t(b.start), uint32_t(end - size_t(b.start)), b.id});
    end = size_t(b.start);
  }
  std::reverse(out.begin(), out.end());
}

// The byte path's Viterbi (segment_unigram) one character at a time: with valid UTF-8 text and
// pieces, the pieces that start at a character end at character boundaries, and walking
// character ids finds the same ones in the same order (shortest first), so every comparison and
// rounding is the same. Returns false, doing nothing, when the text is not valid UTF-8.
bool Tokenizer::Impl::segment_unigram_chars(std::string_view normalized, std::vector<Token>& out,
                                            Scratch& s) const {
  const char* text = normalized.data();
  const size_t size = normalized.size();
  auto& ids = s.char_ids;
  auto& offs = s.char_offs;
  ids.resize(size);
  offs.resize(size + 1);
  size_t n = 0;
  for (size_t p = 0; p < size; ++n) {
    const uint8_t c = uint8_t(text[p]);
    offs[n] = uint32_t(p);
    if (c < 0x80) {
      ids[n] = bmp_id[c];
      ++p;
      continue;
    }
    const size_t len = valid_utf8_len(text + p, text + size);
    if (len == 0) return false;
    const char32_t cp = decode_utf8(text + p, len);
    if (cp < 0x10000) {
      ids[n] = bmp_id[cp];
    } else {
      auto it = std::lower_bound(astral_id.begin(), astral_id.end(), std::pair<char32_t, uint16_t>(cp, 0));
      ids[n] = it != astral_id.end() && it->first == cp ? it->second : 0;
    }
    p += len;
  }
  offs[n] = uint32_t(size);

  auto& best = s.best;  // indexed by character here
  // Unreached positions score -inf, so any candidate beats them (the byte path tests start == -1).
  best.assign(n + 1, Scratch::Best{-INFINITY, -1, -1});
  best[0].score = 0.0f;
  const CharUnit* units = char_units.data();
  const float unk_score = min_score - kUnkPenalty;
  const float max_sc = max_score;
  const uint16_t* id = ids.data();
  const uint32_t* off = offs.data();
  for (size_t start = 0; start < n; ++start) {
    const float here = best[start].score;
    bool has_single = false;
    int32_t node = 0;
    int32_t base = units[0].base;
    // Character id 0 (in no piece) is no node's label, so it ends the walk like a mismatch.
    for (size_t k = start; k < n; ++k) {
      const int32_t t = base + id[k];
      const uint32_t check = units[t].check;
      if ((check & Trie::kParentMask) != uint32_t(node)) break;
      node = t;
      base = units[t].base;
      if (!(check & Trie::kHasValue)) continue;
      const int32_t value = units[t].value;
      auto& target = best[k + 1];
      // As segment_unigram: user-defined pieces score by their length in bytes; sums in double.
      const double score = (value & kUserDefinedFlag) ? double(float(off[k + 1] - off[start]) * max_sc) - 0.1
                                                      : double(units[t].score);
      const double cand = score + double(here);
      if (cand > double(target.score)) {
        target.score = float(cand);
        target.start = int32_t(start);
        target.id = value & ~kUserDefinedFlag;
      }
      if (k == start) has_single = true;
    }
    if (!has_single) {
      auto& target = best[start + 1];
      const float cand = unk_score + here;
      if (cand > target.score) {
        target.score = cand;
        target.start = int32_t(start);
        target.id = unk;
      }
    }
  }
  for (size_t end = n; end > 0;) {
    const auto& b = best[end];
    out.push_back(Token{off[b.start], off[end] - off[b.start], b.id});
    end = size_t(b.start);
  }
  std::reverse(out.begin(), out.end());
  return true;
}

// SentencePiece's BPE: start from characters (user-defined symbols frozen whole), repeatedly
// merge the adjacent pair whose merged piece scores highest (leftmost on ties), then split
// any unused piece back into the parts it was made of.
//
// When no piece has U+2581 after its first byte (bpe_chunkable), a merged symbol never holds a
// U+2581 except at its start, so no merge joins a symbol to one that starts with U+2581: the
// text falls into independent chunks, each starting at such a symbol, and merging each alone
// gives the same result (the merges within a chunk happen in the same relative order). A
// chunk's encoding depends only on its bytes, so recent ones are cached per thread.
void Tokenizer::Impl::segment_bpe(std::string_view normalized, std::vector<Token>& out, Scratch& s) const {
  if (!bpe_chunkable) return segment_bpe_core(normalized, out, s);
  auto& cache = s.chunk_cache;
  if (cache.owner != uid) cache.reset(uid);
  const char* text = normalized.data();
  const size_t size = normalized.size();
  auto encode_chunk = [&](size_t begin, size_t end) {
    const size_t n = end - begin;
    const size_t first = out.size();
    if (n > Scratch::ChunkCache::kMaxKey) {
      segment_bpe_core(normalized.substr(begin, n), out, s);
      for (size_t i = first; i < out.size(); ++i) out[i].begin += uint32_t(begin);
      return;
    }
    const uint64_t h = hash_bytes(text + begin, n);
    const size_t mask = Scratch::ChunkCache::kSlots - 1;
    size_t i = size_t(h) & mask;
    for (;; i = (i + 1) & mask) {
      const auto& slot = cache.slots[i];
      if (slot.key_len == 0) break;
      if (slot.hash == h && slot.key_len == n && std::memcmp(cache.keys.data() + slot.key_off, text + begin, n) == 0) {
        uint32_t at = uint32_t(begin);
        for (uint32_t t = 0; t < slot.ntok; ++t) {
          const auto& [len, id] = cache.toks[slot.tok_off + t];
          out.push_back(Token{at, len, id});
          at += len;
        }
        return;
      }
    }
    segment_bpe_core(normalized.substr(begin, n), out, s);
    if (cache.entries >= Scratch::ChunkCache::kMaxEntries) {
      cache.reset(uid);
      i = size_t(h) & mask;
    }
    auto& slot = cache.slots[i];
    slot.hash = h;
    slot.key_off = uint32_t(cache.keys.size());
    slot.key_len = uint32_t(n);
    slot.tok_off = uint32_t(cache.toks.size());
    slot.ntok = uint32_t(out.size() - first);
    cache.keys.append(text + begin, n);
    for (size_t t = first; t < out.size(); ++t) {
      cache.toks.emplace_back(out[t].len, out[t].id);
      out[t].begin += uint32_t(begin);
    }
    ++cache.entries;
  };
  // The same walk over initial symbols as segment_bpe_core, to find where chunks start.
  size_t chunk = 0;
  for (size_t pos = 0; pos < size;) {
    if (pos > chunk && size - pos >= 3 && text[pos] == '\xE2' && text[pos + 1] == '\x96' && text[pos + 2] == '\x81') {
      encode_chunk(chunk, pos);
      chunk = pos;
    }
    size_t len = user.empty() ? 0 : user.longest_prefix(normalized.substr(pos));
    if (len == 0) len = std::min(one_char_len(uint8_t(text[pos])), size - pos);
    pos += len;
  }
  encode_chunk(chunk, size);
}

void Tokenizer::Impl::segment_bpe_core(std::string_view normalized, std::vector<Token>& out, Scratch& s) const {
  using Symbol = Scratch::Symbol;
  using Pair = Scratch::Pair;
  auto& symbols = s.symbols;
  symbols.clear();
  const char* text = normalized.data();
  const size_t size = normalized.size();
  const Trie& pieces = this->pieces();
  const Trie::Unit* units = pieces.units();
  const Trie::Payload* payload = pieces.payloads();
  // Walks bytes [p, p + n) from `node`; -1 when the trie has no such path.
  auto walk = [&](int32_t node, const char* p, size_t n) {
    for (size_t i = 0; i < n && node >= 0; ++i) node = pieces.child(node, uint8_t(p[i]));
    return node;
  };
  for (size_t pos = 0; pos < size;) {
    size_t len = user.empty() ? 0 : user.longest_prefix(normalized.substr(pos));
    const bool freeze = len > 0;
    if (!freeze) len = std::min(one_char_len(uint8_t(text[pos])), size - pos);
    const int32_t index = int32_t(symbols.size());
    symbols.push_back(Symbol{index - 1, pos + len < size ? index + 1 : -1, uint32_t(pos), uint32_t(len),
                             pieces.empty() ? -1 : walk(0, text + pos, len), freeze});
    pos += len;
  }

  // SentencePiece merges the pair with the highest score, the leftmost among equals. A pair is
  // valid until either side changes (sizes only grow, so the size check detects that), and no
  // two valid pairs share a left symbol, so that order is total on valid pairs: any max-heap on
  // (score, -left) pops them in SentencePiece's order. The key packs both into one integer.
  struct Compare {
    bool operator()(const Pair& a, const Pair& b) const { return a.key < b.key; }
  };
  auto make_key = [](float score, int32_t left) {
    uint32_t bits;
    std::memcpy(&bits, &score, 4);
    if (bits == 0x80000000u) bits = 0;  // -0 == +0
    bits = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
    return (uint64_t(bits) << 32) | uint64_t(~uint32_t(left));
  };
  auto& agenda = s.agenda;
  agenda.clear();
  // Merged piece -> the two parts it was made of; only needed when unused pieces exist.
  std::unordered_map<std::string_view, std::pair<std::string_view, std::string_view>> rev_merge;

  // The merged piece is found by continuing the left symbol's trie walk over the right one.
  auto maybe_add = [&](int32_t left, int32_t right) {
    if (left == -1 || right == -1) return;
    const Symbol& l = symbols[size_t(left)];
    const Symbol& r = symbols[size_t(right)];
    if (l.freeze || r.freeze || l.node < 0) return;
    const int32_t node = walk(l.node, text + r.begin, r.len);
    if (node < 0 || !Trie::has_value(units[node])) return;
    const int32_t id = payload[node].value;
    agenda.push_back(Pair{make_key(scores[size_t(id)], left), right, l.len + r.len, node});
    std::push_heap(agenda.begin(), agenda.end(), Compare{});
    if (types[size_t(id)] == PieceType::unused)
      rev_merge[std::string_view(text + l.begin, l.len + r.len)] = {std::string_view(text + l.begin, l.len),
                                                                     std::string_view(text + r.begin, r.len)};
  };

  for (size_t i = 1; i < symbols.size(); ++i) maybe_add(int32_t(i - 1), int32_t(i));

  while (!agenda.empty()) {
    std::pop_heap(agenda.begin(), agenda.end(), Compare{});
    const Pair top = agenda.back();
    agenda.pop_back();
    const int32_t left = top.left();
    Symbol& l = symbols[size_t(left)];
    Symbol& r = symbols[size_t(top.right)];
    if (l.len == 0 || r.len == 0 || l.len + r.len != top.size) continue;
    l.len += r.len;
    l.node = top.node;
    l.next = r.next;
    if (r.next >= 0) symbols[size_t(r.next)].prev = left;
    r.len = 0;
    maybe_add(l.prev, left);
    maybe_add(left, l.next);
  }

  auto resegment = [&](auto&& self, std::string_view w) -> void {
    const int32_t id = lookup(w);
    if (types[size_t(id)] != PieceType::unused) {
      out.push_back(Token{uint32_t(w.data() - text), uint32_t(w.size()), id});
      return;
    }
    auto it = rev_merge.find(w);
    if (it == rev_merge.end()) {
      out.push_back(Token{uint32_t(w.data() - text), uint32_t(w.size()), id});
      return;
    }
    const auto parts = it->second;
    self(self, parts.first);
    self(self, parts.second);
  };
  for (int32_t i = 0; i != -1; i = symbols[size_t(i)].next) {
    const Symbol& sym = symbols[size_t(i)];
    const std::string_view w(text + sym.begin, sym.len);
    if (has_unused) {
      resegment(resegment, w);
    } else if (sym.node >= 0 && Trie::has_value(units[sym.node])) {
      // A piece of the vocabulary: its id as SentencePiece's PieceToId gives it.
      out.push_back(Token{sym.begin, sym.len, canonical[size_t(payload[sym.node].value)]});
    } else {
      out.push_back(Token{sym.begin, sym.len, lookup(w)});
    }
  }
}

// Word model: a new word starts at the beginning and at every U+2581.
void Tokenizer::Impl::segment_word(std::string_view normalized, std::vector<Token>& out) const {
  const char* text = normalized.data();
  const size_t size = normalized.size();
  size_t word = 0;
  for (size_t pos = 0; pos < size;) {
    const size_t len = std::min(one_char_len(uint8_t(text[pos])), size - pos);
    if (pos > 0 && normalized.substr(pos, len) == kSpaceSymbol) {
      out.push_back(Token{uint32_t(word), uint32_t(pos - word), lookup(normalized.substr(word, pos - word))});
      word = pos;
    }
    pos += len;
  }
  out.push_back(Token{uint32_t(word), uint32_t(size - word), lookup(normalized.substr(word))});
}

void Tokenizer::Impl::segment_char(std::string_view normalized, std::vector<Token>& out) const {
  const char* text = normalized.data();
  const size_t size = normalized.size();
  for (size_t pos = 0; pos < size;) {
    size_t len = user.empty() ? 0 : user.longest_prefix(normalized.substr(pos));
    if (len == 0) len = std::min(one_char_len(uint8_t(text[pos])), size - pos);
    out.push_back(Token{uint32_t(pos), uint32_t(len), lookup(normalized.substr(pos, len))});
    pos += len;
  }
}

// ---- public API ----------------------------------------------------------------------------

Tokenizer Tokenizer::load(const std::string& model_path) {
  std::string bytes;
  try {
    bytes = read_file(model_path);
  } catch (const Error& e) {
    fail("cannot read tokenizer model: {}", e.what());
  }
  return from_bytes(bytes, model_path);
}

Tokenizer Tokenizer::from_bytes(std::string_view serialized, const std::string& origin) {
  if (serialized.empty()) fail("{}: not a valid SentencePiece model: the file is empty", origin);
  return from_proto(parse_model_proto(serialized, origin), origin);
}

Tokenizer Tokenizer::from_proto(ModelProto model, const std::string& origin) {
  auto impl = std::make_shared<Impl>();
  impl->model = std::move(model);
  impl->origin = origin;
  impl->init();
  return Tokenizer(std::move(impl));
}

namespace {
// Turns the segmentation into output the way SentencePiece's PopulateSentencePieceText does:
// unknown pieces become byte pieces under byte fallback, otherwise runs of them merge into one.
template <typename Emit, typename Merge>
void emit_tokens(const Tokenizer::Impl& m, std::string_view normalized, const std::vector<Token>& tokens,
                 Emit&& emit, Merge&& merge) {
  bool prev_unk = false;
  for (const Token& t : tokens) {
    const bool is_unk = m.types[size_t(t.id)] == PieceType::unknown;
    const std::string_view w = normalized.substr(t.begin, t.len);
    if (is_unk && m.byte_fallback) {
      for (char c : w) emit(m.byte_ids[uint8_t(c)], std::string_view());
    } else if (is_unk && prev_unk) {
      merge(w);
    } else {
      emit(t.id, w);
    }
    prev_unk = is_unk;
  }
}
}  // namespace

void Tokenizer::encode(std::string_view text, std::vector<int32_t>& ids) const {
  const Impl& m = *impl_;
  Scratch& s = scratch();
  m.normalizer.normalize(text, s.normalized);
  m.segment(s.normalized, s.tokens, s);
  emit_tokens(m, s.normalized, s.tokens, [&](int32_t id, std::string_view) { ids.push_back(id); },
              [](std::string_view) {});
}

void Tokenizer::encode_pieces(std::string_view text, std::vector<std::string>& pieces) const {
  const Impl& m = *impl_;
  Scratch& s = scratch();
  m.normalizer.normalize(text, s.normalized);
  m.segment(s.normalized, s.tokens, s);
  emit_tokens(
      m, s.normalized, s.tokens,
      [&](int32_t id, std::string_view w) {
        if (m.types[size_t(id)] == PieceType::byte)
          pieces.push_back(m.model.pieces[size_t(id)].piece);
        else
          pieces.emplace_back(w);
      },
      [&](std::string_view w) { pieces.back().append(w); });
}

std::string Tokenizer::normalize(std::string_view text) const {
  std::string out;
  impl_->normalizer.normalize(text, out);
  return out;
}

// SentencePiece's Decode: control pieces vanish, <unk> becomes unk_surface, runs of byte
// pieces are reassembled into UTF-8 (each invalid byte becomes U+FFFD), U+2581 becomes ' ', and
// the leading space that the dummy prefix (or extra-whitespace removal) implies is dropped.
std::string Tokenizer::Impl::decode_pieces(const std::vector<std::string_view>& ps, const int32_t* ids) const {
  std::string text;
  const bool strip_bos = model.normalizer().add_dummy_prefix_or_default() ||
                         model.normalizer().remove_extra_whitespaces_or_default();
  const bool remove_extra = model.normalizer().remove_extra_whitespaces_or_default();
  std::string bytes;
  auto flush_bytes = [&]() {
    size_t off = 0;
    while (off < bytes.size()) {
      size_t n = valid_utf8_len(bytes.data() + off, bytes.data() + bytes.size());
      if (n == 0) {
        text.append(kReplacementChar);
        off += 1;
      } else {
        text.append(bytes, off, n);
        off += n;
      }
    }
    bytes.clear();
  };
  bool is_bos_ws = true, bos_ws_seen = false;
  for (size_t i = 0; i < ps.size(); ++i) {
    const int32_t id = ids[i];
    const PieceType t = types[size_t(id)];
    if (t == PieceType::byte) {
      bytes.push_back(char(piece_to_byte(ps[i])));
      continue;
    }
    flush_bytes();
    if (bos_ws_seen || !text.empty()) is_bos_ws = false;
    bos_ws_seen = false;
    std::string_view piece = ps[i];
    if (t == PieceType::control) continue;
    if (t == PieceType::unknown) {
      if (model.pieces[size_t(id)].piece == piece)
        text += unk_surface;
      else
        text += piece;
      continue;
    }
    if (is_bos_ws && strip_bos) {
      if (piece.substr(0, kSpaceSymbol.size()) == kSpaceSymbol) {
        piece.remove_prefix(kSpaceSymbol.size());
        bos_ws_seen = !remove_extra;
      }
    }
    for (size_t pos = 0; pos < piece.size();) {
      if (piece.substr(pos, kSpaceSymbol.size()) == kSpaceSymbol) {
        text.push_back(' ');
        pos += kSpaceSymbol.size();
      } else {
        text.push_back(piece[pos]);
        ++pos;
      }
    }
  }
  flush_bytes();
  if (denormalizer) {
    std::string out;
    denormalizer->normalize(text, out);
    return out;
  }
  return text;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  const Impl& m = *impl_;
  std::vector<std::string_view> ps;
  std::vector<int32_t> canon;
  ps.reserve(ids.size());
  canon.reserve(ids.size());
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size()) fail("cannot decode id {}: the model has ids 0..{}", id, vocab_size() - 1);
    ps.emplace_back(m.model.pieces[size_t(id)].piece);
    canon.push_back(m.canonical[size_t(id)]);
  }
  return m.decode_pieces(ps, canon.data());
}

std::string Tokenizer::decode_pieces(const std::vector<std::string_view>& pieces) const {
  std::vector<int32_t> ids;
  ids.reserve(pieces.size());
  for (auto p : pieces) ids.push_back(impl_->lookup(p));
  return impl_->decode_pieces(pieces, ids.data());
}

std::string Tokenizer::decode_pieces(const std::vector<std::string>& pieces) const {
  std::vector<std::string_view> views(pieces.begin(), pieces.end());
  return decode_pieces(views);
}

int32_t Tokenizer::vocab_size() const { return int32_t(impl_->model.pieces.size()); }
int32_t Tokenizer::piece_to_id(std::string_view piece) const { return impl_->lookup(piece); }

const std::string& Tokenizer::id_to_piece(int32_t id) const {
  if (id < 0 || id >= vocab_size()) fail("id {} is out of range: the model has ids 0..{}", id, vocab_size() - 1);
  return impl_->model.pieces[size_t(id)].piece;
}

float Tokenizer::score(int32_t id) const {
  if (id < 0 || id >= vocab_size()) fail("id {} is out of range: the model has ids 0..{}", id, vocab_size() - 1);
  return impl_->scores[size_t(id)];
}

PieceType Tokenizer::piece_type(int32_t id) const {
  if (id < 0 || id >= vocab_size()) fail("id {} is out of range: the model has ids 0..{}", id, vocab_size() - 1);
  return impl_->types[size_t(id)];
}

int32_t Tokenizer::unk_id() const {
  int32_t id = impl_->lookup(impl_->model.trainer().unk_piece_or_default());
  return impl_->types[size_t(id)] == PieceType::unknown ? id : -1;
}

namespace {
int32_t control_id(const Tokenizer::Impl& m, const std::string& piece) {
  int32_t id = m.lookup(piece);
  return m.types[size_t(id)] == PieceType::control ? id : -1;
}
}  // namespace

int32_t Tokenizer::bos_id() const { return control_id(*impl_, impl_->model.trainer().bos_piece_or_default()); }
int32_t Tokenizer::eos_id() const { return control_id(*impl_, impl_->model.trainer().eos_piece_or_default()); }
int32_t Tokenizer::pad_id() const { return control_id(*impl_, impl_->model.trainer().pad_piece_or_default()); }

ModelType Tokenizer::model_type() const { return impl_->type; }
const ModelProto& Tokenizer::model() const { return impl_->model; }
const std::string& Tokenizer::origin() const { return impl_->origin; }

}  // namespace tsumugi::tokenizer
