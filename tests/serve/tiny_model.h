// A tiny GPT-2 with random weights and a small unigram tokenizer trained on the bundled Japanese
// corpus, built once per test process: enough to exercise serving end to end in milliseconds.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <string>

#include "../test_util.h"
#include "backend/backend.h"
#include "infer/engine.h"
#include "model/config.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/trainer.h"
#include "train/checkpoint.h"

namespace tsumugi::testing {

constexpr int kTinyContext = 192;

inline const std::string& tiny_model_dir() {
  static TempDir dir;
  static const std::string path = [] {
    tokenizer::TrainOptions o;
    o.inputs = {std::string(TSUMUGI_SOURCE_DIR) + "/data/corpus/ja.jsonl.gz"};
    o.vocab_size = 800;
    o.character_coverage = 0.98f;
    o.byte_fallback = true;  // any text encodes
    o.input_sentence_size = 300;
    o.num_threads = 2;
    o.user_defined_symbols = {"\n"};
    o.control_symbols = {"<EOD>"};
    const std::string tok_prefix = dir.file("tok");
    tokenizer::train_and_save(o, tok_prefix);
    const auto tok = tokenizer::Tokenizer::load(tok_prefix + ".model");

    model::ModelConfig cfg = model::model_preset("gpt2-tiny");
    cfg.n_layer = 2;
    cfg.n_head = 2;
    cfg.n_kv_head = 2;
    cfg.d_model = 32;
    cfg.d_ff = 128;
    cfg.vocab_size = tok.vocab_size();
    cfg.max_seq = kTinyContext;
    auto be = backend::make_backend("cpu");
    model::Model m(cfg, *be);
    m.init_weights(20261127);
    // Zero embedding rows (tied with the output) for byte pieces and control symbols, so that
    // greedy text is made of real characters rather than stray bytes that decode to U+FFFD.
    std::vector<float> weights = m.get_parameters();
    for (const auto& t : m.layout()) {
      if (t.name != "transformer.wte.weight") continue;
      for (int id = 0; id < tok.vocab_size(); ++id)
        if (tok.is_byte(id) || tok.is_control(id) || tok.is_unknown(id))
          std::fill_n(weights.begin() + t.offset + static_cast<uint64_t>(id) * cfg.d_model, cfg.d_model, 0.0f);
    }
    const std::string out = dir.file("tiny-chat");
    train::save_checkpoint(out, cfg, weights, {}, {}, {}, tok_prefix + ".model", tok.bos_id(),
                           tok.piece_to_id("<EOD>"));
    return out;
  }();
  return path;
}

// The tiny model's engine, decoding on one OpenMP thread in whichever thread calls it: on a
// machine shared with other builds a two-thread team spends most of its time at barriers waiting
// for a descheduled partner, and these tests measure behaviour, not speed.
class SingleThreadEngine : public infer::Engine {
 public:
  explicit SingleThreadEngine(const std::string& dir) : inner_(infer::Engine::load(dir, one_thread())) {
    cfg_ = inner_->config();
    init_common(dir);
  }
  std::unique_ptr<infer::Decoder> new_decoder() override {
    struct Dec : infer::Decoder {
      explicit Dec(std::unique_ptr<infer::Decoder> d) : d(std::move(d)) {}
      void append(const int32_t* ids, int n, float* logits) override {
        omp_set_num_threads(1);
        d->append(ids, n, logits);
      }
      int length() const override { return d->length(); }
      std::unique_ptr<infer::Decoder> d;
    };
    return std::make_unique<Dec>(inner_->new_decoder());
  }
  DecodeCounters decode_counters() const override { return inner_->decode_counters(); }
  static infer::LoadOptions one_thread() {
    infer::LoadOptions o;
    o.threads = 1;
    return o;
  }

 private:
  std::unique_ptr<infer::Engine> inner_;
};

inline infer::Engine& tiny_engine() {
  static SingleThreadEngine engine(tiny_model_dir());
  return engine;
}

}  // namespace tsumugi::testing
