// Unigram training as SentencePiece does it (Kudo 2018): seed pieces are all characters plus
// the frequent substrings of the corpus (internal nodes of its suffix tree, found with a suffix
// array and LCP intervals) ranked by frequency x length; then rounds of EM (forward-backward
// expected counts, M step with the digamma-based sparse prior) each followed by pruning the
// pieces whose removal costs the least likelihood (shrinking factor), until 1.1 x vocab_size
// remain; the final vocabulary keeps every required character.
#include <divsufsort.h>

#include <algorithm>
#include <bit>
#include <cfloat>
#include <cmath>
#include <future>
#include <numeric>
#include <unordered_map>

#include "tokenizer/train_common.h"
#include "util/error.h"
#include "util/interrupt.h"
#include "util/log.h"
#include "util/thread_pool.h"

namespace tsumugi::tokenizer::train {

namespace {

constexpr size_t kChunks = 16;  // work split, fixed so results do not depend on the thread count
constexpr double kUnkPenalty = 10.0;

double digamma(double x) {
  double result = 0.0;
  for (; x < 7; ++x) result -= 1 / x;
  x -= 1.0 / 2.0;
  const double xx = 1.0 / x;
  const double xx2 = xx * xx;
  const double xx4 = xx2 * xx2;
  result += std::log(x) + (1.0 / 24.0) * xx2 - (7.0 / 960.0) * xx4 + (31.0 / 8064.0) * xx4 * xx2 -
            (127.0 / 30720.0) * xx4 * xx4;
  return result;
}

inline double log_sum_exp(double x, double y) {
  if (x == -INFINITY) return y;
  if (y == -INFINITY) return x;
  const double m = std::max(x, y);
  return m + std::log1p(std::exp(-std::fabs(x - y)));
}

// The current pieces, looked up by a character trie whose edges live in one open-addressing
// hash table (node, character) -> child: building the lattices of the E step and pruning is
// most of training, and a flat table costs one probe per step where a node-based map costs a few
// dependent cache misses.
class Model {
 public:
  void set(std::vector<Piece> pieces) {
    pieces_ = std::move(pieces);
    scores_.resize(pieces_.size());
    slots_.clear();
    resize(size_t(1) << 16);
    nodes_ = 1;  // the root
    min_score_ = FLT_MAX;
    std::vector<char32_t> firsts;
    for (size_t i = 0; i < pieces_.size(); ++i) {
      min_score_ = std::min(min_score_, pieces_[i].second);
      scores_[i] = pieces_[i].second;
      const std::u32string chars = to_u32(pieces_[i].first);
      if (chars.empty()) continue;  // never a piece; nothing to look up
      // Room for the whole piece first, so no slot moves while it is inserted.
      while ((nodes_ + chars.size()) * 2 > slots_.size()) resize(slots_.size() * 2);
      uint32_t node = 0;
      size_t h = 0;
      for (char32_t c : chars) {
        const uint64_t k = key(node, c);
        h = home(k);
        while (slots_[h].key != k && slots_[h].key != kEmpty) h = (h + 1) & mask_;
        if (slots_[h].key == kEmpty) {
          slots_[h] = Slot{k, uint32_t(nodes_++), -1};
          if (node == 0) firsts.push_back(c);
        }
        node = slots_[h].child;
      }
      slots_[h].value = int32_t(i);
    }
    // The first step of every walk goes through a direct table instead of the hash.
    first_.assign(0x10000, 0);
    for (char32_t c : firsts)
      if (c < 0x10000) first_[c] = uint32_t(find(key(0, c)) + 1);
  }
  const std::vector<Piece>& pieces() const { return pieces_; }
  size_t size() const { return pieces_.size(); }
  float min_score() const { return min_score_; }

  struct Node {
    int32_t begin, end, id;
    double score;
  };
  // All pieces starting at each position of `w`, plus an unknown node where no single
  // character piece matches. Nodes are ordered by begin, then length.
  void lattice(const std::u32string& w, std::vector<Node>& nodes) const {
    nodes.clear();
    const int32_t n = int32_t(w.size());
    for (int32_t b = 0; b < n; ++b) {
      bool single = false;
      size_t h = w[b] < 0x10000 ? size_t(first_[w[b]]) - 1 : find(key(0, w[b]));
      for (int32_t e = b; e < n && h != kNone;) {
        const Slot& s = slots_[h];
        if (s.value >= 0) {
          nodes.push_back({b, e + 1, s.value, scores_[size_t(s.value)]});
          if (e == b) single = true;
        }
        if (++e < n) h = find(key(s.child, w[e]));
      }
      if (!single) nodes.push_back({b, b + 1, -1, double(min_score_) - kUnkPenalty});
    }
  }

 private:
  // An edge of the trie: key = (parent node, character), the child node, and the piece that
  // ends at the child (-1 if none).
  struct Slot {
    uint64_t key;
    uint32_t child;
    int32_t value;
  };
  static constexpr uint64_t kEmpty = ~uint64_t(0);
  static constexpr size_t kNone = ~size_t(0);
  static uint64_t key(uint32_t node, char32_t c) { return (uint64_t(node) << 21) | uint64_t(c); }
  size_t home(uint64_t k) const { return size_t((k * 0x9E3779B97F4A7C15ull) >> shift_) & mask_; }
  size_t find(uint64_t k) const {
    for (size_t h = home(k);; h = (h + 1) & mask_) {
      if (slots_[h].key == k) return h;
      if (slots_[h].key == kEmpty) return kNone;
    }
  }
  void resize(size_t cap) {
    std::vector<Slot> old = std::move(slots_);
    slots_.assign(cap, Slot{kEmpty, 0, -1});
    mask_ = cap - 1;
    shift_ = 64 - std::countr_zero(cap);
    for (const Slot& s : old) {
      if (s.key == kEmpty) continue;
      size_t h = home(s.key);
      while (slots_[h].key != kEmpty) h = (h + 1) & mask_;
      slots_[h] = s;
    }
  }
  std::vector<Piece> pieces_;
  std::vector<float> scores_;
  std::vector<Slot> slots_;
  std::vector<uint32_t> first_;  // BMP character -> its root edge's slot + 1 (0: none)
  size_t nodes_ = 1;
  size_t mask_ = 0;
  int shift_ = 60;
  float min_score_ = FLT_MAX;
};

// Best segmentation (node indices into `nodes`) over [0, n); `skip` is a node left out.
void viterbi(const std::vector<Model::Node>& nodes, int32_t n, std::vector<int32_t>& path, int32_t skip = -1) {
  std::vector<double> best(n + 1, -INFINITY);
  std::vector<int32_t> back(n + 1, -1);
  best[0] = 0;
  // nodes are sorted by begin, so every predecessor is final when a node is relaxed
  for (int32_t k = 0; k < int32_t(nodes.size()); ++k) {
    if (k == skip) continue;
    const auto& nd = nodes[k];
    if (best[nd.begin] == -INFINITY) continue;
    const double s = best[nd.begin] + nd.score;
    if (s > best[nd.end]) {
      best[nd.end] = s;
      back[nd.end] = k;
    }
  }
  path.clear();
  for (int32_t pos = n; pos > 0;) {
    const int32_t k = back[pos];
    if (k < 0) {
      path.clear();
      return;
    }
    path.push_back(k);
    pos = nodes[k].begin;
  }
  std::reverse(path.begin(), path.end());
}

// Runs fn(chunk, sentence_index) over all sentences, kChunks interleaved chunks in parallel.
template <typename Fn>
void for_chunks(ThreadPool& pool, size_t n, Fn&& fn) {
  std::vector<std::future<void>> futs;
  for (size_t c = 0; c < kChunks; ++c)
    futs.push_back(pool.submit([&, c] {
      for (size_t i = c; i < n; i += kChunks) fn(c, i);
    }));
  for (auto& f : futs) f.get();
}

std::vector<Piece> make_seed_pieces(const TrainOptions& o, const std::vector<Sentence>& sentences) {
  const PieceValidator validator(o);
  std::vector<char32_t> text;
  std::unordered_map<char32_t, int64_t> all_chars;
  for (const auto& s : sentences) {
    for (char32_t c : to_u32(s.first)) {
      text.push_back(c);
      if (c != kUnkChar && c != 0 && c != kBoundaryChar) all_chars[c] += s.second;
    }
    text.push_back(0);
  }
  const size_t n = text.size();
  if (n >= size_t(INT32_MAX) / 4) fail("training corpus too large for the suffix array ({} characters)", n);

  // Characters by rank (0 = sentence boundary) as fixed-width big-endian byte strings: the byte
  // suffix order of aligned positions is the character suffix order.
  std::vector<char32_t> alphabet(text.begin(), text.end());
  std::sort(alphabet.begin(), alphabet.end());
  alphabet.erase(std::unique(alphabet.begin(), alphabet.end()), alphabet.end());
  const int width = alphabet.size() <= 0x10000 ? 2 : 3;
  std::vector<uint8_t> bytes(n * width);
  std::vector<uint32_t> rank(n);
  for (size_t i = 0; i < n; ++i) {
    const uint32_t r = uint32_t(std::lower_bound(alphabet.begin(), alphabet.end(), text[i]) - alphabet.begin());
    rank[i] = r;
    for (int b = 0; b < width; ++b) bytes[i * width + b] = uint8_t(r >> (8 * (width - 1 - b)));
  }
  std::vector<int32_t> sa;
  {
    std::vector<saidx_t> bsa(bytes.size());
    if (divsufsort(bytes.data(), bsa.data(), saidx_t(bytes.size())) != 0) fail("suffix array construction failed");
    sa.reserve(n);
    for (saidx_t p : bsa)
      if (p % width == 0) sa.push_back(int32_t(p / width));
  }
  bytes.clear();
  bytes.shrink_to_fit();
  // LCP (Kasai): lcp[i] = common prefix of suffixes sa[i-1] and sa[i].
  std::vector<int32_t> lcp(n, 0);
  {
    std::vector<int32_t> inv(n);
    for (size_t i = 0; i < n; ++i) inv[sa[i]] = int32_t(i);
    int32_t h = 0;
    for (size_t i = 0; i < n; ++i) {
      if (inv[i] > 0) {
        const size_t j = size_t(sa[inv[i] - 1]);
        while (i + h < n && j + h < n && rank[i + h] == rank[j + h]) ++h;
        lcp[inv[i]] = h;
        if (h > 0) --h;
      } else {
        h = 0;
      }
    }
    lcp[0] = -1;
  }
  // Internal nodes of the suffix tree as LCP intervals [l, r) of depth d, in the order a
  // bottom-up traversal finds them.
  struct Cand {
    int32_t node_left, node_depth;  // interval start, depth
    int64_t score;
    int32_t order;
  };
  std::vector<Cand> cands;
  std::vector<std::pair<int32_t, int64_t>> stack = {{-1, -1}};
  int32_t order = 0;
  const size_t max_len = size_t(o.max_sentencepiece_length);
  std::u32string piece;
  for (size_t i = 0;; ++i) {
    std::pair<int32_t, int64_t> cur(int32_t(i), i == n ? -1 : lcp[i]);
    auto cand = stack.back();
    while (cand.second > cur.second) {
      if (int64_t(i) - cand.first > 1) {
        const int32_t left = cand.first;
        const int64_t len = cand.second;
        const int32_t id = order++;
        const size_t offset = size_t(sa[left]);
        if (len > 1 && size_t(len) <= max_len && offset + size_t(len) < n) {
          piece.assign(text.begin() + offset, text.begin() + offset + len);
          if (piece.find(char32_t(0)) == std::u32string::npos && validator.valid(piece)) {
            const int64_t freq = int64_t(i) - left;
            cands.push_back({left, int32_t(len), freq * len, id});
          }
        }
      }
      cur.first = cand.first;
      stack.pop_back();
      cand = stack.back();
    }
    if (cand.second < cur.second) stack.push_back(cur);
    if (i == n) break;
    stack.emplace_back(int32_t(i), int64_t(n - size_t(sa[i]) + 1));
  }
  const size_t keep = size_t(std::max(0, o.seed_sentencepiece_size));
  auto better = [](const Cand& a, const Cand& b) { return a.score > b.score || (a.score == b.score && a.order < b.order); };
  if (cands.size() > keep) {
    std::nth_element(cands.begin(), cands.begin() + keep, cands.end(), better);
    cands.resize(keep);
  }
  std::sort(cands.begin(), cands.end(), better);

  std::vector<std::pair<char32_t, int64_t>> chars(all_chars.begin(), all_chars.end());
  sort_by_value(chars);
  std::vector<std::pair<std::string, double>> seeds;
  for (const auto& [c, f] : chars) {
    std::string s;
    append_utf8(s, c);
    seeds.emplace_back(std::move(s), double(f));
  }
  for (const auto& c : cands) {
    const size_t offset = size_t(sa[c.node_left]);
    seeds.emplace_back(to_utf8(std::u32string_view(text.data() + offset, size_t(c.node_depth))), double(c.score));
  }
  double sum = 0;
  for (const auto& s : seeds) sum += s.second;
  const double logsum = std::log(sum);
  std::vector<Piece> out;
  out.reserve(seeds.size());
  for (auto& s : seeds) out.emplace_back(std::move(s.first), float(std::log(s.second) - logsum));
  log::info("trainer: {} seed pieces ({} characters, {} substrings)", out.size(), chars.size(), cands.size());
  return out;
}

struct Words {
  std::vector<std::u32string> text;
  std::vector<int64_t> freq;
};

// E step: expected counts of every piece.
std::vector<double> e_step(ThreadPool& pool, const Model& model, const Words& w, double* objective) {
  std::vector<std::vector<double>> expected(kChunks);
  std::vector<double> objs(kChunks, 0.0);
  int64_t all_freq = 0;
  for (int64_t f : w.freq) all_freq += f;
  for_chunks(pool, w.text.size(), [&](size_t c, size_t i) {
    thread_local std::vector<Model::Node> nodes;
    thread_local std::vector<double> alpha, beta;
    auto& exp_c = expected[c];
    if (exp_c.empty()) exp_c.assign(model.size(), 0.0);
    const auto& s = w.text[i];
    const int32_t n = int32_t(s.size());
    model.lattice(s, nodes);
    alpha.assign(n + 1, -INFINITY);
    beta.assign(n + 1, -INFINITY);
    alpha[0] = 0;
    for (const auto& nd : nodes) alpha[nd.end] = log_sum_exp(alpha[nd.end], alpha[nd.begin] + nd.score);
    beta[n] = 0;
    for (auto it = nodes.rbegin(); it != nodes.rend(); ++it)
      beta[it->begin] = log_sum_exp(beta[it->begin], it->score + beta[it->end]);
    const double z = alpha[n];
    const double freq = double(w.freq[i]);
    for (const auto& nd : nodes)
      if (nd.id >= 0) exp_c[nd.id] += freq * std::exp(alpha[nd.begin] + nd.score + beta[nd.end] - z);
    objs[c] -= freq * z / double(all_freq);
  });
  std::vector<double> total(model.size(), 0.0);
  double obj = 0;
  for (size_t c = 0; c < kChunks; ++c) {
    obj += objs[c];
    if (expected[c].empty()) continue;
    for (size_t k = 0; k < total.size(); ++k) total[k] += expected[c][k];
  }
  *objective = obj;
  return total;
}

std::vector<Piece> m_step(const Model& model, const std::vector<double>& expected) {
  std::vector<std::pair<std::string, double>> kept;
  double sum = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    if (expected[i] < 0.5) continue;
    kept.emplace_back(model.pieces()[i].first, expected[i]);
    sum += expected[i];
  }
  const double logsum = digamma(sum);
  std::vector<Piece> out;
  out.reserve(kept.size());
  for (auto& [p, f] : kept) out.emplace_back(std::move(p), float(digamma(f) - logsum));
  return out;
}

std::vector<Piece> prune(ThreadPool& pool, const TrainOptions& o, const Model& model, const Words& w, size_t desired) {
  const auto& pieces = model.pieces();
  const size_t np = pieces.size();
  std::vector<char> always_keep(np, 1);
  std::vector<std::vector<int32_t>> alternatives(np);
  {
    std::vector<std::future<void>> futs;
    for (size_t c = 0; c < kChunks; ++c)
      futs.push_back(pool.submit([&, c] {
        std::vector<Model::Node> nodes;
        std::vector<int32_t> path, alt;
        for (size_t i = c; i < np; i += kChunks) {
          const std::u32string s = to_u32(pieces[i].first);
          model.lattice(s, nodes);
          viterbi(nodes, int32_t(s.size()), path);
          if (path.size() >= 2) {
            always_keep[i] = 0;
            continue;
          }
          if (path.size() != 1) continue;
          viterbi(nodes, int32_t(s.size()), alt, path[0]);  // second best: without the whole piece
          for (int32_t k : alt)
            if (nodes[k].id >= 0) alternatives[i].push_back(nodes[k].id);
        }
      }));
    for (auto& f : futs) f.get();
  }

  std::vector<std::vector<double>> freqs(kChunks);
  std::vector<double> vsums(kChunks, 0.0);
  for_chunks(pool, w.text.size(), [&](size_t c, size_t i) {
    thread_local std::vector<Model::Node> nodes;
    thread_local std::vector<int32_t> path;
    auto& fc = freqs[c];
    if (fc.empty()) fc.assign(np, 0.0);
    model.lattice(w.text[i], nodes);
    viterbi(nodes, int32_t(w.text[i].size()), path);
    vsums[c] += double(w.freq[i]);
    for (int32_t k : path)
      if (nodes[k].id >= 0) fc[nodes[k].id] += double(w.freq[i]);
  });
  std::vector<double> freq(np, 0.0);
  double vsum = 0;
  for (size_t c = 0; c < kChunks; ++c) {
    vsum += vsums[c];
    if (freqs[c].empty()) continue;
    for (size_t k = 0; k < np; ++k) freq[k] += freqs[c][k];
  }
  const double sum = std::accumulate(freq.begin(), freq.end(), 0.0);
  const double logsum = std::log(sum);
  std::vector<std::pair<int32_t, double>> candidates;
  std::vector<Piece> out;
  for (size_t i = 0; i < np; ++i) {
    if (freq[i] == 0 || !always_keep[i]) continue;
    if (alternatives[i].empty()) {
      out.push_back(pieces[i]);
      continue;
    }
    // The piece's share of all Viterbi tokens times the log-likelihood lost when its
    // occurrences are re-segmented into the alternatives.
    const double f = freq[i] / vsum;
    const double logprob_sp = std::log(freq[i]) - logsum;
    // SentencePiece <= 0.1.99 (what spm_train users have) adds freq[i] * (number of pieces - 1)
    // here (`alternatives.size()` rather than `alternatives[i].size()`); we keep that rule so
    // the vocabularies (and compression) match spm_train's.
    const double logsum_alt = std::log(sum + freq[i] * double(np - 1));
    double logprob_alt = 0;
    for (int32_t a : alternatives[i]) logprob_alt += std::log(freq[a] + freq[i]) - logsum_alt;
    candidates.emplace_back(int32_t(i), f * (logprob_sp - logprob_alt));
  }
  const size_t pruned_size = std::max(desired, size_t(double(o.shrinking_factor) * double(np)));
  sort_by_value(candidates);
  for (const auto& [i, loss] : candidates) {
    if (out.size() >= pruned_size) break;
    out.push_back(pieces[i]);
  }
  return out;
}

}  // namespace

std::vector<Piece> train_unigram(const TrainOptions& o, Corpus& corpus) {
  Model model;
  model.set(make_seed_pieces(o, corpus.sentences));
  // MeCab boundaries (NUL, see presplit_with_mecab) only constrain the seed pieces: EM and
  // pruning see the sentences as they are, as SentencePiece does with pretokenization_delimiter.
  if (o.mecab)
    for (auto& s : corpus.sentences) std::erase(s.first, '\0');
  if (o.split_by_whitespace) split_by_whitespace(corpus.sentences);
  Words words;
  words.text.reserve(corpus.sentences.size());
  for (const auto& s : corpus.sentences) {
    words.text.push_back(to_u32(s.first));
    words.freq.push_back(s.second);
  }
  log::info("trainer: EM over {} {}", words.text.size(), o.split_by_whitespace ? "words" : "sentences");
  ThreadPool pool(thread_count(o));
  const size_t desired = size_t(double(o.vocab_size) * 1.1);
  while (true) {
    throw_if_interrupted();  // Ctrl-C stops training between rounds
    for (int iter = 0; iter < o.num_sub_iterations; ++iter) {
      double objective = 0;
      const auto expected = e_step(pool, model, words, &objective);
      model.set(m_step(model, expected));
      log::debug("EM sub_iter={} size={} obj={}", iter, model.size(), objective);
    }
    if (model.size() <= desired) break;
    model.set(prune(pool, o, model, words, desired));
    log::info("trainer: pruned to {} pieces", model.size());
  }

  // Final vocabulary: every required character, then the best remaining pieces.
  std::unordered_map<std::string, float> scores(model.pieces().begin(), model.pieces().end());
  std::unordered_map<std::string, float> final_map;
  std::vector<Piece> final_pieces;
  float penalty = 0;
  for (const auto& [c, count] : corpus.required_chars) {
    std::string s;
    append_utf8(s, c);
    float score;
    if (auto it = scores.find(s); it != scores.end()) {
      score = it->second;
    } else {
      score = model.min_score() + penalty;
      penalty += 0.0001f;
    }
    if (final_map.emplace(s, score).second) final_pieces.emplace_back(s, score);
  }
  const size_t room = size_t(o.vocab_size) - corpus.meta_pieces.size();
  std::vector<Piece> sorted = model.pieces();
  sort_by_value(sorted);
  for (const auto& p : sorted) {
    if (final_map.count(p.first)) continue;
    if (final_pieces.size() >= room) break;
    final_map.emplace(p.first, p.second);
    final_pieces.push_back(p);
  }
  sort_by_value(final_pieces);
  return final_pieces;
}

}  // namespace tsumugi::tokenizer::train

namespace tsumugi::tokenizer {

std::vector<std::pair<std::string, float>> reestimate_unigram_scores(
    const std::vector<std::pair<std::string, int64_t>>& sentences,
    const std::vector<std::pair<std::string, float>>& pieces, int iterations, int num_threads) {
  using namespace train;
  Model model;
  model.set(pieces);
  Words words;
  words.text.reserve(sentences.size());
  for (const auto& s : sentences) {
    words.text.push_back(to_u32(s.first));
    words.freq.push_back(s.second);
  }
  ThreadPool pool(unsigned(std::clamp(num_threads, 1, 256)));
  for (int iter = 0; iter < iterations; ++iter) {
    double objective = 0;
    const auto expected = e_step(pool, model, words, &objective);
    double sum = 0;
    for (double e : expected) sum += std::max(e, 0.5);
    const double logsum = digamma(sum);
    std::vector<Piece> next;
    next.reserve(expected.size());
    for (size_t i = 0; i < expected.size(); ++i)
      next.emplace_back(model.pieces()[i].first, float(digamma(std::max(expected[i], 0.5)) - logsum));
    model.set(std::move(next));
    log::info("re-estimation: EM iter={} pieces={} obj={}", iter, model.size(), objective);
  }
  return model.pieces();
}

}  // namespace tsumugi::tokenizer
