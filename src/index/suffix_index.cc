#include "index/suffix_index.h"

#include "index/dedup_exact.h"

#include <divsufsort.h>
#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <simdjson.h>

#include "corpus/jsonl.h"
#include "data/indexed_dataset.h"
#include "util/error.h"
#include "util/io.h"
#include "util/log.h"
#include "util/mapped_file.h"
#include "util/progress.h"

namespace fs = std::filesystem;

namespace tsumugi::index {

namespace {

constexpr uint64_t kMaxSortBytes = uint64_t(std::numeric_limits<int32_t>::max()) - 16;

std::string hex64(uint64_t v) { return fmt::format("{:016x}", v); }

int pointer_bytes_for(uint64_t n) {
  int p = 1;
  while (p < 8 && (n - 1) >> (8 * p)) ++p;
  return p;
}

uint32_t separator_for(int width) { return width == 4 ? 0xFFFFFFFFu : (1u << (8 * width)) - 1; }

void put_be(std::string& out, uint32_t v, int width) {
  for (int b = width - 1; b >= 0; --b) out.push_back(char((v >> (8 * b)) & 0xFF));
}

uint64_t load_u64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

// splitmix64: seeded sampling that is the same on every platform.
uint64_t splitmix(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

struct Range {
  uint64_t lo = 0, hi = 0;
  uint64_t size() const { return hi - lo; }
};

// A file written through OutputFile with its xxh3 computed on the way.
class HashedFile {
 public:
  explicit HashedFile(const std::string& path) : out_(path), st_(XXH3_createState()) { XXH3_64bits_reset(st_); }
  ~HashedFile() { XXH3_freeState(st_); }
  HashedFile(const HashedFile&) = delete;
  HashedFile& operator=(const HashedFile&) = delete;
  void write(std::string_view b) {
    XXH3_64bits_update(st_, b.data(), b.size());
    out_.write(b);
    bytes_ += b.size();
  }
  nlohmann::json commit() {
    out_.commit();
    return {{"bytes", bytes_}, {"xxh3", hex64(XXH3_64bits_digest(st_))}};
  }

 private:
  OutputFile out_;
  XXH3_state_t* st_;
  uint64_t bytes_ = 0;
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// Reading

struct Shard {
  std::string dir;
  int width = 2, ptr_bytes = 4;
  uint32_t sep = 0xFFFF;
  uint64_t n = 0, ndocs = 0, doc_base = 0;
  MappedFile tokens_map, sa_map, docs_map, meta_map, meta_idx_map;
  const uint8_t* tok = nullptr;
  const uint8_t* sa = nullptr;

  [[noreturn]] void corrupt(const std::string& what) const {
    fail("{}: corrupt index shard ({}); rebuild it with tsumugi index", dir, what);
  }
  uint64_t sa_at(uint64_t i) const {
    uint64_t v = 0;
    std::memcpy(&v, sa + i * ptr_bytes, ptr_bytes);  // little-endian host
    if (v >= n) corrupt(fmt::format("suffix array entry {} is {}, past the {} tokens", i, v, n));
    return v;
  }
  uint32_t tok_at(uint64_t pos) const {
    if (pos >= n) return sep;
    const uint8_t* p = tok + pos * width;
    uint32_t v = 0;
    for (int b = 0; b < width; ++b) v = (v << 8) | p[b];
    return v;
  }
  // memcmp-style comparison of the suffix at pos with the query bytes (first q.size() bytes).
  int compare(uint64_t pos, std::string_view q) const {
    uint64_t avail = (n - pos) * width;
    size_t len = size_t(std::min<uint64_t>(avail, q.size()));
    int r = std::memcmp(tok + pos * width, q.data(), len);
    if (r != 0) return r;
    return avail < q.size() ? -1 : 0;
  }
  Range find(std::string_view q) const {
    if (q.empty()) return {0, n};
    uint64_t lo = 0, hi = n;
    while (lo < hi) {
      uint64_t mid = lo + (hi - lo) / 2;
      if (compare(sa_at(mid), q) < 0) lo = mid + 1;
      else hi = mid;
    }
    uint64_t first = lo;
    hi = n;
    while (lo < hi) {
      uint64_t mid = lo + (hi - lo) / 2;
      if (compare(sa_at(mid), q) <= 0) lo = mid + 1;
      else hi = mid;
    }
    return {first, lo};
  }
  // Within r (suffixes sharing `offset` tokens), those whose next token is t.
  Range narrow(Range r, uint64_t offset, uint32_t t) const {
    uint64_t lo = r.lo, hi = r.hi;
    while (lo < hi) {
      uint64_t mid = lo + (hi - lo) / 2;
      if (tok_at(sa_at(mid) + offset) < t) lo = mid + 1;
      else hi = mid;
    }
    uint64_t first = lo;
    hi = r.hi;
    while (lo < hi) {
      uint64_t mid = lo + (hi - lo) / 2;
      if (tok_at(sa_at(mid) + offset) <= t) lo = mid + 1;
      else hi = mid;
    }
    return {first, lo};
  }
  uint64_t doc_start(uint64_t d) const { return load_u64(docs_map.data() + d * 8); }
  // The document holding token position pos.
  uint64_t doc_of(uint64_t pos) const {
    uint64_t lo = 0, hi = ndocs;  // last d with start(d) <= pos
    while (hi - lo > 1) {
      uint64_t mid = lo + (hi - lo) / 2;
      if (doc_start(mid) <= pos) lo = mid;
      else hi = mid;
    }
    return lo;
  }
  std::string metadata(uint64_t d) const {
    uint64_t a = load_u64(meta_idx_map.data() + d * 8), b = load_u64(meta_idx_map.data() + (d + 1) * 8);
    if (a > b || b > meta_map.size()) corrupt(fmt::format("metadata offsets of document {}", d));
    return std::string(reinterpret_cast<const char*>(meta_map.data()) + a, b - a);
  }
};

struct Index::Impl {
  std::string dir, kind;
  int width = 2;
  int64_t vocab = 0;
  uint64_t tokens = 0, documents = 0;
  std::vector<std::unique_ptr<Shard>> shards;
  std::optional<tokenizer::Tokenizer> tok;

  std::string encode(std::span<const int32_t> q) const {
    std::string b;
    b.reserve(q.size() * width);
    for (int32_t t : q) put_be(b, uint32_t(t), width);
    return b;
  }
  std::pair<const Shard*, uint64_t> locate(uint64_t doc) const {
    for (const auto& s : shards)
      if (doc < s->doc_base + s->ndocs) return {s.get(), doc - s->doc_base};
    fail("document {} does not exist (the index has {})", doc, documents);
  }
  Occurrence occurrence(const Shard& s, uint64_t sa_index) const {
    uint64_t p = s.sa_at(sa_index);
    uint64_t d = s.doc_of(p);
    return {s.doc_base + d, p - s.doc_start(d)};
  }
};

Index::Index(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Index::Index(Index&&) noexcept = default;
Index& Index::operator=(Index&&) noexcept = default;
Index::~Index() = default;

const std::string& Index::dir() const { return impl_->dir; }
int Index::token_width() const { return impl_->width; }
int64_t Index::vocab_size() const { return impl_->vocab; }
uint64_t Index::tokens() const { return impl_->tokens; }
uint64_t Index::documents() const { return impl_->documents; }
size_t Index::shard_count() const { return impl_->shards.size(); }
const std::string& Index::text_kind() const { return impl_->kind; }

namespace {

tokenizer::Tokenizer query_tokenizer(const tokenizer::Tokenizer& t) {
  // Without the dummy prefix a query word tokenizes as it does mid-sentence, which is where
  // most of its occurrences are; documents are encoded the same way.
  tokenizer::ModelProto m = t.model();
  if (!m.normalizer_spec) m.normalizer_spec.emplace();
  m.normalizer_spec->add_dummy_prefix = false;
  return tokenizer::Tokenizer::from_proto(std::move(m), t.origin());
}

void verify_file(const std::string& path, const nlohmann::json& want, bool checksum) {
  uint64_t want_bytes = want.at("bytes").get<uint64_t>();
  uint64_t have = file_size_or_zero(path);
  if (!fs::exists(path)) fail("{}: missing (the index is incomplete; rebuild it with tsumugi index)", path);
  if (have != want_bytes)
    fail("{}: {} bytes, the manifest says {} (truncated or replaced; rebuild the index)", path, have, want_bytes);
  if (checksum) {
    MappedFile m(path);
    uint64_t h = XXH3_64bits(m.data(), m.size());
    if (hex64(h) != want.at("xxh3").get<std::string>())
      fail("{}: checksum mismatch (xxh3 {} != manifest {}); the file is corrupt, rebuild the index", path, hex64(h),
           want.at("xxh3").get<std::string>());
  }
}

}  // namespace

Index Index::open(const std::string& dir, Verify verify) {
  auto impl = std::make_unique<Impl>();
  impl->dir = dir;
  std::string manifest_path = (fs::path(dir) / "manifest.json").string();
  if (!fs::exists(manifest_path)) fail("{}: no manifest.json (not a tsumugi index, or its build did not finish)", dir);
  nlohmann::json m;
  try {
    m = nlohmann::json::parse(read_file(manifest_path));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: unreadable manifest: {}", manifest_path, e.what());
  }
  bool checksum = verify == Verify::full;
  try {
    if (m.value("format", "") != kFormatName) fail("{}: not a tsumugi index manifest", manifest_path);
    if (m.at("version").get<int>() != kFormatVersion)
      fail("{}: index format version {} (this build reads {})", manifest_path, m.at("version").get<int>(),
           kFormatVersion);
    impl->width = m.at("token_width").get<int>();
    if (impl->width != 1 && impl->width != 2 && impl->width != 4)
      fail("{}: token_width {} (must be 1, 2 or 4)", manifest_path, impl->width);
    impl->vocab = m.at("vocab_size").get<int64_t>();
    if (impl->vocab <= 0 || uint64_t(impl->vocab) > separator_for(impl->width))
      fail("{}: vocab_size {} does not fit token width {}", manifest_path, impl->vocab, impl->width);
    impl->kind = m.at("text").get<std::string>();
    if (impl->kind == "sentencepiece") {
      std::string tp = (fs::path(dir) / "tokenizer.model").string();
      verify_file(tp, m.at("tokenizer"), true);  // small: always checked
      impl->tok = query_tokenizer(tokenizer::Tokenizer::load(tp));
      if (impl->tok->vocab_size() != impl->vocab)
        fail("{}: tokenizer has {} pieces, the manifest says {}", tp, impl->tok->vocab_size(), impl->vocab);
    } else if (impl->kind != "bytes" && impl->kind != "none") {
      fail("{}: unknown text kind '{}'", manifest_path, impl->kind);
    }
    uint64_t base = 0, tokens = 0;
    for (const auto& sj : m.at("shards")) {
      auto s = std::make_unique<Shard>();
      s->dir = (fs::path(dir) / sj.at("dir").get<std::string>()).string();
      s->width = impl->width;
      s->sep = separator_for(impl->width);
      s->n = sj.at("positions").get<uint64_t>();
      s->ndocs = sj.at("documents").get<uint64_t>();
      s->ptr_bytes = sj.at("pointer_bytes").get<int>();
      if (s->n == 0 || s->ndocs == 0 || s->ptr_bytes < 1 || s->ptr_bytes > 8 || s->ptr_bytes < pointer_bytes_for(s->n))
        fail("{}: shard {} has inconsistent sizes", manifest_path, s->dir);
      const auto& files = sj.at("files");
      auto expect = [&](const char* name, uint64_t bytes) {
        if (files.at(name).at("bytes").get<uint64_t>() != bytes)
          fail("{}: {} should be {} bytes for {} positions", manifest_path, name, bytes, s->n);
        verify_file((fs::path(s->dir) / name).string(), files.at(name), checksum);
      };
      expect("tokens.bin", s->n * s->width);
      expect("sa.bin", s->n * s->ptr_bytes);
      expect("docs.bin", (s->ndocs + 1) * 8);
      expect("meta.idx", (s->ndocs + 1) * 8);
      verify_file((fs::path(s->dir) / "meta.bin").string(), files.at("meta.bin"), checksum);
      s->tokens_map = MappedFile((fs::path(s->dir) / "tokens.bin").string());
      s->sa_map = MappedFile((fs::path(s->dir) / "sa.bin").string());
      s->docs_map = MappedFile((fs::path(s->dir) / "docs.bin").string());
      s->meta_map = MappedFile((fs::path(s->dir) / "meta.bin").string());
      s->meta_idx_map = MappedFile((fs::path(s->dir) / "meta.idx").string());
      s->tok = s->tokens_map.data();
      s->sa = s->sa_map.data();
      // Document starts must rise, start at 0, end at n, and each document end with a separator.
      if (s->doc_start(0) != 0 || s->doc_start(s->ndocs) != s->n) s->corrupt("docs.bin does not span the tokens");
      for (uint64_t d = 0; d < s->ndocs; ++d) {
        uint64_t a = s->doc_start(d), b = s->doc_start(d + 1);
        if (b <= a || b > s->n) s->corrupt(fmt::format("docs.bin entry {} out of order", d));
        if (s->tok_at(b - 1) != s->sep) s->corrupt(fmt::format("document {} does not end with the separator", d));
      }
      s->doc_base = base;
      base += s->ndocs;
      tokens += s->n - s->ndocs;
      impl->shards.push_back(std::move(s));
    }
    if (impl->shards.empty()) fail("{}: the index has no shards", manifest_path);
    impl->documents = base;
    impl->tokens = tokens;
    if (m.at("documents").get<uint64_t>() != base || m.at("tokens").get<uint64_t>() != tokens)
      fail("{}: totals do not match the shards", manifest_path);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: malformed manifest: {}", manifest_path, e.what());
  }
  return Index(std::move(impl));
}

std::vector<int32_t> Index::tokenize(std::string_view text, bool allow_unknown) const {
  std::vector<int32_t> ids;
  if (impl_->kind == "sentencepiece") {
    impl_->tok->encode(text, ids);
    if (!allow_unknown) {
      std::vector<std::string> pieces;
      for (size_t i = 0; i < ids.size(); ++i)
        if (ids[i] == impl_->tok->unk_id()) {
          if (pieces.empty()) impl_->tok->encode_pieces(text, pieces);
          fail("the query has text the index's tokenizer does not know ('{}', token {} is <unk>, which would "
               "match any unknown character); leave it out",
               i < pieces.size() ? pieces[i] : std::string("?"), i);
        }
    }
  } else if (impl_->kind == "bytes") {
    for (unsigned char c : text) {
      if (c == 0xFF) fail("the query has byte 0xFF, which is not UTF-8");
      ids.push_back(c);
    }
  } else {
    fail("{}: this index was built from token ids without a tokenizer; give the query as ids (--ids)", impl_->dir);
  }
  return ids;
}

std::string Index::detokenize(std::span<const int32_t> tokens) const {
  std::string out;
  if (impl_->kind == "bytes") {
    for (int32_t t : tokens) out.push_back(char(t));
  } else if (impl_->kind == "sentencepiece") {
    const auto& tk = *impl_->tok;
    for (int32_t t : tokens) {
      if (t < 0 || t >= tk.vocab_size()) continue;
      const std::string& piece = tk.id_to_piece(t);
      if (tk.is_byte(t) && piece.size() == 6) {
        out.push_back(char(std::stoi(piece.substr(3, 2), nullptr, 16)));
      } else if (tk.is_control(t)) {
        continue;
      } else if (tk.is_unknown(t)) {
        out += " \xE2\x81\x87 ";
      } else {
        for (size_t i = 0; i < piece.size();) {
          if (piece.compare(i, 3, "\xE2\x96\x81") == 0) {
            out.push_back(' ');
            i += 3;
          } else {
            out.push_back(piece[i++]);
          }
        }
      }
    }
  } else {
    for (size_t i = 0; i < tokens.size(); ++i) out += (i ? " " : "") + std::to_string(tokens[i]);
  }
  return out;
}

void Index::check_query(std::span<const int32_t> q) const {
  if (q.empty()) fail("empty query: give at least one token");
  for (size_t i = 0; i < q.size(); ++i)
    if (q[i] < 0 || q[i] >= impl_->vocab)
      fail("query token {} (at {}) is outside the vocabulary [0, {})", q[i], i, impl_->vocab);
}

uint64_t Index::count(std::span<const int32_t> q) const {
  check_query(q);
  std::string b = impl_->encode(q);
  uint64_t c = 0;
  for (const auto& s : impl_->shards) c += s->find(b).size();
  return c;
}

std::vector<Occurrence> Index::occurrences(std::span<const int32_t> q, uint64_t limit) const {
  check_query(q);
  std::string b = impl_->encode(q);
  std::vector<Occurrence> out;
  for (const auto& s : impl_->shards) {
    Range r = s->find(b);
    for (uint64_t i = r.lo; i < r.hi && out.size() < limit; ++i) out.push_back(impl_->occurrence(*s, i));
  }
  return out;
}

namespace {

// Documents (sorted, unique) with the first match position in each, for one term.
std::vector<Occurrence> doc_firsts(const Index& idx, std::span<const int32_t> term) {
  auto occ = idx.occurrences(term);
  std::sort(occ.begin(), occ.end(), [](const Occurrence& a, const Occurrence& b) {
    return a.doc != b.doc ? a.doc < b.doc : a.position < b.position;
  });
  occ.erase(std::unique(occ.begin(), occ.end(), [](const Occurrence& a, const Occurrence& b) { return a.doc == b.doc; }),
            occ.end());
  return occ;
}

// Documents satisfying the CNF, with a match position of the first clause's terms.
std::vector<Occurrence> cnf_documents(const Index& idx, const Cnf& cnf, std::vector<size_t>* match_len) {
  if (cnf.empty()) fail("empty query: give at least one term");
  std::vector<Occurrence> result;
  std::vector<size_t> result_len;
  for (size_t c = 0; c < cnf.size(); ++c) {
    if (cnf[c].empty()) fail("empty OR clause in the query");
    std::vector<std::pair<Occurrence, size_t>> clause;
    for (const auto& term : cnf[c])
      for (const auto& o : doc_firsts(idx, term)) clause.push_back({o, term.size()});
    std::sort(clause.begin(), clause.end(), [](const auto& a, const auto& b) {
      return a.first.doc != b.first.doc ? a.first.doc < b.first.doc : a.first.position < b.first.position;
    });
    clause.erase(std::unique(clause.begin(), clause.end(),
                             [](const auto& a, const auto& b) { return a.first.doc == b.first.doc; }),
                 clause.end());
    if (c == 0) {
      for (auto& [o, len] : clause) {
        result.push_back(o);
        result_len.push_back(len);
      }
      continue;
    }
    std::vector<Occurrence> kept;
    std::vector<size_t> kept_len;
    size_t j = 0;
    for (size_t i = 0; i < result.size(); ++i) {
      while (j < clause.size() && clause[j].first.doc < result[i].doc) ++j;
      if (j < clause.size() && clause[j].first.doc == result[i].doc) {
        kept.push_back(result[i]);
        kept_len.push_back(result_len[i]);
      }
    }
    result.swap(kept);
    result_len.swap(kept_len);
  }
  if (match_len) *match_len = std::move(result_len);
  return result;
}

}  // namespace

uint64_t Index::count_documents(const Cnf& cnf) const { return cnf_documents(*this, cnf, nullptr).size(); }

NextTokens Index::next(std::span<const int32_t> prefix) const {
  if (!prefix.empty()) check_query(prefix);
  std::string b = impl_->encode(prefix);
  std::map<int32_t, uint64_t> counts;
  NextTokens out;
  const uint64_t off = prefix.size();
  for (const auto& s : impl_->shards) {
    Range r = s->find(b);
    out.count += r.size();
    uint64_t i = r.lo;
    // Suffixes in r are sorted by their next token: a run per distinct token, found by a
    // scan when short and by binary search when long (a query costs O(distinct log n)).
    while (i < r.hi) {
      uint32_t t = s->tok_at(s->sa_at(i) + off);
      uint64_t end;
      if (r.hi - i <= 64) {
        end = i + 1;
        while (end < r.hi && s->tok_at(s->sa_at(end) + off) == t) ++end;
      } else {
        end = s->narrow({i, r.hi}, off, t).hi;
      }
      if (t == s->sep) out.at_doc_end += end - i;
      else counts[int32_t(t)] += end - i;
      i = end;
    }
  }
  if (prefix.empty()) out.count -= out.at_doc_end;  // the separators are not corpus tokens
  if (prefix.empty()) out.at_doc_end = 0;
  out.tokens.assign(counts.begin(), counts.end());
  return out;
}

NgramProb Index::prob(std::span<const int32_t> q) const {
  check_query(q);
  NgramProb p;
  if (q.size() == 1) {
    p.prefix_count = impl_->tokens;
  } else {
    auto nt = next(q.first(q.size() - 1));
    p.prefix_count = nt.count - nt.at_doc_end;
  }
  p.full_count = count(q);
  p.prob = p.prefix_count ? double(p.full_count) / double(p.prefix_count) : 0.0;
  return p;
}

NextTokens Index::infgram_next(std::span<const int32_t> context, size_t& suffix_tokens) const {
  if (!context.empty()) check_query(context);
  // Whether the last k tokens of context occur followed by a token somewhere; true for
  // k = 0 and monotone in k, so the longest such k is found by bisection.
  auto occurs_with_next = [&](size_t k) {
    if (k == 0) return true;
    auto q = context.last(k);
    std::string b = impl_->encode(q);
    for (const auto& s : impl_->shards) {
      Range r = s->find(b);
      // The separator sorts last, so the range's first suffix has a next token if any does.
      if (r.size() && s->tok_at(s->sa_at(r.lo) + k) != s->sep) return true;
    }
    return false;
  };
  size_t lo = 0, hi = context.size();
  while (lo < hi) {
    size_t mid = (lo + hi + 1) / 2;
    if (occurs_with_next(mid)) lo = mid;
    else hi = mid - 1;
  }
  suffix_tokens = lo;
  return next(context.last(lo));
}

InfGramProb Index::infgram_prob(std::span<const int32_t> context, int32_t token) const {
  int32_t one[1] = {token};
  check_query(one);
  InfGramProb p;
  auto nt = infgram_next(context, p.suffix_tokens);
  p.suffix_count = nt.count - nt.at_doc_end;
  auto it = std::lower_bound(nt.tokens.begin(), nt.tokens.end(), std::make_pair(token, uint64_t(0)));
  if (it != nt.tokens.end() && it->first == token) p.full_count = it->second;
  p.prob = p.suffix_count ? double(p.full_count) / double(p.suffix_count) : 0.0;
  return p;
}

std::vector<int32_t> Index::document_tokens(uint64_t doc) const {
  auto [s, d] = impl_->locate(doc);
  uint64_t a = s->doc_start(d), b = s->doc_start(d + 1) - 1;
  std::vector<int32_t> out;
  out.reserve(b - a);
  for (uint64_t p = a; p < b; ++p) out.push_back(int32_t(s->tok_at(p)));
  return out;
}

std::string Index::document_metadata(uint64_t doc) const {
  auto [s, d] = impl_->locate(doc);
  return s->metadata(d);
}

namespace {

DocHit make_hit(const Index& idx, const Occurrence& o, size_t match_len, size_t ctx) {
  DocHit h;
  h.doc = o.doc;
  h.position = o.position;
  auto toks = idx.document_tokens(o.doc);
  h.doc_tokens = toks.size();
  size_t p = size_t(o.position), e = std::min(toks.size(), p + match_len);
  size_t a = p > ctx ? p - ctx : 0, z = std::min(toks.size(), e + ctx);
  h.before.assign(toks.begin() + a, toks.begin() + p);
  h.match.assign(toks.begin() + p, toks.begin() + e);
  h.after.assign(toks.begin() + e, toks.begin() + z);
  h.metadata = idx.document_metadata(o.doc);
  return h;
}

}  // namespace

DocsResult Index::docs(std::span<const int32_t> q, const DocsOptions& o) const {
  check_query(q);
  DocsResult r;
  std::string b = impl_->encode(q);
  std::vector<std::pair<const Shard*, Range>> ranges;
  for (const auto& s : impl_->shards) {
    Range rg = s->find(b);
    r.occurrences += rg.size();
    if (rg.size()) ranges.push_back({s.get(), rg});
  }
  if (r.occurrences <= o.max_scan) {
    auto firsts = doc_firsts(*this, q);
    r.documents = firsts.size();
    for (uint64_t i = o.offset; i < firsts.size() && r.hits.size() < o.limit; ++i)
      r.hits.push_back(make_hit(*this, firsts[i], q.size(), o.context_tokens));
    return r;
  }
  // Too many to list: draw occurrences with the seed, one hit per distinct document.
  r.sampled = true;
  uint64_t state = o.seed;
  std::vector<uint64_t> seen;
  uint64_t want = o.offset + o.limit, tries = 0;
  while (seen.size() < want && tries++ < want * 16 + 64) {
    uint64_t k = splitmix(state) % r.occurrences;
    for (auto& [s, rg] : ranges) {
      if (k >= rg.size()) {
        k -= rg.size();
        continue;
      }
      Occurrence occ = impl_->occurrence(*s, rg.lo + k);
      if (std::find(seen.begin(), seen.end(), occ.doc) != seen.end()) break;
      seen.push_back(occ.doc);
      if (seen.size() > o.offset) r.hits.push_back(make_hit(*this, occ, q.size(), o.context_tokens));
      break;
    }
  }
  return r;
}

DocsResult Index::docs(const Cnf& cnf, const DocsOptions& o) const {
  if (cnf.size() == 1 && cnf[0].size() == 1) return docs(cnf[0][0], o);
  DocsResult r;
  std::vector<size_t> lens;
  auto found = cnf_documents(*this, cnf, &lens);
  r.documents = found.size();
  for (uint64_t i = o.offset; i < found.size() && r.hits.size() < o.limit; ++i)
    r.hits.push_back(make_hit(*this, found[i], lens[i], o.context_tokens));
  return r;
}

std::vector<TraceSpan> Index::trace(std::span<const int32_t> q, size_t min_tokens, size_t docs_per_span,
                                    size_t context_tokens) const {
  if (q.empty()) fail("nothing to trace: the text has no tokens");
  check_query(q);
  if (min_tokens == 0) min_tokens = 1;
  const size_t m = q.size();
  // longest[i]: the longest prefix of q[i..] occurring anywhere. Per shard, the longest match
  // from i+1 is at least the one from i minus one token, so each start resumes from there.
  std::vector<size_t> longest(m, 0);
  std::vector<size_t> prev(impl_->shards.size(), 0);
  const int32_t unk = impl_->tok ? impl_->tok->unk_id() : -1;
  for (size_t i = 0; i < m; ++i) {
    for (size_t si = 0; si < impl_->shards.size(); ++si) {
      const Shard& s = *impl_->shards[si];
      size_t known = prev[si] > 1 ? prev[si] - 1 : 0;
      Range r = s.find(impl_->encode(q.subspan(i, known)));
      size_t k = known;
      while (i + k < m && r.size() && q[i + k] != unk) {
        Range nr = s.narrow(r, k, uint32_t(q[i + k]));
        if (!nr.size()) break;
        r = nr;
        ++k;
      }
      prev[si] = k;
      longest[i] = std::max(longest[i], k);
    }
  }
  std::vector<TraceSpan> spans;
  size_t covered_to = 0;
  for (size_t i = 0; i < m; ++i) {
    size_t end = i + longest[i];
    if (longest[i] >= min_tokens && end > covered_to) {
      TraceSpan sp;
      sp.start = i;
      sp.length = longest[i];
      auto span_tokens = q.subspan(i, longest[i]);
      sp.count = count(span_tokens);
      DocsOptions o;
      o.limit = docs_per_span;
      o.context_tokens = context_tokens;
      if (docs_per_span) sp.docs = docs(span_tokens, o).hits;
      spans.push_back(std::move(sp));
    }
    covered_to = std::max(covered_to, end);
  }
  return spans;
}

std::vector<std::vector<std::string>> parse_cnf_text(std::string_view query) {
  auto split = [](std::string_view s, std::string_view sep) {
    std::vector<std::string> parts;
    size_t start = 0;
    while (true) {
      size_t p = s.find(sep, start);
      parts.emplace_back(s.substr(start, p == std::string_view::npos ? std::string_view::npos : p - start));
      if (p == std::string_view::npos) break;
      start = p + sep.size();
    }
    return parts;
  };
  std::vector<std::vector<std::string>> cnf;
  for (const auto& clause : split(query, " AND ")) {
    cnf.emplace_back();
    for (const auto& term : split(clause, " OR ")) {
      if (term.empty()) fail("empty term in query '{}'", std::string(query));
      cnf.back().push_back(term);
    }
  }
  return cnf;
}

// ---------------------------------------------------------------------------------------------
// Building

namespace {

class ShardBuilder {
 public:
  ShardBuilder(std::string root, int width, bool show_progress)
      : root_(std::move(root)), width_(width), sep_(separator_for(width)), show_(show_progress) {}

  void add(std::span<const int32_t> toks, std::string_view meta) {
    doc_starts_.push_back(bytes_.size() / width_);
    for (int32_t t : toks) put_be(bytes_, uint32_t(t), width_);
    put_be(bytes_, sep_, width_);
    meta_offsets_.push_back(meta_.size());
    meta_ += meta;
  }
  uint64_t positions() const { return bytes_.size() / width_; }
  bool empty() const { return doc_starts_.empty(); }

  nlohmann::json flush(size_t shard_no) {
    std::string name = fmt::format("shard-{:05}", shard_no);
    fs::path dir = fs::path(root_) / name;
    fs::create_directories(dir);
    const uint64_t n = positions();
    if (bytes_.size() > kMaxSortBytes) fail("internal: shard of {} bytes is too large to sort", bytes_.size());
    auto t0 = std::chrono::steady_clock::now();
    if (show_) log::info("index: sorting shard {} ({} tokens)", shard_no, n);
    std::vector<saidx_t> sa(bytes_.size());
    if (divsufsort(reinterpret_cast<const sauchar_t*>(bytes_.data()), sa.data(), saidx_t(bytes_.size())) != 0)
      fail("suffix sorting failed for shard {}", shard_no);
    const int pb = pointer_bytes_for(n);
    nlohmann::json files;
    {
      HashedFile f((dir / "sa.bin").string());
      std::string buf;
      buf.reserve(1 << 20);
      uint64_t kept = 0;
      for (saidx_t v : sa) {
        if (v % width_) continue;  // a suffix starting inside a token
        uint64_t pos = uint64_t(v) / width_;
        char le[8];
        std::memcpy(le, &pos, 8);
        buf.append(le, pb);
        ++kept;
        if (buf.size() >= (1 << 20)) {
          f.write(buf);
          buf.clear();
        }
      }
      f.write(buf);
      if (kept != n) fail("internal: kept {} suffixes for {} positions", kept, n);
      files["sa.bin"] = f.commit();
    }
    std::vector<saidx_t>().swap(sa);
    {
      HashedFile f((dir / "tokens.bin").string());
      f.write(bytes_);
      files["tokens.bin"] = f.commit();
    }
    auto write_u64s = [&](const char* fname, std::vector<uint64_t> v, uint64_t last) {
      v.push_back(last);
      HashedFile f((dir / fname).string());
      f.write(std::string_view(reinterpret_cast<const char*>(v.data()), v.size() * 8));
      files[fname] = f.commit();
    };
    write_u64s("docs.bin", doc_starts_, n);
    write_u64s("meta.idx", meta_offsets_, meta_.size());
    {
      HashedFile f((dir / "meta.bin").string());
      f.write(meta_);
      files["meta.bin"] = f.commit();
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (show_) log::info("index: shard {} sorted and written in {:.1f} s", shard_no, secs);
    nlohmann::json j = {{"dir", name},       {"positions", n},       {"documents", doc_starts_.size()},
                        {"pointer_bytes", pb}, {"files", files}};
    bytes_.clear();
    bytes_.shrink_to_fit();
    doc_starts_.clear();
    meta_offsets_.clear();
    meta_.clear();
    return j;
  }

 private:
  std::string root_;
  int width_;
  uint32_t sep_;
  bool show_;
  std::string bytes_;
  std::vector<uint64_t> doc_starts_, meta_offsets_;
  std::string meta_;
};

int width_for_vocab(int64_t vocab) {
  if (vocab <= 0xFF) return 1;
  if (vocab <= 0xFFFF) return 2;
  return 4;
}

}  // namespace

BuildStats build_index(const BuildOptions& opt) {
  auto t0 = std::chrono::steady_clock::now();
  if (opt.output.empty()) fail("no output directory (-o INDEXDIR)");
  if (opt.text_inputs.empty() == opt.shard_prefixes.empty()) fail("give either --text JSONL... or --shards PREFIX...");
  if (opt.shard_tokens == 0) fail("--shard-tokens must be positive");
  if (fs::exists(opt.output) && !opt.force) fail("{} already exists (pass --force to replace it)", opt.output);

  std::string kind;
  std::optional<tokenizer::Tokenizer> tok;
  int64_t vocab = 0;
  std::vector<data::IndexedDataset> shard_inputs;
  if (opt.bytes) {
    if (!opt.shard_prefixes.empty()) fail("--bytes indexes text: use it with --text");
    if (!opt.tokenizer_path.empty()) fail("--bytes and --tokenizer exclude each other: index bytes or tokens");
    kind = "bytes";
    vocab = 0xFF;  // byte 0xFF never occurs in UTF-8: it is the separator
  } else if (!opt.tokenizer_path.empty()) {
    kind = "sentencepiece";
    tok = query_tokenizer(tokenizer::Tokenizer::load(opt.tokenizer_path));
    vocab = tok->vocab_size();
  } else if (!opt.text_inputs.empty()) {
    fail("indexing text needs --tokenizer M.model (or --bytes for a byte-level index)");
  } else {
    kind = "none";
  }
  uint64_t total_input = 0;
  for (const auto& p : opt.shard_prefixes) {
    shard_inputs.emplace_back(p);
    total_input += file_size_or_zero(data::bin_path(p));
  }
  if (kind == "none") {
    vocab = opt.vocab_size;
    if (vocab <= 0) {
      int64_t mx = -1;
      std::vector<int32_t> buf;
      for (const auto& ds : shard_inputs)
        for (size_t i = 0; i < ds.size(); ++i) {
          ds.get(i, buf);
          for (int32_t t : buf) mx = std::max<int64_t>(mx, t);
        }
      vocab = mx + 1;
      if (vocab <= 0) fail("the token shards hold no tokens");
    }
  }
  if (vocab > int64_t(0xFFFFFFFE)) fail("vocabulary of {} does not fit the index", vocab);
  const int width = kind == "bytes" ? 1 : std::max(2, width_for_vocab(vocab));
  const uint64_t max_positions = kMaxSortBytes / width;
  const uint64_t shard_limit = std::min<uint64_t>(opt.shard_tokens, max_positions / 2);

  std::vector<std::string> text_files = opt.text_inputs.empty() ? std::vector<std::string>{} : expand_inputs(opt.text_inputs);
  for (const auto& f : text_files) total_input += file_size_or_zero(f);

  std::string tmp = opt.output + fmt::format(".tmp-{}", ::getpid());
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  struct Cleanup {
    std::string dir;
    bool keep = false;
    ~Cleanup() {
      std::error_code ec;
      if (!keep) fs::remove_all(dir, ec);
    }
  } cleanup{tmp};

  bool show = opt.progress < 0 ? Progress::stderr_is_tty() : opt.progress > 0;
  Progress progress("index", total_input, show);
  BuildStats st;
  ShardBuilder builder(tmp, width, show || log::level() <= log::Level::debug);
  nlohmann::json shards = nlohmann::json::array();
  std::unique_ptr<OutputFile> errors;
  auto flush = [&] {
    if (builder.empty()) return;
    shards.push_back(builder.flush(shards.size()));
  };
  auto add_doc = [&](std::span<const int32_t> toks, const std::string& meta) {
    if (toks.empty()) {
      ++st.empty_documents;
      return;
    }
    if (toks.size() + 1 > max_positions / 2)
      fail("a document of {} tokens is larger than a shard can hold", toks.size());
    if (!builder.empty() && builder.positions() + toks.size() + 1 > shard_limit) flush();
    for (int32_t t : toks)
      if (t < 0 || t >= vocab) fail("token {} is outside the vocabulary [0, {})", t, vocab);
    builder.add(toks, meta);
    ++st.documents;
    st.tokens += toks.size();
  };

  std::vector<int32_t> ids;
  simdjson::dom::parser parser;
  for (size_t fi = 0; fi < text_files.size(); ++fi) {
    LineReader reader(text_files[fi]);
    std::string_view line;
    uint64_t last_raw = 0;
    while (reader.next(line)) {
      if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
      std::string err;
      std::string text, meta = "{";
      auto doc = parser.parse(line.data(), line.size());
      if (doc.error()) {
        err = std::string("malformed JSON: ") + simdjson::error_message(doc.error());
      } else if (!doc.value().is_object()) {
        err = "not a JSON object";
      } else {
        auto obj = doc.value().get_object().value();
        auto tv = obj[opt.text_field];
        std::string_view sv;
        if (tv.error()) err = fmt::format("no '{}' field", opt.text_field);
        else if (tv.get(sv)) err = fmt::format("'{}' is not a string", opt.text_field);
        else text = std::string(sv);
        bool first = true;
        for (const auto& f : opt.meta_fields) {
          auto v = obj[f];
          if (v.error()) continue;
          if (!first) meta += ",";
          first = false;
          corpus::append_json_string(meta, f);
          meta += ":" + simdjson::minify(v.value());
        }
        if (first) {
          meta += "\"file\":";
          corpus::append_json_string(meta, text_files[fi]);
          meta += fmt::format(",\"line\":{}", reader.line_number());
        }
        meta += "}";
      }
      if (err.empty()) {
        ids.clear();
        if (kind == "bytes") {
          for (unsigned char c : text) ids.push_back(c);
        } else {
          tok->encode(text, ids);
        }
        add_doc(ids, meta);
      } else {
        ++st.bad_records;
        if (!errors) errors = std::make_unique<OutputFile>((fs::path(tmp) / "errors.jsonl").string());
        std::string rec = "{\"file\":";
        corpus::append_json_string(rec, text_files[fi]);
        rec += fmt::format(",\"line\":{},\"error\":", reader.line_number());
        corpus::append_json_string(rec, err);
        rec += "}\n";
        errors->write(rec);
      }
      progress.add(reader.raw_bytes_consumed() - last_raw, 1);
      last_raw = reader.raw_bytes_consumed();
    }
  }
  for (size_t si = 0; si < shard_inputs.size(); ++si) {
    const auto& ds = shard_inputs[si];
    std::string name = fs::path(opt.shard_prefixes[si]).filename().string();
    std::vector<int32_t> seq;
    for (size_t d = 0; d < ds.document_count(); ++d) {
      auto [a, b] = ds.document_sequences(d);
      ids.clear();
      uint64_t bytes = 0;
      for (size_t s = a; s < b; ++s) {
        ds.get(s, seq);
        ids.insert(ids.end(), seq.begin(), seq.end());
        bytes += uint64_t(ds.sequence_length(s)) * data::dtype_size(ds.dtype());
      }
      std::string meta = "{\"shard\":";
      corpus::append_json_string(meta, name);
      meta += fmt::format(",\"document\":{}}}", d);
      add_doc(ids, meta);
      progress.add(bytes, 1);
    }
  }
  flush();
  progress.finish();
  if (st.documents == 0) fail("no documents to index (every input was empty or unreadable)");
  if (errors) errors->commit();

  nlohmann::json manifest = {{"format", kFormatName},
                             {"version", kFormatVersion},
                             {"text", kind},
                             {"token_width", width},
                             {"vocab_size", vocab},
                             {"text_field", opt.text_field},
                             {"documents", st.documents},
                             {"tokens", st.tokens},
                             {"bad_records", st.bad_records},
                             {"empty_documents", st.empty_documents},
                             {"inputs", opt.text_inputs.empty() ? opt.shard_prefixes : text_files},
                             {"shards", shards}};
  if (tok) {
    std::string model = read_file(opt.tokenizer_path);
    write_file_atomic((fs::path(tmp) / "tokenizer.model").string(), model);
    manifest["tokenizer"] = {{"bytes", model.size()},
                             {"xxh3", hex64(XXH3_64bits(model.data(), model.size()))},
                             {"source", opt.tokenizer_path}};
  }
  write_file_atomic((fs::path(tmp) / "manifest.json").string(), manifest.dump(2) + "\n");
  for (const auto& e : fs::recursive_directory_iterator(tmp))
    if (e.is_regular_file()) st.index_bytes += e.file_size();

  // Swap into place: the old index (with --force) is moved aside first and removed last.
  std::string old;
  if (fs::exists(opt.output)) {
    old = opt.output + fmt::format(".old-{}", ::getpid());
    fs::rename(opt.output, old);
  }
  fs::rename(tmp, opt.output);
  cleanup.keep = true;
  if (!old.empty()) fs::remove_all(old);
  st.shards = shards.size();
  st.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return st;
}


// ---------------------------------------------------------------------------------------------
// Exact-substring dedup (declared in dedup_exact.h; here because it walks the shards' arrays)

std::vector<std::vector<std::pair<uint64_t, uint64_t>>> duplicate_spans(const Index& index, size_t min_tokens) {
  if (min_tokens == 0) fail("the minimum duplicate length must be at least 1 token");
  const auto& impl = index.impl();
  const uint64_t N = min_tokens;
  std::vector<std::vector<std::pair<uint64_t, uint64_t>>> spans(impl.documents);
  for (size_t si = 0; si < impl.shards.size(); ++si) {
    const Shard& s = *impl.shards[si];
    // starts_ok[p]: an N-token sequence starting at p stays inside its document.
    std::vector<bool> starts_ok(s.n, false), marked(s.n, false);
    for (uint64_t d = 0; d < s.ndocs; ++d) {
      uint64_t a = s.doc_start(d), end = s.doc_start(d + 1) - 1;  // end: the separator
      for (uint64_t p = a; p + N <= end; ++p) starts_ok[p] = true;
    }
    const size_t nbytes = N * s.width;
    // Equal N-token prefixes are adjacent in suffix order: walk runs of them.
    uint64_t i = 0;
    while (i < s.n) {
      uint64_t p0 = s.sa_at(i);
      if (!starts_ok[p0]) {
        ++i;
        continue;
      }
      std::string_view key(reinterpret_cast<const char*>(s.tok + p0 * s.width), nbytes);
      uint64_t j = i + 1, first = p0;
      while (j < s.n) {
        uint64_t pj = s.sa_at(j);
        if (!starts_ok[pj] || std::memcmp(s.tok + pj * s.width, key.data(), nbytes) != 0) break;
        first = std::min(first, pj);
        ++j;
      }
      bool seen_before = false;  // in an earlier shard: then no copy here is the first
      for (size_t e = 0; e < si && !seen_before; ++e) seen_before = impl.shards[e]->find(key).size() > 0;
      for (uint64_t k = i; k < j; ++k) {
        uint64_t p = s.sa_at(k);
        if (seen_before || p != first) marked[p] = true;
      }
      i = j;
    }
    // Token t is removed when some marked start lies in (t - N, t]: merge the marked windows.
    for (uint64_t d = 0; d < s.ndocs; ++d) {
      uint64_t a = s.doc_start(d), end = s.doc_start(d + 1) - 1;
      auto& out = spans[s.doc_base + d];
      for (uint64_t p = a; p < end; ++p) {
        if (marked[p]) {
          uint64_t from = p - a, to = p - a + N;
          if (!out.empty() && out.back().second >= from) out.back().second = std::max(out.back().second, to);
          else out.push_back({from, to});
        }
      }
    }
  }
  return spans;
}

}  // namespace tsumugi::index
