// The transformer, written once against backend::Backend: forward, backward and the buffers they
// need. GPT-2 and LLaMA differ only in a few switches (norm, MLP, positions, biases, tying).
#pragma once

#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "model/config.h"
#include "model/lora.h"

namespace tsumugi::model {

class Model {
 public:
  // With lora.r > 0 the model carries LoRA adapters (initialised by init_lora) and the base weights
  // are frozen: no gradient buffer exists for them and backward computes adapter gradients only.
  Model(const ModelConfig& cfg, backend::Backend& be, const LoraConfig& lora = {});
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const ModelConfig& config() const { return cfg_; }
  const std::vector<ParamTensor>& layout() const { return layout_; }
  uint64_t num_parameters() const { return n_params_; }
  backend::Backend& backend() { return be_; }

  // GPT-2-style initialisation: N(0, 0.02) weights, residual output projections scaled by
  // 1/sqrt(2 n_layer), zero biases, unit norm weights. Deterministic for a seed.
  void init_weights(uint64_t seed);
  // All parameters as fp32 in layout order (tsumugi orientation), to and from the host.
  std::vector<float> get_parameters();
  void set_parameters(const std::vector<float>& host);

  // Forward pass over tokens [B*T] (host). With targets (negative = ignored), also the loss:
  // returns the sum of per-token losses and, when `loss_scale` != 0, runs the backward pass with
  // dL/dloss_i = loss_scale, accumulating into the gradients (call zero_grad() per optimizer step).
  double forward_backward(const int32_t* tokens, const int32_t* targets, int B, int T, float loss_scale);
  // Forward only; returns the loss sum (targets given) and leaves logits readable.
  double forward(const int32_t* tokens, const int32_t* targets, int B, int T);
  // Logits [B*T, vocab] of the last forward() without targets... or with: fp32 copy to the host.
  std::vector<float> logits_row(int row);
  std::vector<float> all_logits();

  void zero_grad();
  backend::Buf& params() { return params_; }
  backend::Buf& master() { return master_.ptr ? master_ : params_; }
  backend::Buf& grads() { return grads_; }  // empty when the base is frozen (LoRA)
  std::vector<float> get_gradients();

  // ---- LoRA
  bool has_lora() const { return lora_.r > 0; }
  const LoraConfig& lora() const { return lora_; }
  const std::vector<LoraModule>& lora_modules() const { return lora_mods_; }
  void init_lora(uint64_t seed);
  std::vector<float> get_lora();
  void set_lora(const std::vector<float>& host);
  std::vector<float> get_lora_gradients();
  // Dropout on the adapters' input during training passes (forward_backward with a loss scale):
  // the mask of row n of a micro-batch is keyed by (seed, first_row + n), so the caller makes it
  // depend on the global sequence index, not on how a batch is split across ranks.
  void set_dropout_seed(uint64_t seed, uint64_t first_row) {
    dropout_seed_ = seed;
    dropout_row_ = first_row;
  }

  // ---- training-time options (train.dropout, train.recompute)
  // Hidden dropout with probability p, as GPT-2's embd_pdrop / resid_pdrop and Megatron's
  // hidden_dropout: on the embeddings and on the attention and MLP outputs before each residual
  // add, in training passes only (forward_backward with a loss scale). Masks are keyed like the
  // adapters' (set_dropout_seed), so they do not depend on how a batch is split. Attention
  // probabilities are not dropped (the attention kernels recompute them in the backward pass).
  void set_hidden_dropout(float p);
  // Activation recomputation: only each layer's output (the residual stream) is kept through the
  // forward pass; the backward pass recomputes a layer's other activations just before it needs
  // them, so one layer's buffers serve every layer. Gradients are bit-identical either way.
  void set_recompute(bool on);
  // Activation elements allocated for the current (B, T) (0 before the first pass).
  std::size_t activation_elements() const { return act_elems_; }

  // ---- what the optimizer updates: the adapters under LoRA, else every base parameter
  std::size_t num_trainable() const { return has_lora() ? lora_n_ : n_params_; }
  const std::vector<ParamTensor>& trainable_layout() const { return has_lora() ? lora_layout_ : layout_; }
  backend::Buf& trainable_params() { return has_lora() ? lora_params_ : params_; }
  backend::Buf& trainable_master() {
    if (has_lora()) return lora_master_.ptr ? lora_master_ : lora_params_;
    return master();
  }
  backend::Buf& trainable_grads() { return has_lora() ? lora_grads_ : grads_; }
  std::vector<float> get_trainable() { return has_lora() ? get_lora() : get_parameters(); }
  void set_trainable(const std::vector<float>& host) { has_lora() ? set_lora(host) : set_parameters(host); }

 private:
  struct Acts;  // activations for one (B, T)
  void ensure_acts(int B, int T);
  backend::Buf P(std::size_t idx) const;   // parameter tensor by layout index
  backend::Buf G(std::size_t idx) const;   // its gradient (empty when frozen)
  backend::Buf Gview(std::size_t idx, std::size_t count) const;  // a run of tensors' gradients from idx
  // The adapters of one layer at one site (forward order); nullptr when not adapted.
  const LoraModule* adapter(int layer, LinearSite site) const;
  // y += scaling * B A dropout(x) for one adapter; y has rows m.fused_out wide.
  void adapter_forward(std::size_t mod, const backend::Buf& x, backend::Buf y, int N, bool train);
  // dx += (the adapter's share of dL/dx); dA, dB accumulate. dy has rows m.fused_out wide.
  void adapter_backward(std::size_t mod, const backend::Buf& dy, const backend::Buf& x, backend::Buf dx, int N);
  bool dropout_on_ = false;
  void run_forward(int B, int T);
  void forward_layer(int l, int B, int T, const backend::Buf& residual);
  void hidden_dropout(backend::Buf out, const backend::Buf& inp, int N, int site);
  float hidden_p_ = 0.0f;
  bool hidden_on_ = false, recompute_ = false;
  std::size_t act_elems_ = 0;
  void run_backward(int B, int T);

  ModelConfig cfg_;
  backend::Backend& be_;
  std::vector<ParamTensor> layout_;
  uint64_t n_params_ = 0;
  std::size_t per_layer_ = 0;  // layout entries per layer
  std::size_t first_layer_ = 0;
  backend::Buf params_, master_, grads_;
  LoraConfig lora_;
  std::vector<LoraModule> lora_mods_;
  std::vector<ParamTensor> lora_layout_;
  std::size_t lora_n_ = 0;
  backend::Buf lora_params_, lora_master_, lora_grads_;
  uint64_t dropout_seed_ = 0, dropout_row_ = 0;
  Acts* acts_ = nullptr;
  int acts_B_ = 0, acts_T_ = 0;
  bool logits_are_grads_ = false;
};

}  // namespace tsumugi::model
