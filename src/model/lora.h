// LoRA adapters (Hu et al.) on the transformer's linear layers, laid out as PEFT lays them out so
// that `peft.PeftModel.from_pretrained` loads what tsumugi saves:
//   y = W x + b + (alpha / r) * B A dropout(x),   A [r, in], B [out, r]
// A starts Kaiming-uniform (PEFT's default: U(-1/sqrt(in), 1/sqrt(in))) and B at zero, so a fresh
// adapter leaves the model unchanged. Adapters live in their own flat buffer; with LoRA on, the
// base weights are frozen (no gradients, no optimizer state).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"

namespace tsumugi::model {

struct LoraConfig {
  int r = 0;            // rank; 0 = no adapters (full fine-tuning)
  float alpha = 32.0f;  // scaling = alpha / r
  float dropout = 0.05f;
  // Module names as PEFT matches them: a module is adapted when its full name equals an entry or
  // ends with "." + entry ("c_proj" adapts attn.c_proj and mlp.c_proj; "attn.c_proj" only the
  // first). Empty = the family's defaults (llm-jp-sft's).
  std::vector<std::string> target_modules;
  float scaling() const { return r > 0 ? alpha / static_cast<float>(r) : 0.0f; }
};

// c_attn, c_proj, c_fc (GPT-2); q_proj k_proj v_proj o_proj gate_proj up_proj down_proj (LLaMA).
std::vector<std::string> default_lora_targets(Family family);

// The linear layers of one transformer block, in the order the forward pass runs them.
enum class LinearSite { AttnQKV, Q, K, V, AttnOut, MlpUp, Gate, Up, MlpDown };

// One adapter: where it attaches and where its tensors sit in the adapter buffer.
struct LoraModule {
  std::string module;  // HF module path, e.g. "transformer.h.0.attn.c_attn"
  int layer = 0;
  LinearSite site = LinearSite::AttnQKV;
  int in = 0, out = 0;
  // The projection's output row may be wider than this module's (q/k/v and gate/up are computed as
  // one fused matmul): the module writes columns [out_offset, out_offset + out) of rows fused_out wide.
  int out_offset = 0, fused_out = 0;
  uint64_t a_offset = 0, b_offset = 0;  // elements into the adapter buffer
};

// Adapters for `lora` on `cfg`, in forward order. Throws naming a target that matches no module.
std::vector<LoraModule> lora_modules(const ModelConfig& cfg, const LoraConfig& lora);
// Total elements of the adapter buffer.
uint64_t lora_num_parameters(const std::vector<LoraModule>& mods, int r);
// The adapter tensors as ParamTensors (PEFT names "base_model.model.<module>.lora_A.weight",
// shapes [r, in] / [out, r]; no weight decay by default, as PEFT's optimizer groups).
std::vector<ParamTensor> lora_layout(const std::vector<LoraModule>& mods, int r);
// A ~ U(-1/sqrt(in), 1/sqrt(in)), B = 0; deterministic for a seed.
std::vector<float> lora_init(const std::vector<LoraModule>& mods, int r, uint64_t seed);

// W [out, in] += scaling * B A for one adapter, A [r, in], B [out, r]. The one merge both `sft merge`
// and the inference loader's --adapter use, so a merged checkpoint and base + adapter load the same
// weights. Each entry sums over the rank in double, in rank order (independent of threads).
void merge_lora_matrix(float* W, const float* A, const float* B, int64_t out, int64_t in, int r, double scaling);

// W += scaling * B A for every adapter, on weights in tsumugi's layout (what `sft merge` writes).
void merge_lora(const ModelConfig& cfg, const LoraConfig& lora, const std::vector<float>& adapter,
                std::vector<float>& weights);

// PEFT directory: adapter_config.json + adapter_model.safetensors, written atomically.
void save_peft_adapter(const std::string& dir, const ModelConfig& cfg, const LoraConfig& lora,
                       const std::vector<float>& adapter, const std::string& base_model);
struct LoadedAdapter {
  LoraConfig lora;
  std::vector<float> weights;  // the adapter buffer in lora_layout order
  std::string base_model;
};
// Reads a PEFT LoRA adapter for a model of shape `cfg`; errors name the file and the tensor.
LoadedAdapter load_peft_adapter(const std::string& dir, const ModelConfig& cfg);

}  // namespace tsumugi::model
