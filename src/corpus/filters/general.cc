// Language-independent filters: length, compression ratio, Gopher repetition rules,
// PII masking, NFKC normalization and language identification.
#include <fmt/format.h>
#include <xxhash.h>
#include <libdeflate.h>
#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <vector>

#include "corpus/filters/groups.h"
#include "text/langid.h"
#include "text/utf8.h"
#include "text/words.h"
#include "util/error.h"

namespace tsumugi::corpus {

namespace {

using text::format_pair;

// ---------------------------------------------------------------------------------------
// length

class LengthFilter : public Filter {
 public:
  LengthFilter(std::string name, std::optional<int64_t> min, std::optional<int64_t> max)
      : Filter(std::move(name)), min_(min), max_(max) {}

  bool apply(Document& doc, std::string& reason) const override {
    if (!min_ && !max_) return true;
    auto n = int64_t(text::count_codepoints(doc.text));
    if (min_ && n < *min_) {
      reason = fmt::format("{} chars < min_chars {}", n, *min_);
      return false;
    }
    if (max_ && n > *max_) {
      reason = fmt::format("{} chars > max_chars {}", n, *max_);
      return false;
    }
    return true;
  }

 private:
  std::optional<int64_t> min_, max_;
};

std::unique_ptr<Filter> make_length(const std::string& name, Params& p) {
  std::optional<int64_t> min, max;
  if (p.has("min_chars")) min = p.integer("min_chars", 0);
  if (p.has("max_chars")) max = p.integer("max_chars", 0);
  if (min && *min < 0) fail("filter 'length': min_chars must be >= 0, got {}", *min);
  if (min && max && *max < *min) fail("filter 'length': max_chars {} < min_chars {}", *max, *min);
  return std::make_unique<LengthFilter>(name, min, max);
}

// ---------------------------------------------------------------------------------------
// compression_ratio
//
// ratio = zlib-compressed bytes / UTF-8 bytes (what Python's
// len(zlib.compress(text.encode(), level)) / len(text.encode()) gives: zlib container,
// 15-bit window). Low ratio = highly repetitive text, high ratio = random-looking text.

struct Deflater {
  z_stream zs{};
  int level = -100;
  bool ready = false;
  std::vector<unsigned char> out;  // 64 KiB, allocated on first use

  ~Deflater() {
    if (ready) deflateEnd(&zs);
  }

  // Compressed size of s at `level`; reuses one stream and one output buffer per thread.
  size_t compressed_size(std::string_view s, int lvl) {
    if (ready && lvl != level) {
      deflateEnd(&zs);
      ready = false;
    }
    if (!ready) {
      zs = z_stream{};
      if (deflateInit(&zs, lvl) != Z_OK) fail("zlib: deflateInit failed");
      ready = true;
      level = lvl;
    } else {
      deflateReset(&zs);
    }
    if (out.empty()) out.resize(size_t(1) << 16);
    auto* in = reinterpret_cast<const unsigned char*>(s.data());
    size_t left = s.size();
    constexpr size_t kChunk = size_t(1) << 30;
    int ret = Z_OK;
    do {
      size_t n = std::min(left, kChunk);
      zs.next_in = const_cast<unsigned char*>(in);
      zs.avail_in = uInt(n);
      in += n;
      left -= n;
      int flush = left == 0 ? Z_FINISH : Z_NO_FLUSH;
      do {
        zs.next_out = out.data();
        zs.avail_out = uInt(out.size());
        ret = deflate(&zs, flush);
        if (ret == Z_STREAM_ERROR) fail("zlib: deflate failed");
      } while (zs.avail_out == 0);
    } while (left > 0);
    if (ret != Z_STREAM_END) fail("zlib: deflate did not finish");
    return size_t(zs.total_out);
  }
};

thread_local Deflater tl_deflater;

// libdeflate writes the same zlib format 3-4x faster than zlib. Its sizes differ slightly
// from zlib's (bench/compression_engines.sh: libdeflate level 6 vs zlib level 9 on the bundled
// Japanese corpus, 5 of 1723 keep/reject decisions differ).
struct FastDeflater {
  libdeflate_compressor* c = nullptr;
  int level = -1;
  std::vector<char> out;
  ~FastDeflater() {
    if (c) libdeflate_free_compressor(c);
  }
  size_t compressed_size(std::string_view s, int lvl) {
    if (!c || lvl != level) {
      if (c) libdeflate_free_compressor(c);
      c = libdeflate_alloc_compressor(lvl);
      if (!c) fail("libdeflate: cannot create a level {} compressor", lvl);
      level = lvl;
    }
    out.resize(libdeflate_zlib_compress_bound(c, s.size()));
    size_t n = libdeflate_zlib_compress(c, s.data(), s.size(), out.data(), out.size());
    if (n == 0) fail("libdeflate: compression failed");
    return n;
  }
};

thread_local FastDeflater tl_fast_deflater;

class CompressionRatioFilter : public Filter {
 public:
  CompressionRatioFilter(std::string name, double min, double max, int level, bool use_zlib)
      : Filter(std::move(name)), min_(min), max_(max), level_(level), use_zlib_(use_zlib) {}

  bool apply(Document& doc, std::string& reason) const override {
    if (doc.text.empty()) {
      reason = "empty text (compression ratio undefined)";
      return false;
    }
    size_t compressed = use_zlib_ ? tl_deflater.compressed_size(doc.text, level_)
                                  : tl_fast_deflater.compressed_size(doc.text, level_);
    double ratio = double(compressed) / double(doc.text.size());
    if (ratio < min_) {
      auto [v, t] = format_pair(ratio, min_);
      reason = fmt::format("compression ratio {} < {}", v, t);
      return false;
    }
    if (ratio > max_) {
      auto [v, t] = format_pair(ratio, max_);
      reason = fmt::format("compression ratio {} > {}", v, t);
      return false;
    }
    return true;
  }

 private:
  double min_, max_;
  int level_;
  bool use_zlib_;
};

std::unique_ptr<Filter> make_compression_ratio(const std::string& name, Params& p) {
  double min = p.number("min", 0.30);
  double max = p.number("max", 0.70);
  int64_t level = p.integer("level", 6);
  std::string engine = p.string("engine", "zlib");
  if (engine != "zlib" && engine != "libdeflate")
    fail("filter 'compression_ratio': engine must be zlib or libdeflate, got '{}'", engine);
  if (level < 1 || level > 9) fail("filter 'compression_ratio': level must be 1..9, got {}", level);
  if (max < min) fail("filter 'compression_ratio': max {} < min {}", max, min);
  return std::make_unique<CompressionRatioFilter>(name, min, max, int(level), engine == "zlib");
}

// ---------------------------------------------------------------------------------------
// repetition (Gopher, Rae et al. 2021, Appendix A.1.1 and Table A1)

inline uint64_t mix64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}
// Hash of a sequence extended by one element; collisions at 2^-64.
inline uint64_t extend_hash(uint64_t h, uint64_t u) { return mix64(h * 0x9E3779B97F4A7C15ULL + u + 1); }

// Open-addressing hash -> count table. Sized to the document on reset, so clearing
// costs O(document) and the memory is reused across documents on the same thread.
class FlatCounter {
 public:
  void reset(size_t n) {
    size_t cap = 16;
    while (cap < 2 * n) cap <<= 1;
    if (slots_.size() < cap) slots_.resize(cap);
    std::fill_n(slots_.begin(), cap, Slot{});
    mask_ = cap - 1;
  }
  // Counts one occurrence of h; returns its slot.
  size_t add(uint64_t h) {
    if (h == 0) h = 1;
    size_t i = size_t(h) & mask_;
    for (;;) {
      Slot& e = slots_[i];
      if (e.key == h) {
        ++e.count;
        return i;
      }
      if (e.key == 0) {
        e.key = h;
        e.count = 1;
        return i;
      }
      i = (i + 1) & mask_;
    }
  }
  uint32_t count(size_t slot) const { return slots_[slot].count; }

 private:
  struct Slot {
    uint64_t key = 0;
    uint32_t count = 0;
  };
  std::vector<Slot> slots_;
  size_t mask_ = 0;
};

struct RepetitionScratch {
  std::vector<uint64_t> unit_hash;  // per unit (word or character)
  std::vector<uint32_t> unit_len;   // code points per unit
  std::vector<uint64_t> prefix;     // prefix sums of unit_len
  std::vector<uint64_t> gram;       // hash of the n-gram starting at each unit
  std::vector<uint32_t> cand;       // units whose n-gram may still repeat, ascending
  std::vector<uint32_t> slot;       // table slot of each candidate's n-gram
  FlatCounter table;
};
thread_local RepetitionScratch tl_rep;

struct NgramRule {
  int n;
  double max_frac;
  bool top;  // true: top n-gram rule; false: duplicate n-gram rule
};

class RepetitionFilter : public Filter {
 public:
  struct Config {
    bool word_unit = true;
    double max_dup_line_frac = 0.30, max_dup_para_frac = 0.30;
    double max_dup_line_char_frac = 0.20, max_dup_para_char_frac = 0.20;
    std::vector<NgramRule> rules;  // sorted by n
  };

  RepetitionFilter(std::string name, Config c) : Filter(std::move(name)), c_(std::move(c)) {}

  bool apply(Document& doc, std::string& reason) const override {
    std::string_view s = doc.text;
    // Code points, not counting the '\r' of CRLF line ends (CRLF text scores like LF text).
    size_t total_chars = text::count_codepoints(s) - count_crlf(s);
    if (total_chars == 0) return true;
    if (!check_lines(s, total_chars, reason)) return false;
    if (c_.rules.empty()) return true;
    return check_ngrams(s, reason);
  }

 private:
  static bool enabled(double max) { return max >= 0; }

  static size_t count_crlf(std::string_view s) {
    size_t n = 0;
    for (size_t i = s.find('\r'); i != std::string_view::npos; i = s.find('\r', i + 1))
      if (i + 1 < s.size() && s[i + 1] == '\n') ++n;
    return n;
  }

  bool fail_frac(std::string& reason, const char* what, double v, double max) const {
    auto [a, b] = format_pair(v, max);
    reason = fmt::format("{} {} > {}", what, a, b);
    return false;
  }

  // Duplicate lines and paragraphs. A line or paragraph is a duplicate when an identical
  // one (after trimming whitespace) occurred earlier in the document; fractions count
  // the repeats, not the first occurrence. Blank lines are not lines; paragraphs are
  // separated by blank lines. Char fractions are over all code points of the text.
  bool check_lines(std::string_view s, size_t total_chars, std::string& reason) const {
    bool want_lines = enabled(c_.max_dup_line_frac) || enabled(c_.max_dup_line_char_frac);
    bool want_paras = enabled(c_.max_dup_para_frac) || enabled(c_.max_dup_para_char_frac);
    if (!want_lines && !want_paras) return true;
    auto& sc = tl_rep;
    size_t nl = size_t(std::count(s.begin(), s.end(), '\n')) + 1;
    sc.table.reset(2 * nl);  // lines and paragraphs share the table (hashes tagged apart)
    size_t lines = 0, dup_lines = 0, dup_line_chars = 0;
    size_t paras = 0, dup_paras = 0, dup_para_chars = 0;
    uint64_t para_hash = 0, para_chars = 0;
    size_t para_lines = 0;
    auto end_para = [&] {
      if (para_lines == 0) return;
      ++paras;
      size_t slot = sc.table.add(extend_hash(para_hash, 0x5041524147524150ULL));
      if (sc.table.count(slot) > 1) {
        ++dup_paras;
        dup_para_chars += para_chars;
      }
      para_hash = 0;
      para_chars = 0;
      para_lines = 0;
    };
    text::for_each_line(s, [&](std::string_view line) {
      std::string_view t = text::trim(line);
      if (t.empty()) {
        end_para();
        return;
      }
      uint64_t h = XXH3_64bits(t.data(), t.size());
      size_t len = text::count_codepoints(t);
      ++lines;
      size_t slot = sc.table.add(h);
      if (sc.table.count(slot) > 1) {
        ++dup_lines;
        dup_line_chars += len;
      }
      para_hash = extend_hash(para_hash, h);
      para_chars += len + (para_lines ? 1 : 0);
      ++para_lines;
    });
    end_para();
    if (paras > 0) {
      double f = double(dup_paras) / double(paras);
      if (enabled(c_.max_dup_para_frac) && f > c_.max_dup_para_frac)
        return fail_frac(reason, "duplicate paragraph fraction", f, c_.max_dup_para_frac);
      f = double(dup_para_chars) / double(total_chars);
      if (enabled(c_.max_dup_para_char_frac) && f > c_.max_dup_para_char_frac)
        return fail_frac(reason, "duplicate paragraph char fraction", f, c_.max_dup_para_char_frac);
    }
    if (lines > 0) {
      double f = double(dup_lines) / double(lines);
      if (enabled(c_.max_dup_line_frac) && f > c_.max_dup_line_frac)
        return fail_frac(reason, "duplicate line fraction", f, c_.max_dup_line_frac);
      f = double(dup_line_chars) / double(total_chars);
      if (enabled(c_.max_dup_line_char_frac) && f > c_.max_dup_line_char_frac)
        return fail_frac(reason, "duplicate line char fraction", f, c_.max_dup_line_char_frac);
    }
    return true;
  }

  // N-gram rules over units (whitespace-separated words, or non-whitespace characters).
  // Fractions are over the code points of all units (whitespace excluded).
  //   top n-gram: (occurrences of the most frequent n-gram x its characters) / total,
  //     only when that n-gram occurs more than once;
  //   duplicate n-gram: characters covered by any n-gram occurring more than once,
  //     each character counted once even where such n-grams overlap / total.
  bool check_ngrams(std::string_view s, std::string& reason) const {
    auto& sc = tl_rep;
    sc.unit_hash.clear();
    sc.unit_len.clear();
    if (c_.word_unit) {
      text::for_each_word(s, [&](std::string_view w) {
        sc.unit_hash.push_back(XXH3_64bits(w.data(), w.size()));
        sc.unit_len.push_back(uint32_t(text::count_codepoints(w)));
      });
    } else {
      const char* p = s.data();
      const char* end = p + s.size();
      while (p < end) {
        char32_t c = text::next_codepoint(p, end);
        if (text::is_space(c)) continue;
        sc.unit_hash.push_back(mix64(uint64_t(c) + 0x100000000ULL));
        sc.unit_len.push_back(1);
      }
    }
    size_t units = sc.unit_hash.size();
    sc.prefix.resize(units + 1);
    sc.prefix[0] = 0;
    for (size_t i = 0; i < units; ++i) sc.prefix[i + 1] = sc.prefix[i] + sc.unit_len[i];
    uint64_t total = sc.prefix[units];
    if (total == 0) return true;

    // gram[i] holds the hash of the n-gram starting at unit i, extended in place from n-1
    // to n. If an n-gram repeats, so does the (n-1)-gram it starts with: after each
    // length only the units whose n-gram occurred more than once stay candidates for
    // longer n-grams. So only the shortest length scans every unit, and in natural text
    // the candidates for the 5..10-gram rules are few.
    sc.gram.assign(sc.unit_hash.begin(), sc.unit_hash.end());
    sc.cand.resize(units);
    for (size_t i = 0; i < units; ++i) sc.cand[i] = uint32_t(i);
    size_t have_n = 1;
    size_t r = 0;
    while (r < c_.rules.size()) {
      size_t n = size_t(c_.rules[r].n);
      if (n > units) break;  // rules are sorted by n
      for (; have_n < n; ++have_n) {
        size_t k = 0;
        for (uint32_t i : sc.cand) {
          if (i + have_n >= units) break;  // no (have_n + 1)-gram starts here
          sc.gram[i] = extend_hash(sc.gram[i], sc.unit_hash[i + have_n]);
          sc.cand[k++] = i;
        }
        sc.cand.resize(k);
      }
      size_t grams = sc.cand.size();
      sc.table.reset(grams);
      sc.slot.resize(grams);
      uint32_t best_count = 0;
      uint64_t best_chars = 0;
      for (size_t j = 0; j < grams; ++j) {
        uint32_t i = sc.cand[j];
        size_t slot = sc.table.add(sc.gram[i]);
        sc.slot[j] = uint32_t(slot);
        uint32_t c = sc.table.count(slot);
        if (c >= best_count) {
          uint64_t chars = sc.prefix[i + n] - sc.prefix[i];
          if (c > best_count || chars > best_chars) {
            best_count = c;
            best_chars = chars;
          }
        }
      }
      // Every rule for this n.
      for (; r < c_.rules.size() && size_t(c_.rules[r].n) == n; ++r) {
        const NgramRule& rule = c_.rules[r];
        double frac;
        if (rule.top) {
          if (best_count < 2) continue;
          frac = double(best_count) * double(best_chars) / double(total);
        } else {
          uint64_t covered = 0;
          size_t covered_to = 0;  // units before this index are already counted
          for (size_t j = 0; j < grams; ++j) {
            if (sc.table.count(sc.slot[j]) < 2) continue;
            size_t i = sc.cand[j];
            size_t from = std::max(i, covered_to);
            covered += sc.prefix[i + n] - sc.prefix[from];
            covered_to = i + n;
          }
          frac = double(covered) / double(total);
        }
        if (frac > rule.max_frac) {
          auto [a, b] = format_pair(frac, rule.max_frac);
          reason = fmt::format("{} {}-gram char fraction {} > {}", rule.top ? "top" : "duplicate", rule.n, a, b);
          return false;
        }
      }
      // Keep the units whose n-gram repeats.
      size_t k = 0;
      for (size_t j = 0; j < grams; ++j)
        if (sc.table.count(sc.slot[j]) >= 2) sc.cand[k++] = sc.cand[j];
      sc.cand.resize(k);
      if (k == 0) break;  // nothing repeats: no longer n-gram can
    }
    return true;
  }

  Config c_;
};

std::unique_ptr<Filter> make_repetition(const std::string& name, Params& p) {
  RepetitionFilter::Config c;
  std::string unit = p.string("unit", "word");
  if (unit != "word" && unit != "char") fail("filter 'repetition': unit must be \"word\" or \"char\", got \"{}\"", unit);
  c.word_unit = unit == "word";
  c.max_dup_line_frac = p.number("max_dup_line_frac", 0.30);
  c.max_dup_para_frac = p.number("max_dup_para_frac", 0.30);
  c.max_dup_line_char_frac = p.number("max_dup_line_char_frac", 0.20);
  c.max_dup_para_char_frac = p.number("max_dup_para_char_frac", 0.20);
  // Gopher Table A1 defaults; any n in 1..32 may be set as top_<n>gram_max_frac /
  // dup_<n>gram_max_frac, and a negative value turns a rule off.
  constexpr int kMaxN = 32;
  for (int n = 1; n <= kMaxN; ++n) {
    double top_def = n == 2 ? 0.20 : n == 3 ? 0.18 : n == 4 ? 0.16 : -1;
    double dup_def = (n >= 5 && n <= 10) ? 0.15 - 0.01 * (n - 5) : -1;
    std::string top_key = fmt::format("top_{}gram_max_frac", n);
    std::string dup_key = fmt::format("dup_{}gram_max_frac", n);
    double top = p.has(top_key) ? p.number(top_key, top_def) : top_def;
    double dup = p.has(dup_key) ? p.number(dup_key, dup_def) : dup_def;
    if (top >= 0) c.rules.push_back({n, top, true});
    if (dup >= 0) c.rules.push_back({n, dup, false});
  }
  return std::make_unique<RepetitionFilter>(name, std::move(c));
}

// ---------------------------------------------------------------------------------------
// pii_mask

inline bool email_local_char(unsigned char c) {
  return text::is_ascii_alnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-';
}
inline bool email_domain_char(unsigned char c) { return text::is_ascii_alnum(c) || c == '.' || c == '-'; }
inline bool ascii_alpha(unsigned char c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }

// Given '@' at `at`, the e-mail address around it as [begin, end) or false. `floor` is
// where the previous match ended (a match never reaches back past it).
bool match_email(std::string_view s, size_t at, size_t floor, size_t& begin, size_t& end) {
  size_t l = at;
  while (l > floor && email_local_char(static_cast<unsigned char>(s[l - 1]))) --l;
  while (l < at && s[l] == '.') ++l;
  if (l == at) return false;
  size_t r = at + 1;
  while (r < s.size() && email_domain_char(static_cast<unsigned char>(s[r]))) ++r;
  while (r > at + 1 && (s[r - 1] == '.' || s[r - 1] == '-')) --r;
  std::string_view domain = s.substr(at + 1, r - at - 1);
  if (domain.empty()) return false;
  // Labels: non-empty, no leading '-'; at least two; the last (TLD) letters only, >= 2.
  size_t labels = 0, start = 0;
  for (size_t i = 0; i <= domain.size(); ++i) {
    if (i < domain.size() && domain[i] != '.') continue;
    std::string_view label = domain.substr(start, i - start);
    if (label.empty() || label.front() == '-') return false;
    ++labels;
    if (i == domain.size()) {
      if (label.size() < 2) return false;
      for (char c : label)
        if (!ascii_alpha(static_cast<unsigned char>(c))) return false;
    }
    start = i + 1;
  }
  if (labels < 2) return false;
  begin = l;
  end = r;
  return true;
}

// Phone numbers. Code points are classified so ASCII and full-width forms (０-９,
// －, ＋, （）, ideographic space) are treated alike.
enum class PhoneClass { Digit, Dash, Space, Dot, Open, Close, Plus, Letter, Other };
struct PhoneCp {
  PhoneClass cls;
  int digit;
  const char* next;
};

inline PhoneCp phone_cp(const char* p, const char* end) {
  auto b = static_cast<unsigned char>(*p);
  if (b < 0x80) {
    PhoneClass c = PhoneClass::Other;
    int d = -1;
    if (b >= '0' && b <= '9') c = PhoneClass::Digit, d = b - '0';
    else if (b == '-') c = PhoneClass::Dash;
    else if (b == ' ') c = PhoneClass::Space;
    else if (b == '.') c = PhoneClass::Dot;
    else if (b == '(') c = PhoneClass::Open;
    else if (b == ')') c = PhoneClass::Close;
    else if (b == '+') c = PhoneClass::Plus;
    else if (ascii_alpha(b)) c = PhoneClass::Letter;
    return {c, d, p + 1};
  }
  const char* q = p;
  char32_t c = text::next_codepoint(q, end);
  if (c >= 0xFF10 && c <= 0xFF19) return {PhoneClass::Digit, int(c - 0xFF10), q};
  if ((c >= 0x2010 && c <= 0x2015) || c == 0x2212 || c == 0xFF0D || c == 0x30FC || c == 0xFF70)
    return {PhoneClass::Dash, -1, q};
  if (c == 0x3000 || c == 0xA0) return {PhoneClass::Space, -1, q};
  if (c == 0xFF0E) return {PhoneClass::Dot, -1, q};
  if (c == 0xFF08) return {PhoneClass::Open, -1, q};
  if (c == 0xFF09) return {PhoneClass::Close, -1, q};
  if (c == 0xFF0B) return {PhoneClass::Plus, -1, q};
  if ((c >= 0xFF21 && c <= 0xFF3A) || (c >= 0xFF41 && c <= 0xFF5A)) return {PhoneClass::Letter, -1, q};
  return {PhoneClass::Other, -1, q};
}

struct DigitGroup {
  const char* end;
  int digits;
  int d0, d1;      // first two digits (-1 if absent)
  bool tight_sep;  // the separator after this group (if another group follows) is a dash or dot
};

constexpr int kMaxGroups = 12;

// Reads digit groups joined by short separators: ")"? ("-" | " " | ".")? "("?, at least
// one of them, and a digit right after. Returns the number of groups (0 if p is not a digit).
int read_groups(const char* p, const char* end, bool allow_dot, DigitGroup* g) {
  int n = 0;
  while (p < end) {
    int digits = 0, d0 = -1, d1 = -1;
    while (p < end) {
      PhoneCp cp = phone_cp(p, end);
      if (cp.cls != PhoneClass::Digit) break;
      if (digits == 0) d0 = cp.digit;
      else if (digits == 1) d1 = cp.digit;
      ++digits;
      p = cp.next;
    }
    if (digits == 0) break;
    g[n] = {p, digits, d0, d1, false};
    ++n;
    if (n == kMaxGroups) break;
    const char* q = p;
    int seps = 0;
    bool tight = false;
    PhoneCp cp = phone_cp(q, end);
    if (q < end && cp.cls == PhoneClass::Close) q = cp.next, ++seps;
    if (q < end) {
      cp = phone_cp(q, end);
      if (cp.cls == PhoneClass::Dash || cp.cls == PhoneClass::Space || (allow_dot && cp.cls == PhoneClass::Dot)) {
        tight = cp.cls != PhoneClass::Space;
        q = cp.next;
        ++seps;
      }
    }
    if (q < end) {
      cp = phone_cp(q, end);
      if (cp.cls == PhoneClass::Open) q = cp.next, ++seps;
    }
    if (seps == 0 || q >= end || phone_cp(q, end).cls != PhoneClass::Digit) break;
    g[n - 1].tight_sep = tight;
    p = q;
  }
  return n;
}

// True if the code point at p continues a number or word (so a phone number cannot end there).
bool glued_after(const char* p, const char* end) {
  if (p >= end) return false;
  PhoneCp cp = phone_cp(p, end);
  return cp.cls == PhoneClass::Digit || cp.cls == PhoneClass::Letter;
}

// Japanese domestic numbers: 0 + 9 or 10 more digits, either unbroken or as three groups
// (03-1234-5678, 090-1234-5678, 0120-123-456, (03)1234-5678, 03(1234)5678).
const char* match_domestic(const char* p, const char* end) {
  const char* start = p;
  PhoneCp first = phone_cp(p, end);
  if (first.cls == PhoneClass::Open) start = first.next;
  DigitGroup g[kMaxGroups];
  int n = read_groups(start, end, /*allow_dot=*/false, g);
  if (n == 0 || g[0].d0 != 0 || g[0].d1 <= 0) return nullptr;
  // "(03)1234-5678" is matched from the '('; in "(0120-123-456)" the parenthesis only
  // encloses the number, which is then matched from its first digit.
  if (first.cls == PhoneClass::Open && (g[0].end >= end || phone_cp(g[0].end, end).cls != PhoneClass::Close))
    return nullptr;
  if (n == 1 || (g[0].digits >= 10)) {
    // Unbroken: 10 digits (landline, 0120, 0570) or 11 (050/070/080/090 mobile/IP, 0800).
    int d = g[0].digits;
    if (d != 10 && d != 11) return nullptr;
    if (first.cls == PhoneClass::Open) return nullptr;
    if (n > 1 && g[0].tight_sep) return nullptr;
    if (glued_after(g[0].end, end)) return nullptr;
    return g[0].end;
  }
  if (n < 3) return nullptr;
  if (g[0].digits < 2 || g[0].digits > 5 || g[1].digits < 1 || g[1].digits > 4 || g[2].digits < 3 ||
      g[2].digits > 4)
    return nullptr;
  int total = g[0].digits + g[1].digits + g[2].digits;
  if (total != 10 && total != 11) return nullptr;
  if (n > 3 && g[2].tight_sep) return nullptr;  // 03-1234-5678-90: part of something longer
  if (glued_after(g[2].end, end)) return nullptr;
  return g[2].end;
}

// International numbers: '+' country code (1-3 digits) and further groups, 8 to 15 digits
// in all (E.164), e.g. +81 3-1234-5678, +81-90-1234-5678, +44 (0)20 7946 0958, +1 555 123 4567.
const char* match_international(const char* p, const char* end) {
  const char* start = phone_cp(p, end).next;  // past '+'
  DigitGroup g[kMaxGroups];
  int n = read_groups(start, end, /*allow_dot=*/true, g);
  if (n == 0 || g[0].d0 == 0) return nullptr;
  if (n == 1) {
    if (g[0].digits < 8 || g[0].digits > 15 || glued_after(g[0].end, end)) return nullptr;
    return g[0].end;
  }
  if (g[0].digits > 3) return nullptr;
  int totals[kMaxGroups];
  int sum = 0;
  for (int i = 0; i < n; ++i) totals[i] = sum += g[i].digits;
  for (int k = n; k >= 2; --k) {
    int total = totals[k - 1];
    if (total < 8 || total > 15) continue;
    if (k < n && g[k - 1].tight_sep) return nullptr;  // the number goes on past 15 digits
    if (glued_after(g[k - 1].end, end)) return nullptr;
    return g[k - 1].end;
  }
  return nullptr;
}

// Whether a number may start right after the code point before p: not inside a longer
// number ("12-03-1234-5678", "1,0312345678", "C++0312345678"). Letters and '.' are
// allowed, for "TEL03-1234-5678" and "TEL.03-1234-5678".
bool phone_boundary_before(const char* begin, const char* p) {
  if (p == begin) return true;
  const char* q = p;
  char32_t c = text::prev_codepoint(begin, q);
  PhoneClass cls = phone_cp(q, p).cls;
  if (cls == PhoneClass::Digit || cls == PhoneClass::Dash || cls == PhoneClass::Plus) return false;
  if (cls == PhoneClass::Dot && q > begin) {  // "2.0312345678" is a decimal, not "TEL.03..."
    const char* r = q;
    text::prev_codepoint(begin, r);
    if (phone_cp(r, q).cls == PhoneClass::Digit) return false;
  }
  return !(c == '/' || c == '_' || c == ',' || c == 0xFF0C);
}

thread_local std::string tl_pii_out;

class PiiMaskFilter : public Filter {
 public:
  PiiMaskFilter(std::string name, bool email, bool phone, std::string email_token, std::string phone_token)
      : Filter(std::move(name)),
        email_(email),
        phone_(phone),
        email_token_(std::move(email_token)),
        phone_token_(std::move(phone_token)) {}

  bool apply(Document& doc, std::string& reason) const override {
    if (email_) mask_emails(doc.text);
    if (phone_) mask_phones(doc.text);
    return true;
  }

 private:
  void mask_emails(std::string& text) const {
    std::string_view s = text;
    size_t at = s.find('@');
    if (at == std::string_view::npos) return;
    auto& out = tl_pii_out;
    out.clear();
    size_t copied = 0;
    bool any = false;
    for (; at != std::string_view::npos; at = s.find('@', at + 1)) {
      size_t b, e;
      if (!match_email(s, at, copied, b, e)) continue;
      out.append(s.substr(copied, b - copied));
      out += email_token_;
      copied = e;
      any = true;
      if (e > at) at = e - 1;
    }
    if (!any) return;
    out.append(s.substr(copied));
    text.swap(out);
  }

  void mask_phones(std::string& text) const {
    const char* begin = text.data();
    const char* end = begin + text.size();
    auto& out = tl_pii_out;
    out.clear();
    const char* copied = begin;
    bool any = false;
    const char* p = begin;
    while (p < end) {
      auto b = static_cast<unsigned char>(*p);
      size_t step = text::sequence_length(b);
      bool candidate = b == '0' || b == '(' || b == '+' ||
                       (b == 0xEF && end - p >= 3 && static_cast<unsigned char>(p[1]) == 0xBC &&
                        (static_cast<unsigned char>(p[2]) == 0x90 || static_cast<unsigned char>(p[2]) == 0x88 ||
                         static_cast<unsigned char>(p[2]) == 0x8B));
      if (!candidate || !phone_boundary_before(begin, p)) {
        p += step;
        continue;
      }
      PhoneCp cp = phone_cp(p, end);
      const char* m = cp.cls == PhoneClass::Plus ? match_international(p, end) : match_domestic(p, end);
      if (!m) {
        p += step;
        continue;
      }
      out.append(copied, size_t(p - copied));
      out += phone_token_;
      copied = m;
      p = m;
      any = true;
    }
    if (!any) return;
    out.append(copied, size_t(end - copied));
    text.swap(out);
  }

  bool email_, phone_;
  std::string email_token_, phone_token_;
};

std::unique_ptr<Filter> make_pii_mask(const std::string& name, Params& p) {
  bool email = p.boolean("mask_email", true);
  bool phone = p.boolean("mask_phone", true);
  std::string et = p.string("email_token", "<EMAIL>");
  std::string pt = p.string("phone_token", "<PHONE>");
  return std::make_unique<PiiMaskFilter>(name, email, phone, std::move(et), std::move(pt));
}

// ---------------------------------------------------------------------------------------
// nfkc

class NfkcFilter : public Filter {
 public:
  using Filter::Filter;
  bool apply(Document& doc, std::string& reason) const override {
    // ASCII is already NFKC: skip utf8proc (and its allocation) for it.
    bool ascii = true;
    for (unsigned char c : doc.text)
      if (c >= 0x80) {
        ascii = false;
        break;
      }
    if (!ascii) doc.text = text::nfkc(doc.text);
    return true;
  }
};

// ---------------------------------------------------------------------------------------
// language

class LanguageFilter : public Filter {
 public:
  LanguageFilter(std::string name, std::vector<std::string> langs, double min_score, bool require_reliable)
      : Filter(std::move(name)), langs_(std::move(langs)), min_score_(min_score), require_reliable_(require_reliable) {}

  bool apply(Document& doc, std::string& reason) const override {
    text::LanguageGuess g = text::detect_language(doc.text);
    const char* unreliable = g.reliable ? "" : " (unreliable)";
    if (!accepted(g.code)) {
      reason = fmt::format("language {} (score {:.2f}){} not in [{}]", g.code, g.score, unreliable, list());
      return false;
    }
    if (g.score < min_score_) {
      auto [a, b] = format_pair(g.score, min_score_);
      reason = fmt::format("language {} score {} < {}{}", g.code, a, b, unreliable);
      return false;
    }
    if (require_reliable_ && !g.reliable) {
      reason = fmt::format("language {} (score {:.2f}) unreliable", g.code, g.score);
      return false;
    }
    return true;
  }

 private:
  // "zh" accepts CLD2's "zh" and "zh-Hant".
  bool accepted(std::string_view code) const {
    for (const auto& l : langs_) {
      if (code == l) return true;
      if (code.size() > l.size() && code.substr(0, l.size()) == l && code[l.size()] == '-') return true;
    }
    return false;
  }
  std::string list() const {
    std::string s;
    for (const auto& l : langs_) {
      if (!s.empty()) s += ", ";
      s += l;
    }
    return s;
  }

  std::vector<std::string> langs_;
  double min_score_;
  bool require_reliable_;
};

std::unique_ptr<Filter> make_language(const std::string& name, Params& p) {
  if (!p.has("languages")) fail("filter 'language': parameter 'languages' is required (e.g. [\"ja\"])");
  auto langs = p.strings("languages", {});
  if (langs.empty()) fail("filter 'language': 'languages' must not be empty");
  double min_score = p.number("min_score", 0.5);
  bool require_reliable = p.boolean("require_reliable", false);
  return std::make_unique<LanguageFilter>(name, std::move(langs), min_score, require_reliable);
}

}  // namespace

void add_general_filters(std::vector<FilterSpec>& specs) {
  specs.push_back({"length", "keep documents with min_chars..max_chars code points", make_length});
  specs.push_back({"compression_ratio",
                   "keep documents whose zlib compressed/original byte ratio is in [min, max] (default 0.30..0.70)",
                   make_compression_ratio});
  specs.push_back({"repetition",
                   "Gopher repetition rules: duplicate lines/paragraphs, top n-gram and duplicate n-gram char "
                   "fractions (unit word or char)",
                   make_repetition});
  specs.push_back({"pii_mask", "replace e-mail addresses and phone numbers with <EMAIL> / <PHONE>", make_pii_mask});
  specs.push_back({"nfkc", "normalize text to Unicode NFKC",
                   [](const std::string& name, Params&) -> std::unique_ptr<Filter> {
                     return std::make_unique<NfkcFilter>(name);
                   }});
  specs.push_back({"language", "keep documents whose CLD2 top language is in `languages` with score >= min_score",
                   make_language});
}

}  // namespace tsumugi::corpus
