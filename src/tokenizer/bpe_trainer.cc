// BPE training with SentencePiece's semantics: words (split before U+2581) start as characters;
// the most frequent adjacent pair that forms a valid piece is merged, ties going to the shorter
// piece, then the smaller string; a string already learned through another pair is not merged
// again. Pieces get score -order; the required characters follow the merges.
//
// Counts are kept exact (spm recomputes a 5% "active" subset every 100 merges, an
// approximation of the same rule): pair frequencies are updated locally at each merge and a
// lazy max-heap yields the best pair.
#include <algorithm>
#include <queue>
#include <unordered_map>
#include <unordered_set>

#include "tokenizer/train_common.h"
#include "util/error.h"
#include "util/interrupt.h"
#include "util/log.h"

namespace tsumugi::tokenizer::train {

namespace {

struct HeapEntry {
  int64_t freq;
  int32_t chars;
  std::string text;
  uint64_t pair;
};

struct Worse {
  bool operator()(const HeapEntry& a, const HeapEntry& b) const {
    if (a.freq != b.freq) return a.freq < b.freq;
    if (a.chars != b.chars) return a.chars > b.chars;
    return a.text > b.text;
  }
};

}  // namespace

std::vector<Piece> train_bpe(const TrainOptions& o, Corpus& corpus) {
  if (o.split_by_whitespace) split_by_whitespace(corpus.sentences);
  const PieceValidator validator(o);

  std::vector<std::u32string> sym_text;
  std::vector<std::string> sym_utf8;
  std::unordered_map<char32_t, int32_t> char_sym;
  auto char_symbol = [&](char32_t c) {
    auto [it, inserted] = char_sym.try_emplace(c, int32_t(sym_text.size()));
    if (inserted) {
      sym_text.emplace_back(1, c);
      sym_utf8.push_back(to_utf8(sym_text.back()));
    }
    return it->second;
  };

  // All words in flat arrays linked by next/prev (-1 at word edges; a merged-away slot has sym -1).
  std::vector<int32_t> sym, nxt, prv;
  std::vector<int64_t> freq_at;  // frequency of the word a slot belongs to
  for (const auto& s : corpus.sentences) {
    const std::u32string u = to_u32(s.first);
    const int32_t base = int32_t(sym.size());
    for (size_t i = 0; i < u.size(); ++i) {
      sym.push_back(char_symbol(u[i]));
      nxt.push_back(i + 1 < u.size() ? base + int32_t(i) + 1 : -1);
      prv.push_back(i > 0 ? base + int32_t(i) - 1 : -1);
      freq_at.push_back(s.second);
    }
  }

  auto key = [](int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); };
  std::unordered_map<uint64_t, int64_t> pair_freq;
  std::unordered_map<uint64_t, std::vector<int32_t>> occ;
  std::unordered_map<uint64_t, bool> valid_cache;
  std::unordered_set<uint64_t> dead;
  std::priority_queue<HeapEntry, std::vector<HeapEntry>, Worse> heap;

  auto pair_text = [&](uint64_t k) {
    return sym_utf8[uint32_t(k >> 32)] + sym_utf8[uint32_t(k)];
  };
  auto pair_chars = [&](uint64_t k) { return int32_t(sym_text[uint32_t(k >> 32)].size() + sym_text[uint32_t(k)].size()); };
  auto is_valid = [&](uint64_t k) {
    auto [it, inserted] = valid_cache.try_emplace(k, false);
    if (inserted) it->second = validator.valid(sym_text[uint32_t(k >> 32)] + sym_text[uint32_t(k)]);
    return it->second;
  };
  std::unordered_set<uint64_t> touched;
  auto add = [&](int32_t left_pos, int64_t f) {
    const int32_t r = nxt[left_pos];
    if (r < 0) return;
    const uint64_t k = key(sym[left_pos], sym[r]);
    if (dead.count(k) || !is_valid(k)) return;
    pair_freq[k] += f;
    occ[k].push_back(left_pos);
    touched.insert(k);
  };
  auto sub = [&](int32_t left_pos, int64_t f) {
    const int32_t r = nxt[left_pos];
    if (r < 0) return;
    const uint64_t k = key(sym[left_pos], sym[r]);
    auto it = pair_freq.find(k);
    if (it != pair_freq.end()) it->second -= f;
  };
  auto push_touched = [&] {
    for (uint64_t k : touched) {
      const int64_t f = pair_freq[k];
      if (f > 0) heap.push({f, pair_chars(k), pair_text(k), k});
    }
    touched.clear();
  };
  for (int32_t p = 0; p < int32_t(sym.size()); ++p) add(p, freq_at[p]);
  push_touched();

  const int64_t target =
      int64_t(o.vocab_size) - int64_t(corpus.meta_pieces.size()) - int64_t(corpus.required_chars.size());
  if (target < 0) fail("--vocab-size {} is smaller than meta pieces + required characters", o.vocab_size);
  std::vector<Piece> final_pieces;
  std::unordered_set<std::string> dup;
  while (int64_t(final_pieces.size()) < target && !heap.empty()) {
    if ((final_pieces.size() & 1023) == 0) throw_if_interrupted();  // Ctrl-C stops training
    HeapEntry top = heap.top();
    heap.pop();
    auto it = pair_freq.find(top.pair);
    if (it == pair_freq.end() || dead.count(top.pair)) continue;
    if (it->second != top.freq) {  // stale
      if (it->second > 0) heap.push({it->second, top.chars, std::move(top.text), top.pair});
      continue;
    }
    dead.insert(top.pair);
    pair_freq.erase(it);
    if (!dup.insert(top.text).second) {
      occ.erase(top.pair);
      continue;
    }
    final_pieces.emplace_back(top.text, -float(final_pieces.size()));

    const int32_t a = int32_t(top.pair >> 32), b = int32_t(uint32_t(top.pair));
    const int32_t c = int32_t(sym_text.size());
    sym_text.push_back(sym_text[a] + sym_text[b]);
    sym_utf8.push_back(top.text);
    std::vector<int32_t> positions = std::move(occ[top.pair]);
    occ.erase(top.pair);
    std::sort(positions.begin(), positions.end());
    for (int32_t p : positions) {
      if (sym[p] != a) continue;
      const int32_t q = nxt[p];
      if (q < 0 || sym[q] != b) continue;
      const int64_t f = freq_at[p];
      const int32_t l = prv[p], r = nxt[q];
      if (l >= 0) sub(l, f);
      if (r >= 0) sub(q, f);
      sym[p] = c;
      sym[q] = -1;
      nxt[p] = r;
      if (r >= 0) prv[r] = p;
      if (l >= 0) add(l, f);
      if (r >= 0) add(p, f);
    }
    push_touched();
  }
  if (int64_t(final_pieces.size()) < target)
    log::warn("trainer: only {} merges possible (wanted {})", final_pieces.size(), target);
  for (const auto& [ch, count] : corpus.required_chars) {
    std::string s;
    append_utf8(s, ch);
    final_pieces.emplace_back(std::move(s), -float(final_pieces.size()));
  }
  return final_pieces;
}

}  // namespace tsumugi::tokenizer::train
