#include "infer/engine.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>

#include "backend/backend.h"
#include "model/model.h"
#include "train/checkpoint.h"
#include "util/error.h"

namespace tsumugi::infer {

namespace fs = std::filesystem;

const tokenizer::Tokenizer& Engine::tokenizer() const {
  if (!tok_) fail("{}: the model directory has no tokenizer.model", name_);
  return *tok_;
}

void Engine::init_common(const std::string& dir) {
  fs::path p = fs::path(dir).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  name_ = p.filename().string();
  const fs::path tok_path = fs::path(dir) / "tokenizer.model";
  if (fs::exists(tok_path)) tok_ = std::make_shared<tokenizer::Tokenizer>(tokenizer::Tokenizer::load(tok_path.string()));
  vocab_limit_ = cfg_.vocab_size;
  eos_id_ = -1;
  if (tok_) {
    vocab_limit_ = std::min<int>(vocab_limit_, tok_->vocab_size());
    const int32_t eod = tok_->piece_to_id("<EOD>");
    eos_id_ = tok_->is_unknown(eod) ? tok_->eos_id() : eod;
  }
}

namespace {

// Length of the longest suffix of `text` that is a proper prefix of some stop string: text that
// must be held back because the next token may complete a stop string.
std::size_t stop_holdback(const std::string& text, const std::vector<std::string>& stops) {
  std::size_t hold = 0;
  for (const auto& st : stops)
    for (std::size_t k = std::min(st.size() - 1, text.size()); k > hold; --k)
      if (text.compare(text.size() - k, k, st, 0, k) == 0) {
        hold = k;
        break;
      }
  return hold;
}

// Bytes at the end of `text` that start a UTF-8 character not yet complete.
std::size_t incomplete_utf8_tail(const std::string& text) {
  const std::size_t n = text.size();
  for (std::size_t back = 1; back <= std::min<std::size_t>(4, n); ++back) {
    const auto c = static_cast<unsigned char>(text[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: look further back
    const std::size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    return need > back ? back : 0;
  }
  return 0;
}

}  // namespace

Completion Engine::complete(const std::vector<int32_t>& prompt, const Sampling& s, const TextFn& on_text,
                            const std::function<void(int32_t)>& on_token) {
  validate(s);
  if (prompt.empty()) fail("the prompt is empty");
  for (int32_t id : prompt)
    if (id < 0 || id >= cfg_.vocab_size) fail("prompt token id {} is outside the vocabulary ({})", id, cfg_.vocab_size);
  if (static_cast<int>(prompt.size()) >= cfg_.max_seq)
    fail("the prompt has {} tokens; the model's context is {}", prompt.size(), cfg_.max_seq);
  if (!s.stop.empty() && !tok_) fail("{}: stop strings need a tokenizer", name_);

  Completion out;
  out.prompt_tokens = static_cast<int>(prompt.size());
  const int budget = std::min(s.max_tokens, cfg_.max_seq - static_cast<int>(prompt.size()));
  Sampler sampler(s, vocab_limit_);
  auto dec = new_decoder();
  std::vector<float> logits(cfg_.vocab_size);
  std::vector<int32_t> history = prompt;
  using clock = std::chrono::steady_clock;
  auto t0 = clock::now();
  dec->append(prompt.data(), static_cast<int>(prompt.size()), logits.data());
  out.prefill_seconds = std::chrono::duration<double>(clock::now() - t0).count();
  t0 = clock::now();

  // Text is decoded from a few prompt tokens plus everything generated, minus the decoded prompt
  // part, so that a leading "▁" of the first generated piece becomes the space it stands for.
  const std::size_t ctx_n = std::min<std::size_t>(prompt.size(), 4);
  std::vector<int32_t> text_ids(prompt.end() - ctx_n, prompt.end());
  const std::string ctx_text = tok_ ? tok_->decode(text_ids) : std::string();
  std::size_t emitted = 0;  // bytes of out.text already handed to on_text
  std::string full;         // decoded completion so far
  out.finish_reason = "length";
  for (int i = 0; i < budget; ++i) {
    const int32_t id = sampler.next(logits.data(), history);
    if (id == eos_id_ && !s.ignore_eos) {
      out.finish_reason = "stop";
      break;
    }
    out.tokens.push_back(id);
    history.push_back(id);
    if (on_token) on_token(id);
    bool stopped = false;
    if (tok_) {
      text_ids.push_back(id);
      std::string all = tok_->decode(text_ids);
      full = all.compare(0, ctx_text.size(), ctx_text) == 0 ? all.substr(ctx_text.size()) : all;
      // A stop string ends the text where it starts; only newly decoded text can contain one.
      std::size_t cut = std::string::npos;
      for (const auto& st : s.stop) {
        const std::size_t from = emitted > st.size() ? emitted - st.size() : 0;
        const std::size_t at = full.find(st, from);
        if (at != std::string::npos) cut = std::min(cut, at);
      }
      if (cut != std::string::npos) {
        full.resize(cut);
        stopped = true;
      }
      std::size_t ready = full.size();
      if (!stopped) ready -= std::max(stop_holdback(full, s.stop), incomplete_utf8_tail(full));
      if (ready > emitted && on_text) {
        if (!on_text(full.substr(emitted, ready - emitted))) {
          emitted = ready;
          out.finish_reason = "cancelled";
          break;
        }
      }
      emitted = std::max(emitted, ready);
    } else if (on_text && !on_text("")) {
      out.finish_reason = "cancelled";
      break;
    }
    if (stopped) {
      out.finish_reason = "stop";
      break;
    }
    if (i + 1 < budget) dec->append(&id, 1, logits.data());
  }
  // Flush what was held back for a stop string that never came.
  if (tok_ && out.finish_reason != "cancelled" && emitted < full.size() && on_text) on_text(full.substr(emitted));
  out.text = full;
  out.completion_tokens = static_cast<int>(out.tokens.size());
  out.decode_seconds = std::chrono::duration<double>(clock::now() - t0).count();
  return out;
}

std::vector<double> Engine::token_logprobs(const std::vector<int32_t>& tokens) {
  if (tokens.size() < 2) return {};
  if (static_cast<int>(tokens.size()) > cfg_.max_seq)
    fail("{} tokens do not fit the model's context ({})", tokens.size(), cfg_.max_seq);
  for (int32_t id : tokens)
    if (id < 0 || id >= cfg_.vocab_size) fail("token id {} is outside the vocabulary ({})", id, cfg_.vocab_size);
  auto dec = new_decoder();
  std::vector<float> logits(cfg_.vocab_size);
  std::vector<double> out;
  out.reserve(tokens.size() - 1);
  dec->append(tokens.data(), 1, logits.data());
  for (std::size_t i = 1; i < tokens.size(); ++i) {
    double mx = -INFINITY, sum = 0;
    for (int v = 0; v < vocab_limit_; ++v) mx = std::max<double>(mx, logits[v]);
    for (int v = 0; v < vocab_limit_; ++v) sum += std::exp(logits[v] - mx);
    out.push_back(logits[tokens[i]] - mx - std::log(sum));
    if (i + 1 < tokens.size()) dec->append(&tokens[i], 1, logits.data());
  }
  return out;
}

namespace {

class ReferenceEngine;

class ReferenceDecoder : public Decoder {
 public:
  explicit ReferenceDecoder(ReferenceEngine& e) : e_(e) {}
  void append(const int32_t* ids, int n, float* logits) override;
  int length() const override { return static_cast<int>(seq_.size()); }
  std::unique_ptr<Decoder> fork() const override {
    auto d = std::make_unique<ReferenceDecoder>(e_);
    d->seq_ = seq_;
    return d;
  }

 private:
  ReferenceEngine& e_;
  std::vector<int32_t> seq_;
};

class ReferenceEngine : public Engine {
 public:
  ReferenceEngine(const std::string& dir, const LoadOptions& opt) {
    if (!opt.adapter.empty()) fail("the reference engine does not load adapters");
    train::LoadedCheckpoint ck = train::load_checkpoint(dir, false);
    cfg_ = ck.config;
    init_common(dir);
    be_ = backend::make_backend(opt.backend);
    model_ = std::make_unique<model::Model>(cfg_, *be_);
    model_->set_parameters(ck.weights);
  }
  std::unique_ptr<Decoder> new_decoder() override { return std::make_unique<ReferenceDecoder>(*this); }

  // The whole sequence through the training model; the model's activations are shared, hence the lock.
  void logits_after(const std::vector<int32_t>& seq, float* logits) {
    std::lock_guard<std::mutex> lock(mu_);
    const int T = static_cast<int>(seq.size());
    model_->forward(seq.data(), nullptr, 1, T);
    const std::vector<float> row = model_->logits_row(T - 1);
    std::copy(row.begin(), row.end(), logits);
  }

 private:
  std::unique_ptr<backend::Backend> be_;
  std::unique_ptr<model::Model> model_;
  std::mutex mu_;
};

void ReferenceDecoder::append(const int32_t* ids, int n, float* logits) {
  seq_.insert(seq_.end(), ids, ids + n);
  if (static_cast<int>(seq_.size()) > e_.config().max_seq)
    fail("the sequence ({} tokens) is longer than the model's context ({})", seq_.size(), e_.config().max_seq);
  e_.logits_after(seq_, logits);
}

}  // namespace

std::unique_ptr<Engine> load_reference_engine(const std::string& dir, const LoadOptions& opt) {
  return std::make_unique<ReferenceEngine>(dir, opt);
}

std::unique_ptr<Engine> Engine::load(const std::string& dir, const LoadOptions& opt) {
  if (opt.decoder != "auto" && opt.decoder != "reference")
    fail("unknown decoder '{}' (auto | reference)", opt.decoder);
  if (opt.kv_cache != "auto" && opt.kv_cache != "f32" && opt.kv_cache != "f16")
    fail("unknown KV cache type '{}' (auto | f32 | f16)", opt.kv_cache);
  if (opt.decoder == "reference") {
    if (opt.kv_cache == "f16") fail("the reference decoder keeps no KV cache (got --kv-cache f16)");
    if (opt.dtype != "auto" && opt.dtype != "f32") fail("the reference decoder computes in f32 only (got dtype '{}')", opt.dtype);
    return load_reference_engine(dir, opt);
  }
  return load_fast_engine(dir, opt);
}

}  // namespace tsumugi::infer
