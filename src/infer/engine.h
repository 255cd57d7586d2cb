// Text generation over a loaded model: the one API that `generate`, `chat`, `serve` and `eval`
// use. The sampling loop, stop strings and streaming text live here once; a Decoder supplies the
// next-token logits (the reference decoder recomputes the window; the fast one keeps a KV cache).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "infer/sampler.h"
#include "model/config.h"
#include "tokenizer/tokenizer.h"

namespace tsumugi::infer {

struct LoadOptions {
  std::string dtype = "auto";  // weights for decoding: auto (as stored) | f32 | bf16 | f16 | q8_0
  int threads = 0;             // 0 = all cores; > 0 also sets OpenMP's default (oneDNN's threads)
  std::string adapter;         // a PEFT LoRA adapter directory merged into the weights at load
  std::string backend = "cpu";   // the reference decoder's training backend (cpu | cpu-bf16 | cuda | auto)
  std::string decoder = "auto";  // auto (the fast KV-cache engine) | reference (recomputes the window each token; for tests)
  // The fast decoder's KV cache: f16 halves the bytes attention reads per token (llama.cpp's
  // default); auto = f16 with bf16/f16/q8_0 weights, f32 with f32 weights (exact decoding).
  std::string kv_cache = "auto";  // auto | f32 | f16
  // Decode matrices stored in the decoding type from the file mapping instead of a copy in huge
  // pages (see WeightLoadOptions::keep_mapped).
  bool keep_mapped = false;
  // Concurrent sequences' next tokens share one forward pass (the fast decoder): how long a step
  // waits for the other live sequences' tokens before it runs with those it has.
  int batch_wait_us = 1000;
};

// One sequence's decoding state (its KV cache, for the fast decoder).
class Decoder {
 public:
  virtual ~Decoder() = default;
  // Appends n tokens at the end of the sequence and writes the logits that follow the last one
  // (vocab_size floats) to `logits`.
  virtual void append(const int32_t* ids, int n, float* logits) = 0;
  // Tokens held so far.
  virtual int length() const = 0;
  // An independent copy of this state (its KV cache copied), to continue one prefix several ways
  // without processing it again; nullptr where a decoder cannot (the caller starts afresh).
  virtual std::unique_ptr<Decoder> fork() const { return nullptr; }
};

struct Completion {
  std::vector<int32_t> tokens;  // generated ids (a stop string's tokens included, the EOS not)
  std::string text;             // generated text, cut before a matched stop string
  std::string finish_reason;    // "stop" (EOS or stop string) | "length"
  int prompt_tokens = 0;
  int completion_tokens = 0;
  double prefill_seconds = 0, decode_seconds = 0;
};

// Receives text as it becomes final (never a prefix of a stop string that may still match, never
// half a UTF-8 character). Return false to cancel the generation (finish_reason "cancelled").
using TextFn = std::function<bool(const std::string& delta)>;

class Engine {
 public:
  // DIR: a tsumugi checkpoint or a Hugging Face directory (config.json + model.safetensors or
  // sharded model-*-of-*.safetensors with model.safetensors.index.json; tokenizer.model beside).
  static std::unique_ptr<Engine> load(const std::string& dir, const LoadOptions& opt = {});
  virtual ~Engine() = default;

  const model::ModelConfig& config() const { return cfg_; }
  bool has_tokenizer() const { return tok_ != nullptr; }
  const tokenizer::Tokenizer& tokenizer() const;  // throws when the directory has none
  const std::string& name() const { return name_; }  // the directory's last component
  int context_length() const { return cfg_.max_seq; }
  // Ids >= this are never sampled (vocabulary padding): the tokenizer's size, else vocab_size.
  int vocab_limit() const { return vocab_limit_; }
  // The id that ends a generation: <EOD> if the tokenizer has it, else </s>; -1 if none.
  int32_t eos_id() const { return eos_id_; }

  // A fresh decoding state. Thread-safe: weights are shared read-only.
  virtual std::unique_ptr<Decoder> new_decoder() = 0;
  // The weights' decoding type (f32 | bf16 | f16 | q8_0) and the bytes of weight matrices read per
  // decoded token (what bounds decoding speed).
  virtual std::string weights_dtype() const { return "f32"; }
  // The KV cache's element type ("f32" | "f16").
  virtual std::string kv_cache_dtype() const { return "f32"; }
  virtual uint64_t weights_bytes() const { return 4 * cfg_.num_parameters(); }
  // CPU threads the decoder uses.
  virtual int threads() const { return 1; }
  // Single-token forward passes so far and the tokens they carried: concurrent sequences' tokens
  // share a pass (the fast engine batches them), so tokens / steps is the mean batch.
  struct DecodeCounters {
    uint64_t steps = 0, tokens = 0;
  };
  virtual DecodeCounters decode_counters() const { return {}; }

  // Generates after `prompt` (ids; must be non-empty and shorter than the context). Thread-safe.
  Completion complete(const std::vector<int32_t>& prompt, const Sampling& s, const TextFn& on_text = {},
                      const std::function<void(int32_t)>& on_token = {});
  // log p(tokens[i] | tokens[<i]) for i = 1..n-1 (natural log), for scoring and perplexity.
  std::vector<double> token_logprobs(const std::vector<int32_t>& tokens);

 protected:
  Engine() = default;
  model::ModelConfig cfg_;
  std::shared_ptr<tokenizer::Tokenizer> tok_;
  std::string name_;
  int vocab_limit_ = 0;
  int32_t eos_id_ = -1;
  void init_common(const std::string& dir);  // tokenizer, name, vocab limit, eos
};

// The reference engine: the training model (model::Model on the CPU backend), recomputing the
// whole window for every token. Exact by construction; the fast engine is tested against it.
std::unique_ptr<Engine> load_reference_engine(const std::string& dir, const LoadOptions& opt);
// The fast CPU engine (fast_engine.cc): KV cache, memory-mapped weights in f32/bf16/f16/q8_0.
std::unique_ptr<Engine> load_fast_engine(const std::string& dir, const LoadOptions& opt);

}  // namespace tsumugi::infer
