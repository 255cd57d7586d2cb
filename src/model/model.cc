#include "model/model.h"

#include <cmath>
#include <random>

#include "util/error.h"

namespace tsumugi::model {

using backend::AttentionShape;
using backend::Buf;
using backend::Kind;

// Activations of one (B, T) shape. Per layer we keep every tensor the backward pass reads; the
// gradient scratch buffers are shared by all layers.
struct Model::Acts {
  struct Layer {
    Buf ln1, ln1_mean, ln1_rstd;  // norm output and statistics (mean unused for RMSNorm)
    Buf qkv_raw;                  // LLaMA: before RoPE
    Buf qkv, att, lse;            // attention input, output, log-sum-exp
    Buf attproj, res2;            // attention projection and residual after attention
    Buf ln2, ln2_mean, ln2_rstd;
    Buf fc, fc_act;               // MLP up projection and activation (GELU / SwiGLU)
    Buf fcproj, res3;             // MLP down projection and residual out
  };
  Buf tokens, targets, encoded, lnf, lnf_mean, lnf_rstd, logits, losses;
  std::vector<Layer> layers;
  // backward scratch
  Buf dres, dln, datt, dqkv, dqkv2, dfc, dfc_act;
  std::vector<Buf> all;  // for freeing
};

Model::Model(const ModelConfig& cfg, backend::Backend& be) : cfg_(cfg), be_(be) {
  cfg_.validate();
  layout_ = parameter_layout(cfg_);
  n_params_ = cfg_.num_parameters();
  per_layer_ = cfg_.family == Family::GPT2 ? 12 : 9;
  first_layer_ = cfg_.family == Family::GPT2 ? 2 : 1;
  params_ = be_.alloc(n_params_, Kind::Param);
  if (be_.element_size(Kind::Param) != be_.element_size(Kind::Master))
    master_ = be_.alloc(n_params_, Kind::Master);
  grads_ = be_.alloc(n_params_, Kind::Grad);
}

Model::~Model() {
  if (acts_) {
    for (auto& b : acts_->all) be_.free(b);
    delete acts_;
  }
  be_.free(params_);
  if (master_.ptr) be_.free(master_);
  be_.free(grads_);
}

Buf Model::P(std::size_t i) const { return be_.view(params_, layout_[i].offset, layout_[i].size); }
Buf Model::G(std::size_t i) const { return be_.view(grads_, layout_[i].offset, layout_[i].size); }

void Model::init_weights(uint64_t seed) {
  std::vector<float> w(n_params_, 0.0f);
  std::mt19937_64 rng(seed);
  const float resid_scale = 1.0f / std::sqrt(2.0f * cfg_.n_layer);
  for (const auto& p : layout_) {
    float* dst = w.data() + p.offset;
    bool is_norm = p.name.find("ln_") != std::string::npos || p.name.find("layernorm") != std::string::npos ||
                   p.name == "model.norm.weight";
    bool is_bias = p.name.size() > 5 && p.name.compare(p.name.size() - 5, 5, ".bias") == 0;
    if (is_norm && !is_bias) {
      std::fill(dst, dst + p.size, 1.0f);
    } else if (is_bias) {
      // zeros
    } else {
      bool residual_out = p.name.find("c_proj.weight") != std::string::npos ||
                          p.name.find("o_proj") != std::string::npos || p.name.find("down_proj") != std::string::npos;
      std::normal_distribution<float> nd(0.0f, residual_out ? 0.02f * resid_scale : 0.02f);
      for (uint64_t i = 0; i < p.size; ++i) dst[i] = nd(rng);
    }
  }
  set_parameters(w);
}

std::vector<float> Model::get_parameters() {
  std::vector<float> out(n_params_);
  be_.download(out.data(), master(), n_params_);
  return out;
}

void Model::set_parameters(const std::vector<float>& host) {
  if (host.size() != n_params_) fail("parameter count mismatch: {} given, model has {}", host.size(), n_params_);
  be_.upload(master(), host.data(), n_params_);
  if (master_.ptr) be_.copy(params_, master_, n_params_);
}

std::vector<float> Model::get_gradients() {
  std::vector<float> out(n_params_);
  be_.download(out.data(), grads_, n_params_);
  return out;
}

void Model::zero_grad() { be_.zero(grads_, n_params_); }

void Model::ensure_acts(int B, int T) {
  if (acts_ && acts_B_ == B && acts_T_ == T) return;
  if (T > cfg_.max_seq) fail("sequence length {} exceeds the model's context ({})", T, cfg_.max_seq);
  if (acts_) {
    for (auto& b : acts_->all) be_.free(b);
    delete acts_;
    acts_ = nullptr;
  }
  acts_ = new Acts();
  Acts& a = *acts_;
  const std::size_t N = static_cast<std::size_t>(B) * T, C = cfg_.d_model, F = cfg_.d_ff;
  const std::size_t hd = cfg_.head_dim(), H = cfg_.n_head, KV = cfg_.n_kv_head;
  const std::size_t QKV = (H + 2 * KV) * hd;
  const bool llama = cfg_.family == Family::LLaMA;
  auto mk = [&](std::size_t n, Kind k = Kind::Activation) {
    Buf b = be_.alloc(n, k);
    a.all.push_back(b);
    return b;
  };
  a.tokens = mk(N, Kind::Int32);
  a.targets = mk(N, Kind::Int32);
  a.encoded = mk(N * C);
  a.layers.resize(cfg_.n_layer);
  for (auto& L : a.layers) {
    L.ln1 = mk(N * C);
    if (!llama) L.ln1_mean = mk(N, Kind::Float32);
    L.ln1_rstd = mk(N, Kind::Float32);
    if (llama) L.qkv_raw = mk(N * QKV);
    L.qkv = mk(N * QKV);
    L.att = mk(N * H * hd);
    L.lse = mk(static_cast<std::size_t>(B) * H * T, Kind::Float32);
    L.attproj = mk(N * C);
    L.res2 = mk(N * C);
    L.ln2 = mk(N * C);
    if (!llama) L.ln2_mean = mk(N, Kind::Float32);
    L.ln2_rstd = mk(N, Kind::Float32);
    L.fc = mk(N * (llama ? 2 * F : F));
    L.fc_act = mk(N * F);
    L.fcproj = mk(N * C);
    L.res3 = mk(N * C);
  }
  a.lnf = mk(N * C);
  if (!llama) a.lnf_mean = mk(N, Kind::Float32);
  a.lnf_rstd = mk(N, Kind::Float32);
  a.logits = mk(N * cfg_.vocab_size);
  a.losses = mk(N, Kind::Float32);
  a.dres = mk(N * C);
  a.dln = mk(N * C);
  a.datt = mk(N * H * hd);
  a.dqkv = mk(N * QKV);
  if (llama) a.dqkv2 = mk(N * QKV);
  a.dfc = mk(N * (llama ? 2 * F : F));
  a.dfc_act = mk(N * F);
  acts_B_ = B;
  acts_T_ = T;
}

namespace {
// The sizes both passes use, derived once from the config and the batch shape.
struct Dims {
  Dims(const ModelConfig& c, int B, int T)
      : N(B * T), C(c.d_model), F(c.d_ff), V(c.vocab_size), hd(c.head_dim()), H(c.n_head), KV(c.n_kv_head),
        QKV((c.n_head + 2 * c.n_kv_head) * c.head_dim()), llama(c.family == Family::LLaMA) {}
  int N, C, F, V, hd, H, KV, QKV;
  bool llama;
};
}  // namespace

void Model::run_forward(int B, int T) {
  Acts& a = *acts_;
  const Dims d(cfg_, B, T);
  const int N = d.N, C = d.C, F = d.F, V = d.V, hd = d.hd, H = d.H, KV = d.KV, QKV = d.QKV;
  const bool llama = d.llama;
  const AttentionShape as{B, T, H, KV, hd};
  const Buf none;

  be_.embedding_forward(a.encoded, a.tokens, P(0), llama ? none : P(1), B, T, C);
  Buf residual = a.encoded;
  for (int l = 0; l < cfg_.n_layer; ++l) {
    auto& L = a.layers[l];
    const std::size_t p = first_layer_ + l * per_layer_;
    if (!llama) {
      // ln_1.w, ln_1.b, c_attn.w, c_attn.b, c_proj.w, c_proj.b, ln_2.w, ln_2.b, c_fc.w, c_fc.b, mlp.c_proj.w, .b
      be_.layernorm_forward(L.ln1, L.ln1_mean, L.ln1_rstd, residual, P(p), P(p + 1), N, C, cfg_.norm_eps);
      be_.matmul_forward(L.qkv, L.ln1, P(p + 2), P(p + 3), N, C, QKV);
      be_.attention_forward(L.att, L.lse, L.qkv, as);
      be_.matmul_forward(L.attproj, L.att, P(p + 4), P(p + 5), N, C, C);
      be_.add(L.res2, residual, L.attproj, static_cast<std::size_t>(N) * C);
      be_.layernorm_forward(L.ln2, L.ln2_mean, L.ln2_rstd, L.res2, P(p + 6), P(p + 7), N, C, cfg_.norm_eps);
      be_.matmul_forward(L.fc, L.ln2, P(p + 8), P(p + 9), N, C, F);
      be_.gelu_forward(L.fc_act, L.fc, static_cast<std::size_t>(N) * F);
      be_.matmul_forward(L.fcproj, L.fc_act, P(p + 10), P(p + 11), N, F, C);
    } else {
      // input_layernorm, q, k, v, o, post_attention_layernorm, gate, up, down
      be_.rmsnorm_forward(L.ln1, L.ln1_rstd, residual, P(p), N, C, cfg_.norm_eps);
      Buf wqkv = be_.view(params_, layout_[p + 1].offset, static_cast<std::size_t>(QKV) * C);
      be_.matmul_forward(L.qkv_raw, L.ln1, wqkv, none, N, C, QKV);
      be_.rope_forward(L.qkv, L.qkv_raw, as, cfg_.rope_theta);
      be_.attention_forward(L.att, L.lse, L.qkv, as);
      be_.matmul_forward(L.attproj, L.att, P(p + 4), none, N, H * hd, C);
      be_.add(L.res2, residual, L.attproj, static_cast<std::size_t>(N) * C);
      be_.rmsnorm_forward(L.ln2, L.ln2_rstd, L.res2, P(p + 5), N, C, cfg_.norm_eps);
      Buf wgu = be_.view(params_, layout_[p + 6].offset, static_cast<std::size_t>(2) * F * C);
      be_.matmul_forward(L.fc, L.ln2, wgu, none, N, C, 2 * F);
      be_.swiglu_forward(L.fc_act, L.fc, N, F);
      be_.matmul_forward(L.fcproj, L.fc_act, P(p + 8), none, N, F, C);
    }
    be_.add(L.res3, L.res2, L.fcproj, static_cast<std::size_t>(N) * C);
    residual = L.res3;
  }
  const std::size_t f = first_layer_ + cfg_.n_layer * per_layer_;
  if (!llama) {
    be_.layernorm_forward(a.lnf, a.lnf_mean, a.lnf_rstd, residual, P(f), P(f + 1), N, C, cfg_.norm_eps);
  } else {
    be_.rmsnorm_forward(a.lnf, a.lnf_rstd, residual, P(f), N, C, cfg_.norm_eps);
  }
  const std::size_t head = cfg_.tie_embeddings ? 0 : f + 1;
  be_.matmul_forward(a.logits, a.lnf, P(head), none, N, C, V);
}

void Model::run_backward(int B, int T) {
  Acts& a = *acts_;
  const Dims d(cfg_, B, T);
  const int N = d.N, C = d.C, F = d.F, V = d.V, hd = d.hd, H = d.H, KV = d.KV, QKV = d.QKV;
  const bool llama = d.llama;
  const AttentionShape as{B, T, H, KV, hd};
  const Buf none;
  const std::size_t NC = static_cast<std::size_t>(N) * C;

  // logits now hold dL/dlogits (the fused cross-entropy overwrote them).
  const std::size_t f = first_layer_ + cfg_.n_layer * per_layer_;
  const std::size_t head = cfg_.tie_embeddings ? 0 : f + 1;
  be_.matmul_backward(a.dln, G(head), none, a.logits, a.lnf, P(head), N, C, V, false);
  be_.zero(a.dres, NC);
  Buf last = cfg_.n_layer > 0 ? a.layers.back().res3 : a.encoded;
  if (!llama) {
    be_.layernorm_backward(a.dres, G(f), G(f + 1), a.dln, last, P(f), a.lnf_mean, a.lnf_rstd, N, C);
  } else {
    be_.rmsnorm_backward(a.dres, G(f), a.dln, last, P(f), a.lnf_rstd, N, C);
  }
  for (int l = cfg_.n_layer - 1; l >= 0; --l) {
    auto& L = a.layers[l];
    const std::size_t p = first_layer_ + l * per_layer_;
    Buf residual = l == 0 ? a.encoded : a.layers[l - 1].res3;
    // dres is dL/d(res3); res3 = res2 + fcproj, so dfcproj = dres and dres flows on to res2.
    if (!llama) {
      be_.matmul_backward(a.dfc_act, G(p + 10), G(p + 11), a.dres, L.fc_act, P(p + 10), N, F, C, false);
      be_.gelu_backward(a.dfc, L.fc, a.dfc_act, static_cast<std::size_t>(N) * F);
      be_.matmul_backward(a.dln, G(p + 8), G(p + 9), a.dfc, L.ln2, P(p + 8), N, C, F, false);
      be_.layernorm_backward(a.dres, G(p + 6), G(p + 7), a.dln, L.res2, P(p + 6), L.ln2_mean, L.ln2_rstd, N, C);
      be_.matmul_backward(a.datt, G(p + 4), G(p + 5), a.dres, L.att, P(p + 4), N, C, C, false);
      be_.attention_backward(a.dqkv, a.datt, L.qkv, L.att, L.lse, as);
      be_.matmul_backward(a.dln, G(p + 2), G(p + 3), a.dqkv, L.ln1, P(p + 2), N, C, QKV, false);
      be_.layernorm_backward(a.dres, G(p), G(p + 1), a.dln, residual, P(p), L.ln1_mean, L.ln1_rstd, N, C);
    } else {
      be_.matmul_backward(a.dfc_act, G(p + 8), none, a.dres, L.fc_act, P(p + 8), N, F, C, false);
      be_.swiglu_backward(a.dfc, L.fc, a.dfc_act, N, F);
      Buf wgu = be_.view(params_, layout_[p + 6].offset, static_cast<std::size_t>(2) * F * C);
      Buf dwgu = be_.view(grads_, layout_[p + 6].offset, static_cast<std::size_t>(2) * F * C);
      be_.matmul_backward(a.dln, dwgu, none, a.dfc, L.ln2, wgu, N, C, 2 * F, false);
      be_.rmsnorm_backward(a.dres, G(p + 5), a.dln, L.res2, P(p + 5), L.ln2_rstd, N, C);
      be_.matmul_backward(a.datt, G(p + 4), none, a.dres, L.att, P(p + 4), N, H * hd, C, false);
      be_.attention_backward(a.dqkv, a.datt, L.qkv, L.att, L.lse, as);
      be_.rope_backward(a.dqkv2, a.dqkv, as, cfg_.rope_theta);
      Buf wqkv = be_.view(params_, layout_[p + 1].offset, static_cast<std::size_t>(QKV) * C);
      Buf dwqkv = be_.view(grads_, layout_[p + 1].offset, static_cast<std::size_t>(QKV) * C);
      be_.matmul_backward(a.dln, dwqkv, none, a.dqkv2, L.ln1, wqkv, N, C, QKV, false);
      be_.rmsnorm_backward(a.dres, G(p), a.dln, residual, P(p), L.ln1_rstd, N, C);
    }
  }
  be_.embedding_backward(G(0), llama ? none : G(1), a.dres, a.tokens, B, T, C);
}

double Model::forward_backward(const int32_t* tokens, const int32_t* targets, int B, int T, float loss_scale) {
  ensure_acts(B, T);
  const std::size_t N = static_cast<std::size_t>(B) * T;
  be_.upload_ints(acts_->tokens, tokens, N);
  run_forward(B, T);
  if (!targets) {
    logits_are_grads_ = false;
    return 0.0;
  }
  be_.upload_ints(acts_->targets, targets, N);
  be_.cross_entropy_forward_backward(acts_->losses, acts_->logits, acts_->targets, static_cast<int>(N),
                                     cfg_.vocab_size, loss_scale);
  double loss = be_.sum(acts_->losses, N);
  logits_are_grads_ = loss_scale != 0.0f;
  if (loss_scale != 0.0f) run_backward(B, T);
  return loss;
}

double Model::forward(const int32_t* tokens, const int32_t* targets, int B, int T) {
  return forward_backward(tokens, targets, B, T, 0.0f);
}

std::vector<float> Model::logits_row(int row) {
  if (!acts_ || logits_are_grads_) fail("logits are not available (run forward() first)");
  std::vector<float> out(cfg_.vocab_size);
  be_.download(out.data(), be_.view(acts_->logits, static_cast<std::size_t>(row) * cfg_.vocab_size, cfg_.vocab_size),
               cfg_.vocab_size);
  return out;
}

std::vector<float> Model::all_logits() {
  if (!acts_ || logits_are_grads_) fail("logits are not available (run forward() first)");
  std::size_t n = static_cast<std::size_t>(acts_B_) * acts_T_ * cfg_.vocab_size;
  std::vector<float> out(n);
  be_.download(out.data(), acts_->logits, n);
  return out;
}

}  // namespace tsumugi::model
