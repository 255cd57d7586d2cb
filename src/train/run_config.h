// A pretraining run's configuration: a TOML or JSON file plus `--set KEY=VALUE` overrides.
// Every key has a type, a default and a one-line description (`tsumugi pretrain --list-keys`);
// unknown keys and ill-typed values are errors naming the file/flag and the key.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/lora.h"
#include "sft/template.h"

namespace tsumugi::train {

struct TrainOptions {
  int64_t steps = 1000;
  int64_t stop_after = 0;    // end this invocation (with a checkpoint) at this step; 0 = run to the end
  int batch_size = 8;        // sequences per optimizer step, across all ranks
  int micro_batch_size = 0;  // sequences per forward/backward on one rank (0 = batch_size / ranks)
  int seq_len = 256;
  double lr = 6e-4;
  double min_lr = 6e-5;
  int64_t warmup_steps = 100;
  std::string schedule = "cosine";  // cosine | linear | constant
  double weight_decay = 0.1;
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8;
  double grad_clip = 1.0;
  uint64_t seed = 1234;
  int64_t eval_interval = 100;
  int eval_batches = 8;
  int64_t checkpoint_interval = 500;
  int keep_checkpoints = 2;
  int64_t log_interval = 1;
  int64_t report_interval = 50;
  double dropout = 0.0;   // hidden dropout (embeddings, attention and MLP outputs), training passes only
  bool recompute = false; // activation recomputation: keep only each layer's output through the forward pass
  int zero_stage = 1;  // with several ranks: 1 = shard the AdamW state (ZeRO-1), 0 = replicate it
  int64_t sample_interval = 0;  // 0: only at the end
  int sample_tokens = 32;
  std::string sample_prompt;
};

// What a configuration describes: pretraining from scratch, or instruction tuning of a checkpoint
// (`tsumugi sft`: its keys add `model`, `lora.*`, `template.*`; the shape comes from the checkpoint).
enum class RunKind { Pretrain, Sft };

struct SftDataOptions {
  bool packing = true;                // several examples per sequence, else one padded example each
  std::string overflow = "truncate";  // an example longer than seq_len + 1 tokens: truncate | drop
  sft::Template prompt;
};

struct RunConfig {
  RunKind kind = RunKind::Pretrain;
  std::string config_path;  // where it came from (for messages)
  std::string out_dir = "runs/run";
  std::string backend = "auto";
  std::string tokenizer;                 // SentencePiece .model, copied into checkpoints
  std::vector<std::string> train_data;   // Megatron prefixes (PREFIX.bin/.idx)
  std::vector<std::string> valid_data;   // optional; else valid_fraction of the train stream
  double valid_fraction = 0.005;
  std::string model_preset;
  model::ModelConfig model;  // after preset + overrides; vocab_size 0 = from the tokenizer
  TrainOptions train;
  // instruction tuning
  std::string base_model;   // `model`: the checkpoint directory to tune
  model::LoraConfig lora;   // lora.r = 0: full fine-tuning
  SftDataOptions sft;

  nlohmann::json to_json() const;  // everything, resolved (saved next to checkpoints)
};

// Loads FILE (TOML, or JSON when it ends in .json) and applies overrides in order.
// Throws Error with the file, the key and what is wrong.
RunConfig load_run_config(const std::string& file, const std::vector<std::string>& overrides,
                          RunKind kind = RunKind::Pretrain);
// The same from an already-parsed JSON object (a saved run's run_config.json).
RunConfig run_config_from_json(const nlohmann::json& j, const std::string& origin,
                               const std::vector<std::string>& overrides = {}, RunKind kind = RunKind::Pretrain);
// "key  type  default  description" lines for --help.
std::string describe_run_keys(RunKind kind = RunKind::Pretrain);
// The defaults of a kind (instruction tuning starts from llm-jp-sft's: LoRA r=8, alpha=32, dropout
// 0.05, a small constant-after-warmup learning rate, no weight decay).
RunConfig default_run_config(RunKind kind);

}  // namespace tsumugi::train
