// Instruction data for `tsumugi sft`: JSONL records in three shapes, rendered through the prompt
// template, tokenized with the loss on the response tokens only, and packed (or padded) into the
// trainer's fixed-length sequences.
//
//   {"instruction": ..., "input": ... (optional), "output": ...}                 Alpaca style
//   {"text": "...### 応答:\n..."}                                                  pre-rendered, split at the marker
//   {"messages": [{"role": "system"|"user"|"assistant", "content": ...}, ...]}   OpenAI chat style
//
// Every response is followed by the EOD token (trained on too, so the model learns to stop).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "sft/template.h"
#include "train/batch_source.h"

namespace tsumugi::tokenizer {
class Tokenizer;
}

namespace tsumugi::sft {

// The rendered text of one record and the byte ranges [begin, end) of its responses.
struct Rendered {
  std::string text;
  std::vector<std::pair<std::size_t, std::size_t>> responses;
};

// Renders one parsed record. `where` ("FILE:LINE") starts every error message.
Rendered render_record(const nlohmann::json& record, const Template& t, const std::string& where);
// The prompt a tuned model is asked with at inference: the single-turn prompt for `instruction`.
std::string render_prompt(const Template& t, const std::string& instruction, const std::string& input = "");

// One tokenized example: tokens (EOD after each response) and, per token, whether it is a training
// target (a response token or the EOD closing one).
struct Example {
  std::vector<int32_t> tokens;
  std::vector<uint8_t> is_target;
};
// Tokenizes the whole text once (so pieces are what inference sees) and marks as response the
// tokens past the longest common prefix of the whole text's tokens and the tokens of the text
// before each response.
Example tokenize(const Rendered& r, const tokenizer::Tokenizer& tok, int32_t eod);

struct LoadStats {
  uint64_t records = 0, examples = 0, tokens = 0, target_tokens = 0;
  uint64_t truncated = 0, dropped = 0;  // longer than a sequence
};

// Reads JSONL files (plain, .gz, .zst). Errors name the file and line (and the field).
std::vector<Example> load_examples(const std::vector<std::string>& files, const Template& t,
                                   const tokenizer::Tokenizer& tok, int32_t eod, LoadStats* stats);

struct PackOptions {
  int seq_len = 256;
  bool packing = true;
  bool drop_overflow = false;  // else truncate
  int32_t pad = 0;             // input token of padding positions (their targets are -1)
};

// Sequences of seq_len inputs and targets: target[i] = token[i + 1] where that token is a target,
// else -1. Packing fills each sequence with whole examples in order (attention stays causal across
// the whole sequence, so a later example also sees the earlier ones, as in llm-jp-sft's packing).
struct Sequences {
  int seq_len = 0;
  std::vector<int32_t> inputs, targets;  // [count, seq_len]
  uint64_t count() const { return seq_len ? inputs.size() / seq_len : 0; }
};
Sequences pack(const std::vector<Example>& examples, const PackOptions& o, LoadStats* stats);

// The trainer's data source for instruction tuning: training sequences are visited in a fresh
// seeded permutation each epoch; a validation pass covers the first train.eval_batches x
// train.batch_size held-out sequences (all of them when there are fewer).
class SftBatches : public train::BatchSource {
 public:
  SftBatches(Sequences train, Sequences valid, uint64_t seed);
  void train_sequence(uint64_t index, int32_t* inputs, int32_t* targets) const override;
  uint64_t valid_sequences(const train::TrainOptions& t) const override;
  void valid_sequence(uint64_t index, int32_t* inputs, int32_t* targets) const override;
  void check_vocabulary(int vocab_size) const override;
  std::string describe() const override;
  const Sequences& train() const { return train_; }
  const Sequences& valid() const { return valid_; }

 private:
  Sequences train_, valid_;
  uint64_t seed_;
  mutable uint64_t perm_epoch_ = UINT64_MAX;
  mutable std::vector<uint32_t> perm_;
};

}  // namespace tsumugi::sft
