// A tiny GPT-2 with random weights and a small unigram tokenizer trained on the bundled Japanese
// corpus, built once per test process: enough to exercise serving end to end in milliseconds.
#pragma once

#include <cstdlib>
#include <memory>
#include <string>

#include "backend/backend.h"
#include "model/config.h"
#include "model/model.h"
#include "../test_util.h"
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
    const std::string out = dir.file("tiny-chat");
    train::save_checkpoint(out, cfg, m.get_parameters(), {}, {}, {}, tok_prefix + ".model", tok.bos_id(),
                           tok.piece_to_id("<EOD>"));
    return out;
  }();
  return path;
}

}  // namespace tsumugi::testing
