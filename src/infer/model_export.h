// Taking models elsewhere and bringing them in: `tsumugi export` (Hugging Face directory or a
// GGUF file for llama.cpp) and `tsumugi import --from-hf` (a Hugging Face directory into a
// tsumugi checkpoint).
//
// GGUF (architectures `gpt2` and `llama`, as llama.cpp names and shapes them):
//   gpt2   token_embd, position_embd, blk.N.{attn_norm, attn_qkv, attn_output, ffn_norm, ffn_up,
//          ffn_down}.{weight,bias}, output_norm.{weight,bias}; no output.weight (GPT-2 ties it to
//          the embedding, and llama.cpp falls back to token_embd when output.weight is absent)
//   llama  token_embd, blk.N.{attn_norm, attn_q, attn_k, attn_v, attn_output, ffn_norm, ffn_gate,
//          ffn_up, ffn_down}.weight, output_norm.weight, output.weight (absent when tied).
//          attn_q / attn_k rows are permuted within each head from the Hugging Face rotate-half
//          layout (pairs i, i + d/2) to GGML's interleaved rope layout (pairs 2i, 2i + 1).
//   Types follow llama.cpp's converter: 1-D tensors, norms and the position embedding stay F32;
//   the other matrices take --dtype (Q8_0 needs rows of a multiple of 32; others fall back to
//   F16, as the converter does).
//   Tokenizer: tokenizer.ggml.model "llama" (SentencePiece) with every piece, score and type
//   (rows past the tokenizer's vocabulary, the padding, become UNUSED pieces), bos/eos/unk/pad
//   ids (eos is <EOD> when the tokenizer has one, the token tsumugi stops at), add_bos/add_eos
//   false (tsumugi encodes prompts without them) and add_space_prefix from the normalizer.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/config.h"
#include "train/checkpoint.h"

namespace tsumugi::infer {

// A model directory: a tsumugi checkpoint or a Hugging Face directory. Its weights are read one
// tensor at a time from the memory-mapped files, so exporting a model never holds it in f32.
struct ModelDir {
  std::string dir;
  model::ModelConfig config;
  std::shared_ptr<const train::HfWeightsReader> weights;  // tensors in tsumugi orientation
  int bos_id = -1, eos_id = -1;  // config.json's, else the tokenizer's
  std::string tokenizer_path;    // DIR/tokenizer.model, or empty
};
// Throws naming the directory and the missing or bad file.
ModelDir read_model_dir(const std::string& dir);

struct ExportOptions {
  std::string format;          // hf | gguf
  std::string dtype = "f32";   // f32 | f16 | bf16 (hf, gguf) | q8_0 (gguf)
  uint64_t max_shard_size = 0; // hf: largest safetensors shard in bytes; 0 writes one file
  bool progress = true;        // a progress line on a terminal
};

// Checks the format/dtype pair before any work; throws with what is allowed.
void check_export_options(const ExportOptions& opt);

// Writes OUT (a directory for hf, a file for gguf) from the model in `model_dir`. The result appears
// whole or not at all. An existing hf OUT directory is replaced only when it holds a config.json
// (a previous export).
void export_model(const std::string& model_dir, const std::string& out, const ExportOptions& opt);

// Hugging Face directory: config.json, model.safetensors (or shards + model.safetensors.index.json),
// generation_config.json, and with a tokenizer tokenizer.model, tokenizer.json, tokenizer_config.json,
// special_tokens_map.json.
void export_hf(const ModelDir& m, const std::string& out_dir, const ExportOptions& opt);
// GGUF file for llama.cpp (needs the tokenizer).
void export_gguf(const ModelDir& m, const std::string& out_path, const ExportOptions& opt);

// An HF directory (config.json for GPT2LMHeadModel / LlamaForCausalLM, single or sharded
// safetensors in F32/F16/BF16, tokenizer.model beside it when there is one) into a tsumugi
// checkpoint directory (weights only, no optimizer state).
void import_hf(const std::string& hf_dir, const std::string& ckpt_dir);

// The HF names of a model's tensors mapped to GGUF names, in GGUF file order (for tests and tools).
std::vector<std::pair<std::string, std::string>> gguf_tensor_names(const model::ModelConfig& cfg);

}  // namespace tsumugi::infer
