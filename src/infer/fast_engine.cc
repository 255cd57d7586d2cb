// The fast CPU engine: a KV cache per sequence, the prompt processed as matrix-matrix work (oneDNN,
// through the CPU backend's matmul), each further token as matrix-vector work (infer/kernels).
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <mutex>

#include "backend/backend.h"
#include "formats/safetensors.h"
#include "infer/chunk_pool.h"
#include "infer/engine.h"
#include "infer/weights.h"
#include "util/error.h"
#include "util/fast_math.h"

namespace tsumugi::infer {

namespace {

using model::Family;

void gelu_tanh(float* x, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    const float u = 0.7978845608028654f * (v + 0.044715f * v * v * v);
    x[i] = 0.5f * v * (1.0f + util::fast_tanh(u));
  }
}

// a = silu(gate) * up
void swiglu(float* gate, const float* up, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    gate[i] = g * util::fast_sigmoid(g) * up[i];
  }
}

// f32 <-> f16 (round to nearest even, as formats::float_to_f16), eight at a time with F16C.
void to_f16(const float* x, int64_t n, uint16_t* h) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(h + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
  for (; i < n; ++i) h[i] = formats::float_to_f16(x[i]);
}
void from_f16(const uint16_t* h, int64_t n, float* x) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + i))));
  for (; i < n; ++i) x[i] = formats::f16_to_float(h[i]);
}

void layernorm(const float* x, float* y, const float* w, const float* b, int64_t C, float eps) {
  float mean = 0;
#pragma omp simd reduction(+ : mean)
  for (int64_t i = 0; i < C; ++i) mean += x[i];
  mean /= C;
  float var = 0;
#pragma omp simd reduction(+ : var)
  for (int64_t i = 0; i < C; ++i) var += (x[i] - mean) * (x[i] - mean);
  var /= C;
  const float rs = 1.0f / std::sqrt(var + eps);
  for (int64_t i = 0; i < C; ++i) y[i] = (x[i] - mean) * rs * w[i] + b[i];
}

void rmsnorm(const float* x, float* y, const float* w, int64_t C, float eps) {
  float ss = 0;
#pragma omp simd reduction(+ : ss)
  for (int64_t i = 0; i < C; ++i) ss += x[i] * x[i];
  const float rs = 1.0f / std::sqrt(ss / C + eps);
  for (int64_t i = 0; i < C; ++i) y[i] = w[i] * (x[i] * rs);
}

class FastEngine;

class FastDecoder : public Decoder {
 public:
  explicit FastDecoder(FastEngine& e);
  ~FastDecoder() override;
  FastDecoder(const FastDecoder&) = delete;  // registered with the engine by address
  FastDecoder& operator=(const FastDecoder&) = delete;
  void append(const int32_t* ids, int n, float* logits) override;
  int length() const override { return len_; }
  std::unique_ptr<Decoder> fork() const override;

  // One forward pass over n rows: n tokens of this decoder (a prompt, or one token), or, with
  // `seqs`, one token of each of n decoders (a batched step: row t is seqs[t]'s next token, its
  // logits go to seq_logits[t]). The running decoder's buffers hold the activations.
  void forward(const int32_t* ids, int n, float* logits, FastDecoder* const* seqs = nullptr,
               float* const* seq_logits = nullptr);
  // Guarded by the engine's step lock: steps do not wait for this decoder until it queues a token
  // (new, or it missed a gathering: busy with a prompt, a slow client).
  bool straggler = true;

 private:
  void linear(const WMat& W, const float* bias, const float* in, float* out, int n);
  void ensure_cache(int need);
  // A layer's cache laid out for `cap` positions, holding the first len_ of `c` (laid out for
  // `from_cap`).
  std::vector<std::byte> relaid(const std::vector<std::byte>& c, int from_cap, int cap) const;

  FastEngine& e_;
  const ModelWeights& w_;
  int len_ = 0, cap_ = 0;
  // Per layer, head-major [n_kv_head, cap, head_dim]: one head's keys (values) are one contiguous
  // run that attention reads front to back, which the hardware prefetcher follows. Elements are
  // f32, or f16 (kv_f16_), widened per head into a scratch row block when attention reads them.
  std::vector<std::vector<std::byte>> kc_, vc_;
  bool kv_f16_ = false;
  bool batch_rows_ = false;  // in a batched step: linear layers stay on the per-token kernels
  std::vector<float> x_, h_, qkv_, att_, ff_, ff2_, tmp_, logits_rows_, bf16_part_;
  std::vector<uint16_t> bf16_x_;
};

class FastEngine : public Engine {
 public:
  FastEngine(const std::string& dir, const LoadOptions& opt) {
    WeightLoadOptions wo;
    wo.dtype = opt.dtype;
    wo.adapter = opt.adapter;
    wo.keep_mapped = opt.keep_mapped;
    w_ = load_weights(dir, wo);
    cfg_ = w_->cfg;
    init_common(dir);
    threads_ = opt.threads > 0 ? opt.threads : omp_get_max_threads();
    if (opt.batch_wait_us < 0) fail("batch_wait_us must be >= 0 (got {})", opt.batch_wait_us);
    batch_wait_ = std::chrono::microseconds(opt.batch_wait_us);
    // oneDNN (prompt processing) takes its threads from OpenMP's default.
    if (opt.threads > 0) omp_set_num_threads(opt.threads);
    be_ = backend::make_cpu_backend(false);
    kv_f16_ = opt.kv_cache == "f16" || (opt.kv_cache == "auto" && w_->type != WType::F32);
    if (cfg_.family == Family::LLaMA) {
      const int half = cfg_.head_dim() / 2;
      cos_.resize(static_cast<std::size_t>(cfg_.max_seq) * half);
      sin_.resize(cos_.size());
      for (int i = 0; i < half; ++i) {
        // As transformers computes it: inv_freq and the angle in float32.
        const float inv = 1.0f / std::pow(cfg_.rope_theta, static_cast<float>(2 * i) / cfg_.head_dim());
        for (int p = 0; p < cfg_.max_seq; ++p) {
          const float ang = static_cast<float>(p) * inv;
          cos_[static_cast<std::size_t>(p) * half + i] = std::cos(ang);
          sin_[static_cast<std::size_t>(p) * half + i] = std::sin(ang);
        }
      }
    }
  }
  std::unique_ptr<Decoder> new_decoder() override { return std::make_unique<FastDecoder>(*this); }
  std::string weights_dtype() const override { return std::string(wtype_name(w_->type)); }
  std::string kv_cache_dtype() const override { return kv_f16_ ? "f16" : "f32"; }
  bool kv_f16() const { return kv_f16_; }
  uint64_t weights_bytes() const override { return w_->matrix_bytes; }
  DecodeCounters decode_counters() const override { return {steps_.load(), step_tokens_.load()}; }

  // Decodes d's next token (`id`) in a step shared with whatever other sequences are stepping:
  // see the comment at its definition.
  void step(FastDecoder* d, int32_t id, float* logits);
  void decoder_born(FastDecoder* d);
  void decoder_gone(FastDecoder* d);

  const ModelWeights& weights() const { return *w_; }
  int threads() const override { return threads_; }
  backend::Backend& backend() { return *be_; }
  const float* cos_at(int p) const { return cos_.data() + static_cast<std::size_t>(p) * (cfg_.head_dim() / 2); }
  const float* sin_at(int p) const { return sin_.data() + static_cast<std::size_t>(p) * (cfg_.head_dim() / 2); }

 private:
  std::unique_ptr<ModelWeights> w_;
  std::unique_ptr<backend::Backend> be_;
  std::vector<float> cos_, sin_;
  int threads_ = 1;
  bool kv_f16_ = false;

  struct StepRequest {
    FastDecoder* dec;
    int32_t id;
    float* logits;
    bool done = false;
    std::exception_ptr error;
  };
  std::mutex step_mu_;
  std::condition_variable step_cv_;
  std::vector<StepRequest*> pending_;
  bool stepping_ = false;
  std::vector<FastDecoder*> live_;  // this engine's decoders
  std::size_t stragglers_ = 0;      // of which this many are not waited for
  std::chrono::microseconds batch_wait_{1000};
  std::atomic<uint64_t> steps_{0}, step_tokens_{0};
};

// Single-token appends of concurrent sequences (the server's streams) go through the model
// together: every weight is read once per step for all of them, and the per-token kernels
// (matmul_tokens) give each token exactly the logits it would get alone. The first thread to find
// no step running leads: it waits, at most LoadOptions::batch_wait_us, until every live decoder of
// the engine has queued its next token, runs one forward pass over the queue (up to kMaxStep
// tokens) and wakes the others; one that queued during the pass leads the next. A sequence alone
// never waits; a new one is not waited for before its first token, nor one that missed a
// gathering (busy with a prompt, a slow client, a long sampling step) until it queues again.
constexpr std::size_t kMaxStep = 32;

void FastEngine::step(FastDecoder* d, int32_t id, float* logits) {
  StepRequest r{d, id, logits, false, nullptr};
  std::unique_lock<std::mutex> lock(step_mu_);
  if (d->straggler) {
    d->straggler = false;
    --stragglers_;
  }
  pending_.push_back(&r);
  step_cv_.notify_all();
  while (!r.done) {
    if (stepping_) {
      step_cv_.wait(lock);
      continue;
    }
    const bool all_here = step_cv_.wait_until(lock, std::chrono::steady_clock::now() + batch_wait_, [&] {
      return stepping_ || r.done || pending_.size() + stragglers_ >= live_.size();
    });
    if (stepping_ || r.done) continue;  // another waiter took the lead
    if (!all_here)
      for (FastDecoder* s : live_) {
        const bool queued =
            std::any_of(pending_.begin(), pending_.end(), [&](const StepRequest* p) { return p->dec == s; });
        if (!queued && !s->straggler) {
          s->straggler = true;
          ++stragglers_;
        }
      }
    // Taken before the step is marked running: an allocation failure here takes this request out
    // of the queue, and never leaves a step that no one will end.
    const std::size_t n = std::min(pending_.size(), kMaxStep);
    std::vector<StepRequest*> batch;
    try {
      batch.assign(pending_.begin(), pending_.begin() + n);
    } catch (...) {
      pending_.erase(std::find(pending_.begin(), pending_.end(), &r));
      throw;
    }
    pending_.erase(pending_.begin(), pending_.begin() + n);
    stepping_ = true;
    lock.unlock();
    std::exception_ptr error;
    try {
      std::vector<int32_t> ids(n);
      std::vector<FastDecoder*> seqs(n);
      std::vector<float*> outs(n);
      for (std::size_t i = 0; i < n; ++i) {
        ids[i] = batch[i]->id;
        seqs[i] = batch[i]->dec;
        outs[i] = batch[i]->logits;
      }
      if (n == 1)
        seqs[0]->forward(ids.data(), 1, outs[0]);
      else
        d->forward(ids.data(), static_cast<int>(n), nullptr, seqs.data(), outs.data());
      steps_.fetch_add(1);
      step_tokens_.fetch_add(n);
    } catch (...) {
      error = std::current_exception();
    }
    lock.lock();
    for (StepRequest* b : batch) {
      b->error = error;
      b->done = true;
    }
    stepping_ = false;
    step_cv_.notify_all();
  }
  if (r.error) std::rethrow_exception(r.error);
}

void FastEngine::decoder_born(FastDecoder* d) {
  std::lock_guard<std::mutex> lock(step_mu_);
  live_.push_back(d);
  ++stragglers_;  // not waited for before its first token
}

void FastEngine::decoder_gone(FastDecoder* d) {
  std::lock_guard<std::mutex> lock(step_mu_);
  const auto at = std::find(live_.begin(), live_.end(), d);
  if (at == live_.end()) return;
  live_.erase(at);
  if (d->straggler) --stragglers_;
  step_cv_.notify_all();  // a leader may be waiting for this sequence's token
}

FastDecoder::FastDecoder(FastEngine& e) : e_(e), w_(e.weights()), kv_f16_(e.kv_f16()) {
  kc_.resize(w_.cfg.n_layer);
  vc_.resize(w_.cfg.n_layer);
  e_.decoder_born(this);
}

FastDecoder::~FastDecoder() { e_.decoder_gone(this); }

std::unique_ptr<Decoder> FastDecoder::fork() const {
  auto d = std::make_unique<FastDecoder>(e_);
  // The copy gets room to continue (a cache copied at its exact length would be copied again by
  // the first token).
  const int cap = std::min(w_.cfg.max_seq, std::max(cap_, len_ + 64));
  d->len_ = len_;
  d->cap_ = cap;
  for (int l = 0; l < w_.cfg.n_layer; ++l) {
    d->kc_[l] = relaid(kc_[l], cap_, cap);
    d->vc_[l] = relaid(vc_[l], cap_, cap);
  }
  return d;
}

void FastDecoder::ensure_cache(int need) {
  if (need <= cap_) return;
  const int cap = std::min(w_.cfg.max_seq, std::max(need, std::max(64, 2 * cap_)));
  for (int l = 0; l < w_.cfg.n_layer; ++l) {
    kc_[l] = relaid(kc_[l], cap_, cap);
    vc_[l] = relaid(vc_[l], cap_, cap);
  }
  cap_ = cap;
}

std::vector<std::byte> FastDecoder::relaid(const std::vector<std::byte>& c, int from_cap, int cap) const {
  const std::size_t hd = w_.cfg.head_dim(), kvh = w_.cfg.n_kv_head;
  const std::size_t es = kv_f16_ ? 2 : 4;
  std::vector<std::byte> g(kvh * cap * hd * es);
  for (std::size_t h = 0; h < kvh && len_ > 0; ++h)
    std::memcpy(&g[h * cap * hd * es], &c[h * from_cap * hd * es], es * len_ * hd);
  return g;
}

void FastDecoder::append(const int32_t* ids, int n, float* logits) {
  if (n <= 0) fail("append: no tokens");
  if (len_ + n > w_.cfg.max_seq)
    fail("the sequence ({} tokens) is longer than the model's context ({})", len_ + n, w_.cfg.max_seq);
  for (int i = 0; i < n; ++i)
    if (ids[i] < 0 || ids[i] >= w_.cfg.vocab_size) fail("token id {} is outside the vocabulary ({})", ids[i], w_.cfg.vocab_size);
  ensure_cache(len_ + n);
  if (n == 1) return e_.step(this, ids[0], logits);
  // oneDNN takes its team from the calling thread's OpenMP setting, which the engine set only on
  // the thread that loaded it (server and eval workers are other threads); a different team size
  // may also change oneDNN's blocking and with it the last bits of the result.
  if (omp_get_max_threads() != e_.threads()) omp_set_num_threads(e_.threads());
  // Long prompts go through in chunks so activations stay bounded.
  constexpr int kChunk = 256;
  for (int s = 0; s < n; s += kChunk) {
    const int m = std::min(kChunk, n - s);
    forward(ids + s, m, s + m == n ? logits : nullptr);
  }
}

// Up to this many tokens a linear layer runs on the matrix-vector kernels (matmul_tokens), reading
// each weight once for all tokens; beyond it, oneDNN's matrix-matrix product, whose blocking beats
// the kernels' 4 x 4 register tiles once there are enough tokens. f32 and 16-bit weights reach
// that point within a few dozen tokens (16-bit ones are first widened to f32 panels); q8_0 did not
// by 128 tokens (the kernels: ~950 tok/s at pp128, the widened path under 500, on the project
// machine), so its prompts always take the kernels (bench: generate --bench --bench-prompt N).
int few_tokens_limit(WType t) {
  switch (t) {
    case WType::F32: return 16;
    case WType::BF16:
    case WType::F16: return 32;
    case WType::Q8_0: return 1 << 30;
  }
  return 0;
}

void FastDecoder::linear(const WMat& W, const float* bias, const float* in, float* out, int n) {
  const int64_t OC = W.rows, IC = W.cols;
  if (n <= few_tokens_limit(W.type) || batch_rows_) {  // one token, or a few: the matrix-vector kernels, weights read once
    if (n == 1)
      matvec(W, in, out, e_.threads());
    else
      matmul_tokens(W, in, n, out, e_.threads());
    if (bias)
      for (int t = 0; t < n; ++t)
        for (int64_t o = 0; o < OC; ++o) out[t * OC + o] += bias[o];
    return;
  }
  using backend::Buf;
  auto buf = [](const float* p, std::size_t count) { return Buf{const_cast<float*>(p), count, backend::Kind::Float32}; };
  backend::Backend& be = e_.backend();
  if (W.type == WType::F32) {
    be.matmul_forward(buf(out, n * OC), buf(in, n * IC), buf(reinterpret_cast<const float*>(W.data), OC * IC),
                      bias ? buf(bias, OC) : Buf{}, n, IC, OC);
    return;
  }
  if (matmul_bf16_prompt(W, in, n, out, bf16_x_, bf16_part_)) {
    if (bias)
      for (int t = 0; t < n; ++t)
        for (int64_t o = 0; o < OC; ++o) out[t * OC + o] += bias[o];
    return;
  }
  // Other types: panels of rows widened to f32, each multiplied by oneDNN.
  const int64_t P = std::min<int64_t>(OC, 512);
  std::vector<float>& panel = tmp_;
  std::vector<float> part(static_cast<std::size_t>(n) * P);
  panel.resize(static_cast<std::size_t>(P) * IC);
  for (int64_t r0 = 0; r0 < OC; r0 += P) {
    const int64_t pr = std::min(P, OC - r0);
    const int64_t step = 16;
#pragma omp parallel for num_threads(e_.threads()) schedule(static)
    for (int64_t r = 0; r < pr; r += step) dequantize_rows(W, r0 + r, std::min(step, pr - r), panel.data() + r * IC);
    be.matmul_forward(buf(part.data(), n * pr), buf(in, n * IC), buf(panel.data(), pr * IC),
                      bias ? buf(bias + r0, pr) : Buf{}, n, IC, pr);
    for (int t = 0; t < n; ++t) std::memcpy(out + t * OC + r0, part.data() + t * pr, 4 * pr);
  }
}

void FastDecoder::forward(const int32_t* ids, int n, float* logits, FastDecoder* const* seqs,
                          float* const* seq_logits) {
  const model::ModelConfig& c = w_.cfg;
  const bool gpt2 = c.family == Family::GPT2;
  const int64_t C = c.d_model, F = c.d_ff, H = c.n_head, KVH = c.n_kv_head, hd = c.head_dim();
  const int64_t Qd = H * hd, KVd = KVH * hd, QKVd = Qd + 2 * KVd;
  const int nt = e_.threads();
  // Row t's sequence and position.
  auto seq = [&](int t) -> FastDecoder& { return seqs ? *seqs[t] : *this; };
  auto pos = [&](int t) { return seqs ? seqs[t]->len_ : len_ + t; };
  batch_rows_ = seqs != nullptr;
  int64_t attention_work = 0;
  for (int t = 0; t < n; ++t) attention_work += static_cast<int64_t>(pos(t) + 1) * H * hd;
  x_.resize(n * C);
  h_.resize(n * C);
  qkv_.resize(n * QKVd);
  att_.resize(n * Qd);
  ff_.resize(n * F);
  ff2_.resize(n * std::max(F, Qd));
  for (int t = 0; t < n; ++t) {
    dequantize_rows(w_.embed, ids[t], 1, x_.data() + t * C);
    if (gpt2)
      for (int64_t i = 0; i < C; ++i) x_[t * C + i] += w_.pos[pos(t) * C + i];
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  for (int l = 0; l < c.n_layer; ++l) {
    const LayerWeights& L = w_.layers[l];
    for (int t = 0; t < n; ++t) {
      if (gpt2)
        layernorm(&x_[t * C], &h_[t * C], L.norm1_w.data(), L.norm1_b.data(), C, c.norm_eps);
      else
        rmsnorm(&x_[t * C], &h_[t * C], L.norm1_w.data(), C, c.norm_eps);
    }
    // q, k, v rows [n, QKVd]
    if (gpt2) {
      linear(L.qkv, L.qkv_b.data(), h_.data(), qkv_.data(), n);
    } else {
      if (n == 1) {  // one dispatch for the three, straight into the q | k | v row
        const MatvecOut outs[] = {{&L.q, qkv_.data()}, {&L.k, qkv_.data() + Qd}, {&L.v, qkv_.data() + Qd + KVd}};
        matvec_many(outs, 3, h_.data(), nt);
      } else {
        std::vector<float>& part = ff2_;  // free until the MLP
        linear(L.q, nullptr, h_.data(), part.data(), n);
        for (int t = 0; t < n; ++t) std::memcpy(&qkv_[t * QKVd], &part[t * Qd], 4 * Qd);
        linear(L.k, nullptr, h_.data(), part.data(), n);
        for (int t = 0; t < n; ++t) std::memcpy(&qkv_[t * QKVd + Qd], &part[t * KVd], 4 * KVd);
        linear(L.v, nullptr, h_.data(), part.data(), n);
        for (int t = 0; t < n; ++t) std::memcpy(&qkv_[t * QKVd + Qd + KVd], &part[t * KVd], 4 * KVd);
      }
      // Rotary embedding, HF rotate_half: pairs (i, i + hd/2).
      const int64_t half = hd / 2;
      for (int t = 0; t < n; ++t) {
        const float* cs = e_.cos_at(pos(t));
        const float* sn = e_.sin_at(pos(t));
        for (int64_t h = 0; h < H + KVH; ++h) {
          float* v = &qkv_[t * QKVd + h * hd];
          for (int64_t i = 0; i < half; ++i) {
            const float a = v[i], b = v[i + half];
            v[i] = a * cs[i] - b * sn[i];
            v[i + half] = b * cs[i] + a * sn[i];
          }
        }
      }
    }
    const std::size_t es = kv_f16_ ? 2 : 4;
    for (int t = 0; t < n; ++t)
      for (int64_t h = 0; h < KVH; ++h) {
        FastDecoder& sq = seq(t);
        const int64_t hstride = static_cast<int64_t>(sq.cap_) * hd;  // one kv head's cache, in elements
        std::byte* kc = sq.kc_[l].data();
        std::byte* vc = sq.vc_[l].data();
        const std::size_t at = es * (h * hstride + pos(t) * hd);
        const float* k = &qkv_[t * QKVd + Qd + h * hd];
        const float* v = &qkv_[t * QKVd + Qd + KVd + h * hd];
        if (kv_f16_) {
          to_f16(k, hd, reinterpret_cast<uint16_t*>(kc + at));
          to_f16(v, hd, reinterpret_cast<uint16_t*>(vc + at));
        } else {
          std::memcpy(kc + at, k, 4 * hd);
          std::memcpy(vc + at, v, 4 * hd);
        }
      }
    // A head's first `len` keys or values as f32: the cache itself, or widened into `scratch`.
    auto rows_f32 = [&](const std::byte* c, int64_t hstride, int64_t kvh, int len,
                        std::vector<float>& scratch) -> const float* {
      if (!kv_f16_) return reinterpret_cast<const float*>(c) + kvh * hstride;
      scratch.resize(static_cast<std::size_t>(len) * hd);
      from_f16(reinterpret_cast<const uint16_t*>(c) + kvh * hstride, static_cast<int64_t>(len) * hd, scratch.data());
      return scratch.data();
    };
    // Causal attention of each new token over the cache; heads share their kv head (GQA).
    const int64_t group = H / KVH;
    const bool avx512 = kernel_isa() == "avx512" && hd % 16 == 0 && hd <= 256;
    ChunkPool::shared(attention_work > (1 << 15) ? nt : 1).run(n * H, [&](int64_t job) {
      thread_local std::vector<float> sc, kbuf, vbuf;
      const int t = static_cast<int>(job / H);
      const int64_t h = job % H;
      const int len = pos(t) + 1;
      FastDecoder& sq = seq(t);
      const int64_t hstride = static_cast<int64_t>(sq.cap_) * hd;
      const std::byte* kc = sq.kc_[l].data();
      const std::byte* vc = sq.vc_[l].data();
      if (static_cast<int>(sc.size()) < len) sc.resize(len);
      const float* q = &qkv_[t * QKVd + h * hd];
      const int64_t kvh = h / group;
      if (avx512) {  // f16 rows widened in registers, 16 lanes
        detail::attend_avx512(q, kc + es * kvh * hstride, vc + es * kvh * hstride, kv_f16_, len, static_cast<int>(hd),
                              scale, sc.data(), &att_[t * Qd + h * hd]);
        return;
      }
      // Four cache rows at a time: four independent sums for the scores, and one pass over o per
      // four value rows (a single running sum per row was bound by the FMA chain's latency).
      const float* kb = rows_f32(kc, hstride, kvh, len, kbuf);
      int j = 0;
      for (; j + 4 <= len; j += 4) {
        const float *k0 = kb + j * hd, *k1 = k0 + hd, *k2 = k1 + hd, *k3 = k2 + hd;
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
        for (int64_t i = 0; i < hd; ++i) {
          s0 += q[i] * k0[i];
          s1 += q[i] * k1[i];
          s2 += q[i] * k2[i];
          s3 += q[i] * k3[i];
        }
        sc[j] = s0 * scale;
        sc[j + 1] = s1 * scale;
        sc[j + 2] = s2 * scale;
        sc[j + 3] = s3 * scale;
      }
      for (; j < len; ++j) {
        const float* k = kb + j * hd;
        float s = 0;
#pragma omp simd reduction(+ : s)
        for (int64_t i = 0; i < hd; ++i) s += q[i] * k[i];
        sc[j] = s * scale;
      }
      float mx = -INFINITY;
      for (int i = 0; i < len; ++i) mx = std::max(mx, sc[i]);
      float sum = 0;
#pragma omp simd reduction(+ : sum)
      for (int i = 0; i < len; ++i) sum += (sc[i] = util::fast_exp(sc[i] - mx));
      const float inv = 1.0f / sum;
      float* o = &att_[t * Qd + h * hd];
      std::fill(o, o + hd, 0.0f);
      const float* vb = rows_f32(vc, hstride, kvh, len, vbuf);
      j = 0;
      for (; j + 4 <= len; j += 4) {
        const float *v0 = vb + j * hd, *v1 = v0 + hd, *v2 = v1 + hd, *v3 = v2 + hd;
        const float p0 = sc[j] * inv, p1 = sc[j + 1] * inv, p2 = sc[j + 2] * inv, p3 = sc[j + 3] * inv;
#pragma omp simd
        for (int64_t i = 0; i < hd; ++i) o[i] += p0 * v0[i] + p1 * v1[i] + p2 * v2[i] + p3 * v3[i];
      }
      for (; j < len; ++j) {
        const float* v = vb + j * hd;
        const float p = sc[j] * inv;
        for (int64_t i = 0; i < hd; ++i) o[i] += p * v[i];
      }
    });
    linear(L.o, gpt2 ? L.o_b.data() : nullptr, att_.data(), h_.data(), n);
    for (int64_t i = 0; i < n * C; ++i) x_[i] += h_[i];
    for (int t = 0; t < n; ++t) {
      if (gpt2)
        layernorm(&x_[t * C], &h_[t * C], L.norm2_w.data(), L.norm2_b.data(), C, c.norm_eps);
      else
        rmsnorm(&x_[t * C], &h_[t * C], L.norm2_w.data(), C, c.norm_eps);
    }
    if (gpt2) {
      linear(L.fc, L.fc_b.data(), h_.data(), ff_.data(), n);
      gelu_tanh(ff_.data(), n * F);
    } else {
      if (n == 1) {
        const MatvecOut outs[] = {{&L.gate, ff_.data()}, {&L.up, ff2_.data()}};
        matvec_many(outs, 2, h_.data(), nt);
      } else {
        linear(L.gate, nullptr, h_.data(), ff_.data(), n);
        linear(L.up, nullptr, h_.data(), ff2_.data(), n);
      }
      swiglu(ff_.data(), ff2_.data(), n * F);
    }
    linear(L.down, gpt2 ? L.down_b.data() : nullptr, ff_.data(), h_.data(), n);
    for (int64_t i = 0; i < n * C; ++i) x_[i] += h_[i];
  }
  batch_rows_ = false;
  if (seqs) {
    // Every row's logits, through the per-token kernels (each row as matvec would give it).
    for (int t = 0; t < n; ++t) {
      if (gpt2)
        layernorm(&x_[t * C], &h_[t * C], w_.norm_f_w.data(), w_.norm_f_b.data(), C, c.norm_eps);
      else
        rmsnorm(&x_[t * C], &h_[t * C], w_.norm_f_w.data(), C, c.norm_eps);
    }
    const int64_t V = w_.lm_head.rows;
    logits_rows_.resize(static_cast<std::size_t>(n) * V);
    matmul_tokens(w_.lm_head, h_.data(), n, logits_rows_.data(), nt);
    for (int t = 0; t < n; ++t) {
      if (seq_logits[t]) std::memcpy(seq_logits[t], &logits_rows_[t * V], 4 * V);
      ++seqs[t]->len_;  // last: a failure above leaves every sequence as it was
    }
    return;
  }
  len_ += n;
  if (!logits) return;
  const float* last = &x_[(n - 1) * C];
  if (gpt2)
    layernorm(last, h_.data(), w_.norm_f_w.data(), w_.norm_f_b.data(), C, c.norm_eps);
  else
    rmsnorm(last, h_.data(), w_.norm_f_w.data(), C, c.norm_eps);
  matvec(w_.lm_head, h_.data(), logits, nt);
}

}  // namespace

std::unique_ptr<Engine> load_fast_engine(const std::string& dir, const LoadOptions& opt) {
  return std::make_unique<FastEngine>(dir, opt);
}

}  // namespace tsumugi::infer
