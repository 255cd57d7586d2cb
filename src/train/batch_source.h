// Where the trainer's sequences come from. Pretraining samples windows from Megatron shards
// (WindowSampler); instruction tuning feeds packed or padded examples whose targets are -1 outside
// the responses (sft::SftBatches). A sequence is T input tokens and T targets (negative = no loss).
// Sequence numbers are global across steps and ranks, so what a step trains on depends only on the
// seed and the step: resuming, or changing the number of ranks, reads the same sequences.
#pragma once

#include <cstdint>
#include <string>

namespace tsumugi::train {

struct TrainOptions;

class BatchSource {
 public:
  virtual ~BatchSource() = default;
  virtual void train_sequence(uint64_t index, int32_t* inputs, int32_t* targets) const = 0;
  // How many held-out sequences one evaluation covers (0 = no validation), and the k-th of them.
  virtual uint64_t valid_sequences(const TrainOptions& t) const = 0;
  virtual void valid_sequence(uint64_t index, int32_t* inputs, int32_t* targets) const = 0;
  // Every target is a real token (pretraining windows): the loss of a step divides by
  // batch_size x seq_len without counting. Otherwise the trainer counts the targets of each step.
  virtual bool dense_targets() const { return false; }
  // Throws when a token id is outside the model's vocabulary.
  virtual void check_vocabulary(int vocab_size) const = 0;
  // One line for the log: "N training tokens, M held-out" or the like.
  virtual std::string describe() const = 0;
};

}  // namespace tsumugi::train
