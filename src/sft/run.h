// `tsumugi sft`: instruction tuning on the pretraining trainer, and merging adapters.
#pragma once

#include <memory>
#include <string>

#include "sft/data.h"
#include "train/run_config.h"

namespace tsumugi::train {
class Collective;
}

namespace tsumugi::sft {

// The trainer's data for cfg (kind Sft): data.train / data.valid rendered, tokenized and packed
// into train.seq_len sequences. Without data.valid, the last data.valid_fraction of the training
// examples are held out. Counts (records, truncated, dropped) are logged and left in `stats`.
std::unique_ptr<SftBatches> make_sft_batches(const train::RunConfig& cfg, const tokenizer::Tokenizer& tok,
                                             int32_t eod, LoadStats* train_stats = nullptr,
                                             LoadStats* valid_stats = nullptr);

// Runs (or resumes) the tuning run: 0 done, 130 interrupted (checkpoint written).
int run_sft(const train::RunConfig& cfg, bool resume, train::Collective* comm);

// OUT = BASE with the adapter merged (W += alpha/r * B A): a full checkpoint directory that
// `generate`, transformers and further tuning load like any other.
void merge_adapter(const std::string& base_dir, const std::string& adapter_dir, const std::string& out_dir);

}  // namespace tsumugi::sft
