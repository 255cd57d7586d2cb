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
  Buf dres, dln, datt, dqkv, dqkv2, dfc, dfc_act, ddrop;
  // LoRA: each adapter's scaled A x [N, r] (kept for dB), and scratch shared by all adapters
  std::vector<Buf> lora_u;
  Buf lora_x, lora_y, lora_du, lora_dx;
  std::vector<Buf> all;  // for freeing
};

Model::Model(const ModelConfig& cfg, backend::Backend& be, const LoraConfig& lora) : cfg_(cfg), be_(be), lora_(lora) {
  cfg_.validate();
  layout_ = parameter_layout(cfg_);
  n_params_ = cfg_.num_parameters();
  per_layer_ = cfg_.family == Family::GPT2 ? 12 : 9;
  first_layer_ = cfg_.family == Family::GPT2 ? 2 : 1;
  params_ = be_.alloc(n_params_, Kind::Param);
  const bool split_master = be_.element_size(Kind::Param) != be_.element_size(Kind::Master);
  if (split_master) master_ = be_.alloc(n_params_, Kind::Master);
  if (lora_.r > 0) {
    lora_mods_ = model::lora_modules(cfg_, lora_);
    lora_layout_ = lora_layout(lora_mods_, lora_.r);
    lora_n_ = lora_num_parameters(lora_mods_, lora_.r);
    lora_params_ = be_.alloc(lora_n_, Kind::Param);
    if (split_master) lora_master_ = be_.alloc(lora_n_, Kind::Master);
    lora_grads_ = be_.alloc(lora_n_, Kind::Grad);
  } else {
    grads_ = be_.alloc(n_params_, Kind::Grad);
  }
}

Model::~Model() {
  if (acts_) {
    for (auto& b : acts_->all) be_.free(b);
    delete acts_;
  }
  be_.free(params_);
  if (master_.ptr) be_.free(master_);
  if (grads_.ptr) be_.free(grads_);
  if (lora_params_.ptr) be_.free(lora_params_);
  if (lora_master_.ptr) be_.free(lora_master_);
  if (lora_grads_.ptr) be_.free(lora_grads_);
}

Buf Model::P(std::size_t i) const { return be_.view(params_, layout_[i].offset, layout_[i].size); }
Buf Model::G(std::size_t i) const {
  if (!grads_.ptr) return Buf{};
  return be_.view(grads_, layout_[i].offset, layout_[i].size);
}
Buf Model::Gview(std::size_t i, std::size_t count) const {
  if (!grads_.ptr) return Buf{};
  return be_.view(grads_, layout_[i].offset, count);
}

const LoraModule* Model::adapter(int layer, LinearSite site) const {
  for (const auto& m : lora_mods_)
    if (m.layer == layer && m.site == site) return &m;
  return nullptr;
}

void Model::init_lora(uint64_t seed) {
  if (!has_lora()) fail("init_lora: the model has no adapters (lora.r = 0)");
  set_lora(model::lora_init(lora_mods_, lora_.r, seed));
}

std::vector<float> Model::get_lora() {
  std::vector<float> out(lora_n_);
  if (lora_n_) be_.download(out.data(), lora_master_.ptr ? lora_master_ : lora_params_, lora_n_);
  return out;
}

void Model::set_lora(const std::vector<float>& host) {
  if (host.size() != lora_n_) fail("adapter parameter count mismatch: {} given, the model's adapters have {}", host.size(), lora_n_);
  be_.upload(lora_master_.ptr ? lora_master_ : lora_params_, host.data(), lora_n_);
  if (lora_master_.ptr) be_.copy(lora_params_, lora_master_, lora_n_);
}

std::vector<float> Model::get_lora_gradients() {
  std::vector<float> out(lora_n_);
  if (lora_n_) be_.download(out.data(), lora_grads_, lora_n_);
  return out;
}

namespace {
uint64_t adapter_seed(uint64_t seed, std::size_t mod) { return seed ^ ((mod + 1) * 0xD1B54A32D192ED03ull); }
}  // namespace

void Model::adapter_forward(std::size_t mod, const Buf& x, Buf y, int N, bool /*train*/) {
  Acts& a = *acts_;
  const LoraModule& m = lora_mods_[mod];
  const int r = lora_.r;
  const Buf none;
  const std::size_t n = static_cast<std::size_t>(N);
  Buf A = be_.view(lora_params_, m.a_offset, static_cast<std::size_t>(r) * m.in);
  Buf B = be_.view(lora_params_, m.b_offset, static_cast<std::size_t>(m.out) * r);
  Buf xin = x;
  if (dropout_on_) {
    xin = be_.view(a.lora_x, 0, n * m.in);
    be_.dropout_scale(xin, x, N, m.in, lora_.dropout, adapter_seed(dropout_seed_, mod), dropout_row_, 1.0f);
  }
  Buf u = a.lora_u[mod];
  be_.matmul_forward(u, xin, A, none, N, m.in, r);
  be_.dropout_scale(u, u, N, r, 0.0f, 0, 0, lora_.scaling());  // scaled here: r values a row, not out
  Buf t = be_.view(a.lora_y, 0, n * m.out);
  be_.matmul_forward(t, u, B, none, N, r, m.out);
  if (m.out == m.fused_out) {
    be_.accumulate(y, t, n * m.out);
  } else {
    Buf cols = be_.view(y, m.out_offset, (n - 1) * m.fused_out + m.out);
    be_.copy_strided(cols, m.fused_out, t, m.out, N, m.out, true);
  }
}

void Model::adapter_backward(std::size_t mod, const Buf& dy, const Buf& x, Buf dx, int N) {
  Acts& a = *acts_;
  const LoraModule& m = lora_mods_[mod];
  const int r = lora_.r;
  const Buf none;
  const std::size_t n = static_cast<std::size_t>(N);
  Buf A = be_.view(lora_params_, m.a_offset, static_cast<std::size_t>(r) * m.in);
  Buf B = be_.view(lora_params_, m.b_offset, static_cast<std::size_t>(m.out) * r);
  Buf dA = be_.view(lora_grads_, m.a_offset, static_cast<std::size_t>(r) * m.in);
  Buf dB = be_.view(lora_grads_, m.b_offset, static_cast<std::size_t>(m.out) * r);
  Buf dt = dy;
  if (m.out != m.fused_out) {
    dt = be_.view(a.lora_y, 0, n * m.out);
    be_.copy_strided(dt, m.out, be_.view(dy, m.out_offset, (n - 1) * m.fused_out + m.out), m.fused_out, N, m.out,
                     false);
  }
  // t = u B^T with u already scaled: dB += dt^T u, du = dt B, then the scaling for dA and dx.
  Buf du = be_.view(a.lora_du, 0, n * r);
  be_.matmul_backward(du, dB, none, dt, a.lora_u[mod], B, N, r, m.out, false);
  be_.dropout_scale(du, du, N, r, 0.0f, 0, 0, lora_.scaling());
  if (!dropout_on_) {
    be_.matmul_backward(dx, dA, none, du, x, A, N, m.in, r, true);
    return;
  }
  const uint64_t seed = adapter_seed(dropout_seed_, mod);
  Buf xd = be_.view(a.lora_x, 0, n * m.in);  // the dropped input, recomputed from its mask
  be_.dropout_scale(xd, x, N, m.in, lora_.dropout, seed, dropout_row_, 1.0f);
  Buf dxd = be_.view(a.lora_dx, 0, n * m.in);
  be_.matmul_backward(dxd, dA, none, du, xd, A, N, m.in, r, false);
  be_.dropout_scale(dxd, dxd, N, m.in, lora_.dropout, seed, dropout_row_, 1.0f);
  be_.accumulate(dx, dxd, n * m.in);
}

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
  if (!grads_.ptr) fail("the base weights are frozen (LoRA): they have no gradients");
  std::vector<float> out(n_params_);
  be_.download(out.data(), grads_, n_params_);
  return out;
}

void Model::zero_grad() {
  if (grads_.ptr) be_.zero(grads_, n_params_);
  if (lora_grads_.ptr) be_.zero(lora_grads_, lora_n_);
}

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
  act_elems_ = 0;
  auto mk = [&](std::size_t n, Kind k = Kind::Activation) {
    Buf b = be_.alloc(n, k);
    a.all.push_back(b);
    act_elems_ += n;
    return b;
  };
  a.tokens = mk(N, Kind::Int32);
  a.targets = mk(N, Kind::Int32);
  a.encoded = mk(N * C);
  a.layers.resize(cfg_.n_layer);
  for (int l = 0; l < cfg_.n_layer; ++l) {
    auto& L = a.layers[l];
    if (recompute_ && l > 0) {
      // Recomputation: every layer works in layer 0's buffers and keeps only its own output.
      L = a.layers[0];
      L.res3 = mk(N * C);
      continue;
    }
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
  if (hidden_p_ > 0.0f) a.ddrop = mk(N * C);
  a.dln = mk(N * C);
  a.datt = mk(N * H * hd);
  a.dqkv = mk(N * QKV);
  if (llama) a.dqkv2 = mk(N * QKV);
  a.dfc = mk(N * (llama ? 2 * F : F));
  a.dfc_act = mk(N * F);
  if (has_lora()) {
    std::size_t max_in = 0, max_out = 0;
    for (const auto& m : lora_mods_) {
      max_in = std::max<std::size_t>(max_in, m.in);
      max_out = std::max<std::size_t>(max_out, m.out);
      a.lora_u.push_back(mk(N * lora_.r));
    }
    a.lora_y = mk(N * max_out);
    a.lora_du = mk(N * lora_.r);
    if (lora_.dropout > 0) {
      a.lora_x = mk(N * max_in);
      a.lora_dx = mk(N * max_in);
    }
  }
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

namespace {
// Each hidden-dropout site (0: embeddings, 2l+1: layer l's attention output, 2l+2: its MLP
// output) draws from its own stream, apart from the adapters' (adapter_seed).
uint64_t hidden_seed(uint64_t seed, int site) {
  return seed ^ ((static_cast<uint64_t>(site) + 1) * 0x9FB21C651E98DF25ull) ^ 0x5851F42D4C957F2Dull;
}
}  // namespace

void Model::set_hidden_dropout(float p) {
  if (!(p >= 0.0f && p < 1.0f)) fail("dropout probability {} is outside [0, 1)", p);
  if (p != hidden_p_) acts_B_ = acts_T_ = 0;  // a gradient buffer for the masks is laid out at the next pass
  hidden_p_ = p;
}

void Model::set_recompute(bool on) {
  if (on == recompute_) return;
  recompute_ = on;
  acts_B_ = acts_T_ = 0;  // the activation buffers are laid out again at the next pass
}

void Model::hidden_dropout(Buf out, const Buf& inp, int N, int site) {
  if (!hidden_on_) return;
  be_.dropout_scale(out, inp, N, cfg_.d_model, hidden_p_, hidden_seed(dropout_seed_, site), dropout_row_, 1.0f);
}

void Model::run_forward(int B, int T) {
  Acts& a = *acts_;
  const Dims d(cfg_, B, T);
  const int N = d.N, C = d.C, V = d.V;
  const bool llama = d.llama;
  const Buf none;
  be_.embedding_forward(a.encoded, a.tokens, P(0), llama ? none : P(1), B, T, C);
  hidden_dropout(a.encoded, a.encoded, N, 0);
  Buf residual = a.encoded;
  for (int l = 0; l < cfg_.n_layer; ++l) {
    forward_layer(l, B, T, residual);
    residual = a.layers[l].res3;
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

// One layer's forward pass from its input `residual` into a.layers[l] (its output is res3).
void Model::forward_layer(int l, int B, int T, const Buf& residual) {
  Acts& a = *acts_;
  const Dims d(cfg_, B, T);
  const int N = d.N, C = d.C, F = d.F, H = d.H, KV = d.KV, QKV = d.QKV, hd = d.hd;
  const bool llama = d.llama;
  const AttentionShape as{B, T, H, KV, hd};
  const Buf none;
  using S = LinearSite;
  auto lora = [&](int layer, S site, const Buf& x, Buf y) {
    if (const LoraModule* m = adapter(layer, site)) adapter_forward(static_cast<std::size_t>(m - lora_mods_.data()), x, y, N, true);
  };
  auto& L = a.layers[l];
  const std::size_t p = first_layer_ + l * per_layer_;
  if (!llama) {
    // ln_1.w, ln_1.b, c_attn.w, c_attn.b, c_proj.w, c_proj.b, ln_2.w, ln_2.b, c_fc.w, c_fc.b, mlp.c_proj.w, .b
    be_.layernorm_forward(L.ln1, L.ln1_mean, L.ln1_rstd, residual, P(p), P(p + 1), N, C, cfg_.norm_eps);
    be_.matmul_forward(L.qkv, L.ln1, P(p + 2), P(p + 3), N, C, QKV);
    lora(l, S::AttnQKV, L.ln1, L.qkv);
    be_.attention_forward(L.att, L.lse, L.qkv, as);
    be_.matmul_forward(L.attproj, L.att, P(p + 4), P(p + 5), N, C, C);
    lora(l, S::AttnOut, L.att, L.attproj);
    hidden_dropout(L.attproj, L.attproj, N, 2 * l + 1);
    be_.add_layernorm_forward(L.res2, L.ln2, L.ln2_mean, L.ln2_rstd, residual, L.attproj, P(p + 6), P(p + 7), N, C,
                              cfg_.norm_eps);
    if (adapter(l, S::MlpUp)) {  // the adapter adds to the pre-activation
      be_.matmul_forward(L.fc, L.ln2, P(p + 8), P(p + 9), N, C, F);
      lora(l, S::MlpUp, L.ln2, L.fc);
      be_.gelu_forward(L.fc_act, L.fc, static_cast<std::size_t>(N) * F);
    } else {
      be_.matmul_gelu_forward(L.fc_act, L.fc, L.ln2, P(p + 8), P(p + 9), N, C, F);
    }
    be_.matmul_forward(L.fcproj, L.fc_act, P(p + 10), P(p + 11), N, F, C);
    lora(l, S::MlpDown, L.fc_act, L.fcproj);
  } else {
    // input_layernorm, q, k, v, o, post_attention_layernorm, gate, up, down
    be_.rmsnorm_forward(L.ln1, L.ln1_rstd, residual, P(p), N, C, cfg_.norm_eps);
    Buf wqkv = be_.view(params_, layout_[p + 1].offset, static_cast<std::size_t>(QKV) * C);
    be_.matmul_forward(L.qkv_raw, L.ln1, wqkv, none, N, C, QKV);
    for (S site : {S::Q, S::K, S::V}) lora(l, site, L.ln1, L.qkv_raw);
    be_.rope_forward(L.qkv, L.qkv_raw, as, cfg_.rope_theta);
    be_.attention_forward(L.att, L.lse, L.qkv, as);
    be_.matmul_forward(L.attproj, L.att, P(p + 4), none, N, H * hd, C);
    lora(l, S::AttnOut, L.att, L.attproj);
    hidden_dropout(L.attproj, L.attproj, N, 2 * l + 1);
    be_.add(L.res2, residual, L.attproj, static_cast<std::size_t>(N) * C);
    be_.rmsnorm_forward(L.ln2, L.ln2_rstd, L.res2, P(p + 5), N, C, cfg_.norm_eps);
    Buf wgu = be_.view(params_, layout_[p + 6].offset, static_cast<std::size_t>(2) * F * C);
    be_.matmul_forward(L.fc, L.ln2, wgu, none, N, C, 2 * F);
    for (S site : {S::Gate, S::Up}) lora(l, site, L.ln2, L.fc);
    be_.swiglu_forward(L.fc_act, L.fc, N, F);
    be_.matmul_forward(L.fcproj, L.fc_act, P(p + 8), none, N, F, C);
    lora(l, S::MlpDown, L.fc_act, L.fcproj);
  }
  hidden_dropout(L.fcproj, L.fcproj, N, 2 * l + 2);
  be_.add(L.res3, L.res2, L.fcproj, static_cast<std::size_t>(N) * C);
}

void Model::run_backward(int B, int T) {
  Acts& a = *acts_;
  const Dims d(cfg_, B, T);
  const int N = d.N, C = d.C, F = d.F, V = d.V, hd = d.hd, H = d.H, KV = d.KV, QKV = d.QKV;
  const bool llama = d.llama;
  const AttentionShape as{B, T, H, KV, hd};
  const Buf none;
  const std::size_t NC = static_cast<std::size_t>(N) * C;
  using S = LinearSite;
  auto lora = [&](int l, S site, const Buf& dy, const Buf& x, Buf dx) {
    if (const LoraModule* m = adapter(l, site))
      adapter_backward(static_cast<std::size_t>(m - lora_mods_.data()), dy, x, dx, N);
  };

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
    // Under recomputation the shared buffers hold the last layer's activations after the forward
    // pass; every other layer is recomputed from its input first.
    if (recompute_ && l != cfg_.n_layer - 1) forward_layer(l, B, T, residual);
    // dres is dL/d(res3); res3 = res2 + dropout(fcproj), so dfcproj = dropout(dres) (the same
    // mask) and dres flows on to res2 unchanged.
    const Buf dmlp = hidden_on_ ? a.ddrop : a.dres;
    hidden_dropout(a.ddrop, a.dres, N, 2 * l + 2);
    if (!llama) {
      if (adapter(l, S::MlpDown)) {  // the adapter adds to the activation's gradient
        be_.matmul_backward(a.dfc_act, G(p + 10), G(p + 11), dmlp, L.fc_act, P(p + 10), N, F, C, false);
        lora(l, S::MlpDown, dmlp, L.fc_act, a.dfc_act);
        be_.gelu_backward(a.dfc, L.fc, a.dfc_act, static_cast<std::size_t>(N) * F);
      } else {
        be_.matmul_gelu_backward(a.dfc, G(p + 10), G(p + 11), dmlp, L.fc_act, P(p + 10), L.fc, a.dfc_act, N, F, C);
      }
      be_.matmul_backward(a.dln, G(p + 8), G(p + 9), a.dfc, L.ln2, P(p + 8), N, C, F, false);
      lora(l, S::MlpUp, a.dfc, L.ln2, a.dln);
      be_.layernorm_backward(a.dres, G(p + 6), G(p + 7), a.dln, L.res2, P(p + 6), L.ln2_mean, L.ln2_rstd, N, C);
      const Buf datt_out = hidden_on_ ? a.ddrop : a.dres;
      hidden_dropout(a.ddrop, a.dres, N, 2 * l + 1);
      be_.matmul_backward(a.datt, G(p + 4), G(p + 5), datt_out, L.att, P(p + 4), N, C, C, false);
      lora(l, S::AttnOut, datt_out, L.att, a.datt);
      be_.attention_backward(a.dqkv, a.datt, L.qkv, L.att, L.lse, as);
      be_.matmul_backward(a.dln, G(p + 2), G(p + 3), a.dqkv, L.ln1, P(p + 2), N, C, QKV, false);
      lora(l, S::AttnQKV, a.dqkv, L.ln1, a.dln);
      be_.layernorm_backward(a.dres, G(p), G(p + 1), a.dln, residual, P(p), L.ln1_mean, L.ln1_rstd, N, C);
    } else {
      be_.matmul_backward(a.dfc_act, G(p + 8), none, dmlp, L.fc_act, P(p + 8), N, F, C, false);
      lora(l, S::MlpDown, dmlp, L.fc_act, a.dfc_act);
      be_.swiglu_backward(a.dfc, L.fc, a.dfc_act, N, F);
      Buf wgu = be_.view(params_, layout_[p + 6].offset, static_cast<std::size_t>(2) * F * C);
      Buf dwgu = Gview(p + 6, static_cast<std::size_t>(2) * F * C);
      be_.matmul_backward(a.dln, dwgu, none, a.dfc, L.ln2, wgu, N, C, 2 * F, false);
      for (S site : {S::Gate, S::Up}) lora(l, site, a.dfc, L.ln2, a.dln);
      be_.rmsnorm_backward(a.dres, G(p + 5), a.dln, L.res2, P(p + 5), L.ln2_rstd, N, C);
      const Buf datt_out = hidden_on_ ? a.ddrop : a.dres;
      hidden_dropout(a.ddrop, a.dres, N, 2 * l + 1);
      be_.matmul_backward(a.datt, G(p + 4), none, datt_out, L.att, P(p + 4), N, H * hd, C, false);
      lora(l, S::AttnOut, datt_out, L.att, a.datt);
      be_.attention_backward(a.dqkv, a.datt, L.qkv, L.att, L.lse, as);
      be_.rope_backward(a.dqkv2, a.dqkv, as, cfg_.rope_theta);
      Buf wqkv = be_.view(params_, layout_[p + 1].offset, static_cast<std::size_t>(QKV) * C);
      Buf dwqkv = Gview(p + 1, static_cast<std::size_t>(QKV) * C);
      be_.matmul_backward(a.dln, dwqkv, none, a.dqkv2, L.ln1, wqkv, N, C, QKV, false);
      for (S site : {S::Q, S::K, S::V}) lora(l, site, a.dqkv2, L.ln1, a.dln);
      be_.rmsnorm_backward(a.dres, G(p), a.dln, residual, P(p), L.ln1_rstd, N, C);
    }
  }
  hidden_dropout(a.dres, a.dres, N, 0);  // encoded = dropout(embeddings)
  if (grads_.ptr) be_.embedding_backward(G(0), llama ? none : G(1), a.dres, a.tokens, B, T, C);
}

double Model::forward_backward(const int32_t* tokens, const int32_t* targets, int B, int T, float loss_scale) {
  ensure_acts(B, T);
  const std::size_t N = static_cast<std::size_t>(B) * T;
  be_.upload_ints(acts_->tokens, tokens, N);
  // Adapter dropout only in training passes; evaluation and generation see the deterministic model.
  dropout_on_ = has_lora() && lora_.dropout > 0.0f && targets && loss_scale != 0.0f;
  hidden_on_ = hidden_p_ > 0.0f && targets && loss_scale != 0.0f;
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
