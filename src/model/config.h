// Model shapes for the two families tsumugi trains: GPT-2 (LLM-jp-13B v1.0) and LLaMA (LLM-jp-3).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace tsumugi::model {

enum class Family { GPT2, LLaMA };

struct ModelConfig {
  Family family = Family::GPT2;
  int n_layer = 4;
  int n_head = 4;
  int n_kv_head = 4;      // LLaMA grouped-query attention; GPT-2 always equals n_head
  int d_model = 128;
  int d_ff = 512;         // GPT-2: 4*d_model; LLaMA: the SwiGLU intermediate size
  int vocab_size = 0;     // embedding rows: the tokenizer's vocabulary padded (see pad_vocab)
  int max_seq = 256;      // GPT-2: learned positions; LLaMA: max_position_embeddings
  float norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  bool tie_embeddings = true;

  int head_dim() const { return d_model / n_head; }
  // Throws a clear error naming the first impossible setting.
  void validate() const;
  uint64_t num_parameters() const;
  std::string family_name() const { return family == Family::GPT2 ? "gpt2" : "llama"; }
  std::string summary() const;
};

// Vocabulary rows padded to a multiple of `multiple` (Megatron pads 50,570 to 50,688 with 128).
int pad_vocab(int vocab, int multiple = 128);

// Named shapes: gpt2-124m, gpt2-tiny, llm-jp-13b-v1.0, llm-jp-1.3b, llama-tiny, llm-jp-3-1.8b, ...
ModelConfig model_preset(const std::string& name);
std::vector<std::string> model_preset_names();

// Hugging Face config.json (GPT2LMHeadModel / LlamaForCausalLM) in both directions.
nlohmann::json to_hf_config(const ModelConfig& cfg, int bos_id, int eos_id);
ModelConfig from_hf_config(const nlohmann::json& j, const std::string& file);

// One parameter tensor in the flat parameter buffer. Names are the Hugging Face names; shapes are
// tsumugi's orientation (Linear weights [out, in]); GPT-2's Conv1D weights are stored transposed
// in HF files ([in, out]), which `hf_transposed` records.
struct ParamTensor {
  std::string name;
  std::vector<int64_t> shape;
  uint64_t offset = 0;  // elements into the flat buffer
  uint64_t size = 0;
  bool decay = false;   // AdamW weight decay: 2-D weights only, never norms or biases
  bool hf_transposed = false;
};

std::vector<ParamTensor> parameter_layout(const ModelConfig& cfg);

}  // namespace tsumugi::model
