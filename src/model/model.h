// The transformer, written once against backend::Backend: forward, backward and the buffers they
// need. GPT-2 and LLaMA differ only in a few switches (norm, MLP, positions, biases, tying).
#pragma once

#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "model/config.h"

namespace tsumugi::model {

class Model {
 public:
  Model(const ModelConfig& cfg, backend::Backend& be);
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
  // Optimizer buffers (allocated on first use).
  backend::Buf& params() { return params_; }
  backend::Buf& master() { return master_.ptr ? master_ : params_; }
  backend::Buf& grads() { return grads_; }
  std::vector<float> get_gradients();

 private:
  struct Acts;  // activations for one (B, T)
  void ensure_acts(int B, int T);
  backend::Buf P(std::size_t idx) const;   // parameter tensor by layout index
  backend::Buf G(std::size_t idx) const;   // its gradient
  void run_forward(int B, int T);
  void run_backward(int B, int T);

  ModelConfig cfg_;
  backend::Backend& be_;
  std::vector<ParamTensor> layout_;
  uint64_t n_params_ = 0;
  std::size_t per_layer_ = 0;  // layout entries per layer
  std::size_t first_layer_ = 0;
  backend::Buf params_, master_, grads_;
  Acts* acts_ = nullptr;
  int acts_B_ = 0, acts_T_ = 0;
  bool logits_are_grads_ = false;
};

}  // namespace tsumugi::model
