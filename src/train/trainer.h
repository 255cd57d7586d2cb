// `tsumugi pretrain`: the training loop over the model engine.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "train/batch_source.h"
#include "train/run_config.h"

namespace tsumugi::tokenizer {
class Tokenizer;
}
namespace tsumugi::backend {
class Backend;
}

namespace tsumugi::train {

class Collective;

struct PretrainOptions {
  bool resume = false;
  // The ranks of a data-parallel job; nullptr = one process.
  Collective* comm = nullptr;
  // Where sequences come from (called once the tokenizer is loaded; `eod` is its end-of-document
  // id). Default: windows sampled from the Megatron shards of data.train / data.valid.
  std::function<std::unique_ptr<BatchSource>(const RunConfig&, const tokenizer::Tokenizer*, int eod)> make_data;
  // Makes the backend named by the run's `backend` key (default: backend::make_backend). Tests use
  // it to run the trainer on the CUDA emulator.
  std::function<std::unique_ptr<backend::Backend>(const std::string& name)> make_backend;
  // Turns train.sample_prompt into the text the sample generations continue (SFT: the template).
  std::function<std::string(const std::string&)> render_sample_prompt;
};

// Runs (or resumes) a training run of either kind: pretraining from scratch, or (cfg.kind == Sft)
// tuning the checkpoint cfg.base_model, fully or through LoRA adapters (cfg.lora.r > 0).
int run_training(const RunConfig& cfg, const PretrainOptions& opt);

// Runs (or resumes) the configured run. Returns the process exit code: 0 done, 130 interrupted
// (a checkpoint was written). Throws Error on bad configuration, data or a non-finite loss.
int run_pretrain(const RunConfig& cfg, const PretrainOptions& opt);

// Learning rate at `step` (1-based) for the schedule in `t`.
double learning_rate(const TrainOptions& t, int64_t step);

}  // namespace tsumugi::train
