#include "tokenizer/trie.h"

#include <algorithm>
#include <deque>
#include <type_traits>

#include "util/error.h"

namespace tsumugi::tokenizer {

namespace {

// Places nodes into the double array: for a node with child labels L it finds a base b such
// that every b + c (c in L) is free. Candidates come from a doubly linked list of free slots
// (the first label goes into a free slot); a slot that has failed as a candidate many times is
// dropped from the list, which keeps building near-linear for large vocabularies. `Key` is a
// byte string (labels 0..255) or a string of character ids (labels 0..alphabet-1).
template <typename Key>
class Builder {
 public:
  Builder(std::vector<Trie::Unit>& nodes, std::vector<Trie::Payload>& payload, size_t alphabet)
      : nodes_(nodes), payload_(payload), alphabet_(alphabet) {}

  void run(const std::vector<std::pair<Key, int32_t>>& keys) {
    nodes_.clear();
    extend();  // slots 0..alphabet-1
    take(0);   // the root
    nodes_[0].check = Trie::kRoot;
    place(keys);
    // Pad so that base + any label stays inside the array.
    const size_t need = size_t(max_base_) + alphabet_;
    if (nodes_.size() < need) nodes_.resize(need);
    payload_.resize(nodes_.size());
    for (size_t i = 0; i < nodes_.size(); ++i)
      if (payload_[i].value >= 0) nodes_[i].check |= Trie::kHasValue;
    if (nodes_.size() >= size_t(Trie::kRoot)) fail("internal: trie too large ({} nodes)", nodes_.size());
  }

 private:
  static constexpr int32_t kNone = -1;
  static constexpr int kMaxFailures = 64;

  // Adds free slots at the end (at least 256, and as many as the alphabet).
  void extend() {
    const size_t old = nodes_.size();
    const size_t n = old + std::max<size_t>(256, alphabet_);
    nodes_.resize(n);
    payload_.resize(n);
    used_.resize(n, 0);
    next_.resize(n, kNone);
    prev_.resize(n, kNone);
    fails_.resize(n, 0);
    for (size_t i = old; i < n; ++i) link(int32_t(i));
  }
  void link(int32_t i) {  // append to the free list
    prev_[size_t(i)] = tail_;
    next_[size_t(i)] = kNone;
    if (tail_ == kNone)
      head_ = i;
    else
      next_[size_t(tail_)] = i;
    tail_ = i;
    listed_.resize(std::max(listed_.size(), size_t(i) + 1), 0);
    listed_[size_t(i)] = 1;
  }
  void unlink(int32_t i) {
    if (!listed_[size_t(i)]) return;
    listed_[size_t(i)] = 0;
    const int32_t p = prev_[size_t(i)], n = next_[size_t(i)];
    if (p == kNone) head_ = n; else next_[size_t(p)] = n;
    if (n == kNone) tail_ = p; else prev_[size_t(n)] = p;
  }
  void take(size_t i) {
    used_[i] = 1;
    unlink(int32_t(i));
  }

  int32_t find_base(const std::vector<uint32_t>& labels) {
    for (int32_t pos = head_;;) {
      if (pos == kNone) {
        const int32_t first_new = int32_t(nodes_.size());
        extend();
        pos = first_new;
      }
      bool ok = size_t(pos) >= labels[0];
      if (ok) {
        const size_t base = size_t(pos) - labels[0];
        while (nodes_.size() < base + alphabet_) extend();
        for (size_t i = 1; i < labels.size() && ok; ++i) ok = !used_[base + labels[i]];
        if (ok) return int32_t(base);
      }
      // Slots below the first label count too: otherwise the free slots near the start of the
      // array, too low for most labels (UTF-8 continuation bytes are >= 0x80), would be scanned
      // by every search.
      if (++fails_[size_t(pos)] >= kMaxFailures) unlink(pos);
      pos = next_[size_t(pos)];  // still valid after unlink(pos)
    }
  }

  static uint32_t label_at(const Key& k, size_t i) {
    return uint32_t(std::make_unsigned_t<typename Key::value_type>(k[i]));
  }

  // Places the trie breadth-first: the upper levels, which every walk passes through, end up
  // close together in the array. Each task is a range of keys [lo, hi) that share their first
  // `depth` labels, ending at `node`.
  void place(const std::vector<std::pair<Key, int32_t>>& keys) {
    struct Task {
      size_t lo, hi, depth;
      int32_t node;
    };
    std::deque<Task> queue;
    queue.push_back(Task{0, keys.size(), 0, 0});
    std::vector<uint32_t> labels;
    std::vector<size_t> starts;
    while (!queue.empty()) {
      Task task = queue.front();
      queue.pop_front();
      if (task.lo < task.hi && keys[task.lo].first.size() == task.depth) {
        payload_[size_t(task.node)].value = keys[task.lo].second;
        ++task.lo;
      }
      if (task.lo >= task.hi) continue;
      labels.clear();
      starts.clear();
      for (size_t i = task.lo; i < task.hi; ++i) {
        const uint32_t c = label_at(keys[i].first, task.depth);
        if (c >= alphabet_) fail("internal: trie label {} outside the alphabet ({})", c, alphabet_);
        if (labels.empty() || labels.back() != c) {
          labels.push_back(c);
          starts.push_back(i);
        }
      }
      starts.push_back(task.hi);
      const int32_t base = find_base(labels);
      max_base_ = std::max(max_base_, base);
      nodes_[size_t(task.node)].base = base;
      for (size_t i = 0; i < labels.size(); ++i) {
        const size_t t = size_t(base) + labels[i];
        take(t);
        nodes_[t].check = uint32_t(task.node);
        queue.push_back(Task{starts[i], starts[i + 1], task.depth + 1, int32_t(t)});
      }
    }
  }

  std::vector<Trie::Unit>& nodes_;
  std::vector<Trie::Payload>& payload_;
  const size_t alphabet_;
  std::vector<uint8_t> used_, listed_;
  std::vector<int32_t> next_, prev_;
  std::vector<uint16_t> fails_;
  int32_t head_ = kNone, tail_ = kNone;
  int32_t max_base_ = 0;
};

template <typename Key>
size_t check_keys(std::vector<std::pair<Key, int32_t>>& keys) {
  if (!std::is_sorted(keys.begin(), keys.end())) std::sort(keys.begin(), keys.end());  // callers often sorted
  for (size_t i = 0; i < keys.size(); ++i) {
    if (keys[i].first.empty()) fail("internal: empty key in trie");
    if (i > 0 && keys[i].first == keys[i - 1].first) fail("internal: duplicate key in trie");
  }
  return keys.size();
}

}  // namespace

Trie::Trie(std::vector<std::pair<std::string, int32_t>> keys) {
  num_keys_ = check_keys(keys);
  Builder<std::string>(units_, payload_, 256).run(keys);
}

Trie::Trie(std::vector<std::pair<std::u16string, int32_t>> keys, size_t alphabet) {
  num_keys_ = check_keys(keys);
  Builder<std::u16string>(units_, payload_, alphabet).run(keys);
}

int32_t Trie::find_node(std::string_view key) const {
  if (units_.empty()) return -1;
  int32_t n = 0;
  for (unsigned char c : key) {
    n = child(n, c);
    if (n < 0) return -1;
  }
  return has_value(units_[size_t(n)]) ? n : -1;
}

CharsMap::CharsMap(std::string_view blob, const std::string& origin) {
  if (blob.empty()) return;
  // <uint32 trie size in bytes><trie units><NUL-separated replacement strings>
  uint32_t trie_size = 0;
  if (blob.size() <= 4) fail("{}: precompiled normalization map is broken (only {} bytes)", origin, blob.size());
  std::memcpy(&trie_size, blob.data(), 4);
  if (trie_size > blob.size() - 4)
    fail("{}: precompiled normalization map is broken (trie size {} exceeds the {} bytes present)", origin,
         trie_size, blob.size() - 4);
  if (trie_size < 4)
    fail("{}: precompiled normalization map is broken (trie of {} bytes)", origin, trie_size);
  units_.resize(trie_size / 4);
  std::memcpy(units_.data(), blob.data() + 4, units_.size() * 4);
  normalized_.assign(blob.data() + 4 + trie_size, blob.size() - 4 - trie_size);
  for (int b = 0; b < 256; ++b) {
    const char c = char(b);
    std::string_view dummy;
    bool any = longest_match(&c, &c + 1, &dummy) > 0;
    if (!any) {
      // Does any longer rule start with b? Walk one step and see if the node is reachable.
      uint32_t unit = units_[0];
      size_t pos = offset(unit) ^ size_t(b);
      any = pos < units_.size() && label(units_[pos]) == uint32_t(b);
    }
    no_rule_[b] = !any;
  }
}

}  // namespace tsumugi::tokenizer
