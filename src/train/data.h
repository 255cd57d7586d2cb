// Training windows from Megatron indexed datasets. All documents of all datasets form one token
// stream (each document already ends with EOD); a window is T+1 consecutive tokens. Window k of a
// run starts at a position drawn from a counter-based generator keyed by (seed, k), so the data a
// step sees depends only on the seed and the step: resuming, or splitting a batch across ranks,
// reads exactly the same windows.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/indexed_dataset.h"
#include "train/batch_source.h"

namespace tsumugi::train {

class TokenStream {
 public:
  explicit TokenStream(const std::vector<std::string>& prefixes);
  uint64_t size() const { return total_; }
  // Tokens [pos, pos + n) of the stream, as int32.
  void read(uint64_t pos, std::size_t n, int32_t* out) const;
  // Largest token id (scans once; for the vocabulary check).
  int64_t max_token() const;
  std::string describe() const;

 private:
  struct Part {
    std::unique_ptr<data::IndexedDataset> ds;
    std::vector<uint64_t> seq_start;  // token offset of each sequence within this dataset
    uint64_t start = 0, tokens = 0;   // within the stream
  };
  std::vector<Part> parts_;
  uint64_t total_ = 0;
};

// The windows of a run. Training windows come from [0, train_end); validation windows tile
// [valid_begin, valid_end) in order.
class WindowSampler : public BatchSource {
 public:
  // With `valid` empty, the last `valid_fraction` of `train` is held out for validation.
  WindowSampler(const std::vector<std::string>& train, const std::vector<std::string>& valid,
                double valid_fraction, int seq_len, uint64_t seed);
  // Window number `index` (global across ranks and steps): inputs [T] and targets [T].
  void train_window(uint64_t index, int32_t* inputs, int32_t* targets) const;
  void valid_window(uint64_t index, int32_t* inputs, int32_t* targets) const;
  uint64_t train_tokens() const { return train_end_; }
  uint64_t valid_tokens() const;
  bool has_validation() const { return valid_tokens() >= static_cast<uint64_t>(seq_len_) + 1; }
  void check_vocabulary(int vocab_size) const override;

  // BatchSource: a validation pass reads train.eval_batches x train.batch_size windows.
  void train_sequence(uint64_t index, int32_t* inputs, int32_t* targets) const override {
    train_window(index, inputs, targets);
  }
  uint64_t valid_sequences(const TrainOptions& t) const override;
  void valid_sequence(uint64_t index, int32_t* inputs, int32_t* targets) const override {
    valid_window(index, inputs, targets);
  }
  bool dense_targets() const override { return true; }
  std::string describe() const override;

 private:
  std::unique_ptr<TokenStream> train_, valid_;
  int seq_len_;
  uint64_t seed_;
  uint64_t train_end_ = 0, valid_begin_ = 0, valid_end_ = 0;
};

uint64_t splitmix64(uint64_t x);

}  // namespace tsumugi::train
