#include "train/data.h"

#include <fmt/format.h>

#include <algorithm>

#include "train/run_config.h"
#include "util/error.h"

namespace tsumugi::train {

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

TokenStream::TokenStream(const std::vector<std::string>& prefixes) {
  for (const auto& prefix : prefixes) {
    if (!data::IndexedDataset::exists(prefix))
      fail("{}: no Megatron dataset here (expected {} and {}; make one with `tsumugi tokenize`)", prefix,
           data::bin_path(prefix), data::idx_path(prefix));
    Part p;
    p.ds = std::make_unique<data::IndexedDataset>(prefix);  // full verification: corrupt shards fail here
    const auto n = p.ds->size();
    p.seq_start.resize(n);
    uint64_t acc = 0;
    for (std::size_t i = 0; i < n; ++i) {
      p.seq_start[i] = acc;
      acc += static_cast<uint64_t>(p.ds->sequence_length(i));
    }
    p.tokens = acc;
    p.start = total_;
    total_ += acc;
    if (p.ds->dtype() == data::DType::float32 || p.ds->dtype() == data::DType::float64)
      fail("{}: token dataset has a floating-point dtype", prefix);
    parts_.push_back(std::move(p));
  }
}

void TokenStream::read(uint64_t pos, std::size_t n, int32_t* out) const {
  if (pos + n > total_) fail("internal: read past the token stream ({} + {} > {})", pos, n, total_);
  // dataset containing pos
  std::size_t d = 0;
  while (pos >= parts_[d].start + parts_[d].tokens) ++d;
  uint64_t local = pos - parts_[d].start;
  std::size_t seq =
      std::upper_bound(parts_[d].seq_start.begin(), parts_[d].seq_start.end(), local) - parts_[d].seq_start.begin() - 1;
  uint64_t within = local - parts_[d].seq_start[seq];
  std::size_t done = 0;
  while (done < n) {
    const Part& p = parts_[d];
    if (seq >= p.ds->size()) {
      ++d;
      seq = 0;
      within = 0;
      continue;
    }
    data::TokenView v = p.ds->sequence(seq);
    for (; within < v.size() && done < n; ++within) out[done++] = static_cast<int32_t>(v[within]);
    ++seq;
    within = 0;
  }
}

int64_t TokenStream::max_token() const {
  int64_t mx = -1;
  for (const auto& p : parts_)
    for (std::size_t i = 0; i < p.ds->size(); ++i) {
      data::TokenView v = p.ds->sequence(i);
      for (std::size_t j = 0; j < v.size(); ++j) mx = std::max(mx, v[j]);
    }
  return mx;
}

std::string TokenStream::describe() const {
  std::string s;
  for (const auto& p : parts_)
    s += fmt::format("{}{} ({} documents, {} tokens)", s.empty() ? "" : ", ", p.ds->prefix(),
                     p.ds->document_count(), p.tokens);
  return s;
}

WindowSampler::WindowSampler(const std::vector<std::string>& train, const std::vector<std::string>& valid,
                             double valid_fraction, int seq_len, uint64_t seed)
    : seq_len_(seq_len), seed_(seed) {
  train_ = std::make_unique<TokenStream>(train);
  if (!valid.empty()) {
    valid_ = std::make_unique<TokenStream>(valid);
    train_end_ = train_->size();
    valid_begin_ = 0;
    valid_end_ = valid_->size();
  } else {
    uint64_t held = static_cast<uint64_t>(static_cast<double>(train_->size()) * valid_fraction);
    train_end_ = train_->size() - held;
    valid_begin_ = train_end_;
    valid_end_ = train_->size();
  }
  if (train_end_ < static_cast<uint64_t>(seq_len) + 1)
    fail("training data has {} tokens, fewer than one window of train.seq_len + 1 = {} ({})", train_end_,
         seq_len + 1, train_->describe());
}

uint64_t WindowSampler::valid_tokens() const { return valid_end_ - valid_begin_; }

void WindowSampler::train_window(uint64_t index, int32_t* inputs, int32_t* targets) const {
  const uint64_t span = train_end_ - seq_len_;  // number of valid start positions
  uint64_t start = splitmix64(seed_ * 0x100000001B3ull ^ splitmix64(index)) % span;
  std::vector<int32_t> buf(seq_len_ + 1);
  train_->read(start, buf.size(), buf.data());
  std::copy(buf.begin(), buf.end() - 1, inputs);
  std::copy(buf.begin() + 1, buf.end(), targets);
}

void WindowSampler::valid_window(uint64_t index, int32_t* inputs, int32_t* targets) const {
  const uint64_t count = valid_tokens() / (seq_len_ + 1);
  if (count == 0) fail("no validation data: fewer than train.seq_len + 1 tokens held out");
  uint64_t start = valid_begin_ + (index % count) * (seq_len_ + 1);
  std::vector<int32_t> buf(seq_len_ + 1);
  (valid_ ? *valid_ : *train_).read(start, buf.size(), buf.data());
  std::copy(buf.begin(), buf.end() - 1, inputs);
  std::copy(buf.begin() + 1, buf.end(), targets);
}

uint64_t WindowSampler::valid_sequences(const TrainOptions& t) const {
  if (!has_validation()) return 0;
  return static_cast<uint64_t>(t.eval_batches) * t.batch_size;
}

std::string WindowSampler::describe() const {
  return fmt::format("{} training tokens, {} held-out", train_tokens(), valid_tokens());
}

void WindowSampler::check_vocabulary(int vocab_size) const {
  for (const TokenStream* s : {train_.get(), valid_.get()}) {
    if (!s) continue;
    int64_t mx = s->max_token();
    if (mx >= vocab_size)
      fail("token id {} in {} is outside the model's vocabulary ({} rows): was the data tokenized with a different "
           "tokenizer?",
           mx, s->describe(), vocab_size);
  }
}

}  // namespace tsumugi::train
