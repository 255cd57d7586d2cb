// Small models for the inference tests: random checkpoints written the way `tsumugi pretrain`
// writes them, a tiny tokenizer, and the Python (transformers/peft/gguf) oracle.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "model/config.h"
#include "model/model.h"
#include "../test_util.h"
#include "tokenizer/trainer.h"
#include "train/checkpoint.h"

namespace tsumugi::testing {

inline model::ModelConfig tiny_gpt2(int vocab = 384) {
  model::ModelConfig c;
  c.family = model::Family::GPT2;
  c.n_layer = 2;
  c.n_head = c.n_kv_head = 4;
  c.d_model = 64;
  c.d_ff = 256;
  c.vocab_size = vocab;
  c.max_seq = 64;
  return c;
}

inline model::ModelConfig tiny_llama(int vocab = 384) {
  model::ModelConfig c;
  c.family = model::Family::LLaMA;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_kv_head = 2;  // grouped-query attention
  c.d_model = 64;
  c.d_ff = 160;
  c.vocab_size = vocab;
  c.max_seq = 64;
  c.rope_theta = 5000.0f;
  c.tie_embeddings = false;
  return c;
}

// Weights with spread-out logits (so greedy choices are not near-ties): N(0, 0.15) matrices and
// biases, norm weights around 1.
inline std::vector<float> random_weights(const model::ModelConfig& c, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> w(c.num_parameters());
  for (const auto& p : model::parameter_layout(c)) {
    const bool norm = p.name.find("ln_") != std::string::npos || p.name.find("norm") != std::string::npos;
    const bool is_bias = p.name.size() > 5 && p.name.compare(p.name.size() - 5, 5, ".bias") == 0;
    for (uint64_t i = 0; i < p.size; ++i) {
      float v = nd(rng);
      w[p.offset + i] = norm && !is_bias ? 1.0f + 0.1f * v : 0.15f * v;
    }
  }
  return w;
}

inline void write_checkpoint(const std::string& dir, const model::ModelConfig& c, const std::vector<float>& w,
                             const std::string& tokenizer_path = "", int bos = 1, int eos = 2) {
  train::save_checkpoint(dir, c, w, {}, {}, train::CheckpointState{}, tokenizer_path, bos, eos);
}

// A small BPE tokenizer with <EOD>, trained on a sample of the bundled English text.
inline std::string make_tokenizer(const TempDir& dir, int vocab = 320) {
  tokenizer::TrainOptions o;
  o.inputs = {std::string(TSUMUGI_SOURCE_DIR) + "/data/corpus/en.jsonl.gz"};
  o.input_sentence_size = 3000;
  o.model_type = tokenizer::ModelType::bpe;
  o.vocab_size = vocab;
  o.num_threads = 1;
  o.user_defined_symbols = {"<EOD>"};
  tokenizer::train_and_save(o, dir.file("tok"));
  return dir.file("tok.model");
}

// Runs tests/infer/oracle.py with /usr/bin/python3; fails the test with the script's message.
inline std::string run_oracle(const std::string& args) {
  std::string out;
  const std::string cmd =
      std::string("/usr/bin/python3 ") + TSUMUGI_SOURCE_DIR + "/tests/infer/oracle.py " + args + " 2>&1";
  const int rc = run_command(cmd, out);
  if (rc != 0) ADD_FAILURE() << "oracle failed (" << cmd << "):\n" << out;
  return out;
}

}  // namespace tsumugi::testing
