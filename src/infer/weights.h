// A model's weights for decoding, loaded from a tsumugi checkpoint or a Hugging Face directory by
// memory-mapping its safetensors file(s). A matrix already in the decoding type and orientation is
// used straight from the mapping; any other is converted once (GPT-2's Conv1D transposed, another
// dtype, a LoRA adapter merged), so a large model is never held in memory twice.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "formats/safetensors.h"
#include "infer/kernels.h"
#include "model/config.h"

namespace tsumugi::infer {

struct LayerWeights {
  std::vector<float> norm1_w, norm1_b, norm2_w, norm2_b;  // biases: GPT-2 only
  // GPT-2: qkv is c_attn ([3C, C], bias qkv_b); LLaMA: q, k, v separately.
  WMat qkv, q, k, v, o, fc, gate, up, down;  // GPT-2 uses fc (c_fc) and down (mlp.c_proj)
  std::vector<float> qkv_b, o_b, fc_b, down_b;
};

// Memory for converted matrices: large anonymous mappings that the kernel may back with 2 MiB
// transparent huge pages. The decoder streams every weight once per token; with 4 KiB pages the
// TLB misses cap a 2-core read at 38-41 GB/s on the project machine, with huge pages 45-51 GB/s.
class WeightArena {
 public:
  WeightArena() = default;
  ~WeightArena();
  WeightArena(const WeightArena&) = delete;
  WeightArena& operator=(const WeightArena&) = delete;
  // `bytes` of zeroed memory, 64-byte aligned, alive as long as the arena.
  std::byte* alloc(uint64_t bytes);

 private:
  struct Block {
    std::byte* base;
    uint64_t size, used;
  };
  std::vector<Block> blocks_;
};

struct ModelWeights {
  model::ModelConfig cfg;
  WType type = WType::F32;
  WMat embed;                 // [vocab, C]
  std::vector<float> pos;     // GPT-2 learned positions [max_seq, C]
  std::vector<LayerWeights> layers;
  std::vector<float> norm_f_w, norm_f_b;
  WMat lm_head;               // the embedding itself when tied
  uint64_t matrix_bytes = 0;  // bytes of all weight matrices read per token (lm_head once)
  uint64_t mapped_matrix_bytes = 0;  // of those, used straight from the mapping (the rest are owned)

  std::unique_ptr<formats::SafetensorsDir> source;   // mappings the matrices may point into
  WeightArena owned;                                  // converted matrices
};

struct WeightLoadOptions {
  std::string dtype = "auto";  // auto (as stored) | f32 | bf16 | f16 | q8_0
  std::string adapter;         // PEFT LoRA directory merged at load
  // Matrices already in the decoding type and orientation: false (default) copies them into the
  // huge-page arena when the kernel offers transparent huge pages (decoding reads every weight each
  // token, and 4 KiB pages cost TLB misses: f32 GPT-2's mapped embedding decoded 3-7% faster from
  // the arena), releasing the mapped pages as it goes, unless the files exceed half the available
  // memory (anonymous copies cannot be dropped and re-read as file pages can); true reads them from
  // the file mapping (instant start, page cache shared between processes).
  bool keep_mapped = false;
};

// Whether the kernel backs anonymous memory advised MADV_HUGEPAGE with huge pages.
bool transparent_huge_pages();

// Reads DIR/config.json and the weights. Throws naming the file and tensor for anything missing,
// misshapen or of an unsupported dtype.
std::unique_ptr<ModelWeights> load_weights(const std::string& dir, const WeightLoadOptions& opt);

}  // namespace tsumugi::infer
