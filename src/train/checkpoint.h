// Checkpoint directories: what `tsumugi pretrain` writes and `generate`/--resume read.
//   model.safetensors      fp32 weights under Hugging Face names (GPT-2 Conv1D weights transposed)
//   config.json            Hugging Face config (GPT2LMHeadModel / LlamaForCausalLM)
//   tokenizer.model        the SentencePiece model (when the run has one)
//   optimizer.safetensors  AdamW moments, `exp_avg.NAME` / `exp_avg_sq.NAME`, tsumugi orientation
//   trainer_state.json     step, tokens seen, the run configuration
// A directory is written under a temporary name and renamed, so a checkpoint either exists whole
// or not at all.
#pragma once

#include <nlohmann/json.hpp>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "formats/safetensors.h"

#include "model/config.h"
#include "model/lora.h"
#include "model/model.h"

namespace tsumugi::train {

struct CheckpointState {
  int64_t step = 0;
  uint64_t tokens_seen = 0;
  double loss = 0;
  nlohmann::json run_config;
};

// Weights of `layout` (flat, tsumugi orientation) to a safetensors file with HF names.
void save_hf_weights(const std::string& path, const model::ModelConfig& cfg, const std::vector<float>& flat);
// Loads a safetensors file with HF names into the flat layout; every tensor must be present with
// the right shape (an untied LLaMA lm_head may be missing only when tie_embeddings is set).
std::vector<float> load_hf_weights(const std::string& path, const model::ModelConfig& cfg);
// The same from a Hugging Face model directory: DIR/model.safetensors, or the shards that
// DIR/model.safetensors.index.json lists; F32, F16 or BF16 tensors; GPT-2 names with or without
// the "transformer." prefix (the original GPT-2 files have none).
std::vector<float> load_hf_weights_dir(const std::string& dir, const model::ModelConfig& cfg);

// The same directory read one tensor at a time (export streams a model through it instead of
// holding every weight in f32). The files stay memory-mapped while the reader lives.
class HfWeightsReader {
 public:
  HfWeightsReader(const std::string& dir, const model::ModelConfig& cfg);
  ~HfWeightsReader();
  HfWeightsReader(const HfWeightsReader&) = delete;
  HfWeightsReader& operator=(const HfWeightsReader&) = delete;
  // p's values, in tsumugi orientation, into dst[p.size]; throws naming the directory and tensor.
  void read(const model::ParamTensor& p, float* dst) const;
  std::vector<float> read(const model::ParamTensor& p) const;
  // Every tensor, flat in parameter_layout order.
  std::vector<float> read_all() const;

 private:
  std::string file_name(const std::string& name) const;
  std::string dir_;
  model::ModelConfig cfg_;
  std::unique_ptr<formats::SafetensorsDir> files_;
};

// Writes DIR atomically. `m`/`v` may be empty (weights-only export).
void save_checkpoint(const std::string& dir, const model::ModelConfig& cfg, const std::vector<float>& weights,
                     const std::vector<float>& m, const std::vector<float>& v, const CheckpointState& state,
                     const std::string& tokenizer_path, int bos_id, int eos_id);

struct LoadedCheckpoint {
  model::ModelConfig config;
  std::vector<float> weights, m, v;  // m, v empty when the directory has no optimizer state
  CheckpointState state;
  std::string tokenizer_path;  // DIR/tokenizer.model, or empty
};
LoadedCheckpoint load_checkpoint(const std::string& dir, bool with_optimizer);

// A LoRA run's checkpoint: the PEFT adapter (adapter_config.json + adapter_model.safetensors,
// loadable by peft and `--adapter`), the adapters' AdamW moments (optimizer.safetensors,
// `exp_avg.<PEFT name>`), trainer_state.json and tokenizer.model; the frozen base stays where
// `base_model` names it. Written under a temporary name and renamed, like save_checkpoint.
void save_lora_checkpoint(const std::string& dir, const model::ModelConfig& cfg, const model::LoraConfig& lora,
                          const std::vector<float>& adapter, const std::vector<float>& m, const std::vector<float>& v,
                          const CheckpointState& state, const std::string& tokenizer_path,
                          const std::string& base_model);
struct LoadedLoraCheckpoint {
  std::vector<float> adapter, m, v;
  CheckpointState state;
};
LoadedLoraCheckpoint load_lora_checkpoint(const std::string& dir, const model::ModelConfig& cfg,
                                          const model::LoraConfig& lora);

// Completed checkpoint directories under RUN_DIR/checkpoints, oldest first.
std::vector<std::string> list_checkpoints(const std::string& run_dir);
std::string checkpoint_dir_name(int64_t step);

}  // namespace tsumugi::train
