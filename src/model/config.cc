#include "model/config.h"

#include <fmt/format.h>

#include <map>

#include "util/error.h"

namespace tsumugi::model {

int pad_vocab(int vocab, int multiple) { return (vocab + multiple - 1) / multiple * multiple; }

void ModelConfig::validate() const {
  auto need = [](bool ok, const std::string& what) {
    if (!ok) throw Error("model config: " + what);
  };
  need(n_layer >= 1, fmt::format("model.n_layer must be >= 1 (got {})", n_layer));
  need(n_head >= 1, fmt::format("model.n_head must be >= 1 (got {})", n_head));
  need(d_model >= 1, fmt::format("model.d_model must be >= 1 (got {})", d_model));
  need(d_model % n_head == 0,
       fmt::format("model.n_head ({}) must divide model.d_model ({})", n_head, d_model));
  need(head_dim() % 2 == 0 || family == Family::GPT2,
       fmt::format("LLaMA head size d_model/n_head = {} must be even for rotary embeddings", head_dim()));
  need(n_kv_head >= 1 && n_head % n_kv_head == 0,
       fmt::format("model.n_kv_head ({}) must divide model.n_head ({})", n_kv_head, n_head));
  need(family == Family::LLaMA || n_kv_head == n_head,
       "grouped-query attention (n_kv_head != n_head) is a LLaMA-family option");
  need(d_ff >= 1, fmt::format("model.d_ff must be >= 1 (got {})", d_ff));
  need(vocab_size >= 1, fmt::format("model.vocab_size must be >= 1 (got {})", vocab_size));
  need(max_seq >= 1, fmt::format("model.max_seq must be >= 1 (got {})", max_seq));
  need(norm_eps > 0, "model.norm_eps must be > 0");
  need(rope_theta > 0, "model.rope_theta must be > 0");
  need(family == Family::LLaMA || tie_embeddings, "GPT-2 family models tie input and output embeddings");
}

std::vector<ParamTensor> parameter_layout(const ModelConfig& c) {
  std::vector<ParamTensor> out;
  uint64_t offset = 0;
  auto add = [&](std::string name, std::vector<int64_t> shape, bool decay, bool transposed = false) {
    ParamTensor p;
    p.name = std::move(name);
    p.shape = std::move(shape);
    p.size = 1;
    for (auto d : p.shape) p.size *= static_cast<uint64_t>(d);
    p.offset = offset;
    p.decay = decay;
    p.hf_transposed = transposed;
    offset += p.size;
    out.push_back(std::move(p));
  };
  const int64_t C = c.d_model, V = c.vocab_size, F = c.d_ff;
  if (c.family == Family::GPT2) {
    add("transformer.wte.weight", {V, C}, true);
    add("transformer.wpe.weight", {c.max_seq, C}, true);
    for (int l = 0; l < c.n_layer; ++l) {
      std::string p = fmt::format("transformer.h.{}.", l);
      add(p + "ln_1.weight", {C}, false);
      add(p + "ln_1.bias", {C}, false);
      add(p + "attn.c_attn.weight", {3 * C, C}, true, true);
      add(p + "attn.c_attn.bias", {3 * C}, false);
      add(p + "attn.c_proj.weight", {C, C}, true, true);
      add(p + "attn.c_proj.bias", {C}, false);
      add(p + "ln_2.weight", {C}, false);
      add(p + "ln_2.bias", {C}, false);
      add(p + "mlp.c_fc.weight", {F, C}, true, true);
      add(p + "mlp.c_fc.bias", {F}, false);
      add(p + "mlp.c_proj.weight", {C, F}, true, true);
      add(p + "mlp.c_proj.bias", {C}, false);
    }
    add("transformer.ln_f.weight", {C}, false);
    add("transformer.ln_f.bias", {C}, false);
  } else {
    const int64_t hd = c.head_dim(), Q = c.n_head * hd, K = c.n_kv_head * hd;
    add("model.embed_tokens.weight", {V, C}, true);
    for (int l = 0; l < c.n_layer; ++l) {
      std::string p = fmt::format("model.layers.{}.", l);
      add(p + "input_layernorm.weight", {C}, false);
      // q, k, v adjacent so one matmul computes all three; gate and up likewise.
      add(p + "self_attn.q_proj.weight", {Q, C}, true);
      add(p + "self_attn.k_proj.weight", {K, C}, true);
      add(p + "self_attn.v_proj.weight", {K, C}, true);
      add(p + "self_attn.o_proj.weight", {C, Q}, true);
      add(p + "post_attention_layernorm.weight", {C}, false);
      add(p + "mlp.gate_proj.weight", {F, C}, true);
      add(p + "mlp.up_proj.weight", {F, C}, true);
      add(p + "mlp.down_proj.weight", {C, F}, true);
    }
    add("model.norm.weight", {C}, false);
    if (!c.tie_embeddings) add("lm_head.weight", {V, C}, true);
  }
  return out;
}

uint64_t ModelConfig::num_parameters() const {
  uint64_t n = 0;
  for (const auto& p : parameter_layout(*this)) n += p.size;
  return n;
}

std::string ModelConfig::summary() const {
  if (family == Family::GPT2)
    return fmt::format("gpt2: {} layers, d_model {}, {} heads, d_ff {}, vocab {}, context {}, {:.2f}M parameters",
                       n_layer, d_model, n_head, d_ff, vocab_size, max_seq, num_parameters() / 1e6);
  return fmt::format(
      "llama: {} layers, d_model {}, {} heads ({} kv), d_ff {}, vocab {}, context {}, rope theta {}, {} embeddings, "
      "{:.2f}M parameters",
      n_layer, d_model, n_head, n_kv_head, d_ff, vocab_size, max_seq, rope_theta,
      tie_embeddings ? "tied" : "untied", num_parameters() / 1e6);
}

namespace {

ModelConfig gpt2(int L, int H, int C, int V, int T) {
  ModelConfig c;
  c.family = Family::GPT2;
  c.n_layer = L;
  c.n_head = c.n_kv_head = H;
  c.d_model = C;
  c.d_ff = 4 * C;
  c.vocab_size = V;
  c.max_seq = T;
  c.tie_embeddings = true;
  return c;
}

ModelConfig llama(int L, int H, int KV, int C, int F, int V, int T, float theta, bool tied) {
  ModelConfig c;
  c.family = Family::LLaMA;
  c.n_layer = L;
  c.n_head = H;
  c.n_kv_head = KV;
  c.d_model = C;
  c.d_ff = F;
  c.vocab_size = V;
  c.max_seq = T;
  c.rope_theta = theta;
  c.norm_eps = 1e-5f;
  c.tie_embeddings = tied;
  return c;
}

const std::map<std::string, ModelConfig>& presets() {
  // vocab_size 0 means "the tokenizer's vocabulary, padded to 128" (filled in by the trainer).
  static const std::map<std::string, ModelConfig> p = {
      // GPT-2 family
      {"gpt2-tiny", gpt2(4, 4, 128, 0, 256)},
      {"gpt2-30m", gpt2(6, 6, 384, 0, 1024)},
      {"gpt2-124m", gpt2(12, 12, 768, 50304, 1024)},
      {"llm-jp-1.3b", gpt2(24, 16, 2048, 50688, 2048)},
      {"llm-jp-13b-v1.0", gpt2(40, 40, 5120, 50688, 2048)},
      // LLaMA family (LLM-jp-3 shapes)
      {"llama-tiny", llama(4, 4, 2, 128, 352, 0, 256, 10000.0f, false)},
      {"llm-jp-3-1.8b", llama(24, 16, 16, 2048, 7168, 99584, 4096, 10000.0f, false)},
      {"llm-jp-3-3.7b", llama(28, 24, 24, 3072, 8192, 99584, 4096, 10000.0f, false)},
      {"llm-jp-3-13b", llama(40, 40, 40, 5120, 13824, 99584, 4096, 10000.0f, false)},
  };
  return p;
}

}  // namespace

ModelConfig model_preset(const std::string& name) {
  auto it = presets().find(name);
  if (it == presets().end()) {
    std::string names;
    for (auto& [k, v] : presets()) names += (names.empty() ? "" : ", ") + k;
    fail("unknown model preset '{}' (known: {})", name, names);
  }
  return it->second;
}

std::vector<std::string> model_preset_names() {
  std::vector<std::string> out;
  for (auto& [k, v] : presets()) out.push_back(k);
  return out;
}

nlohmann::json to_hf_config(const ModelConfig& c, int bos_id, int eos_id) {
  nlohmann::json j;
  if (c.family == Family::GPT2) {
    j = {{"architectures", {"GPT2LMHeadModel"}},
         {"model_type", "gpt2"},
         {"n_layer", c.n_layer},
         {"n_head", c.n_head},
         {"n_embd", c.d_model},
         {"n_inner", c.d_ff},
         {"n_positions", c.max_seq},
         {"n_ctx", c.max_seq},
         {"vocab_size", c.vocab_size},
         {"layer_norm_epsilon", c.norm_eps},
         {"activation_function", "gelu_new"},
         {"resid_pdrop", 0.0},
         {"embd_pdrop", 0.0},
         {"attn_pdrop", 0.0},
         {"scale_attn_weights", true},
         {"tie_word_embeddings", true}};
  } else {
    j = {{"architectures", {"LlamaForCausalLM"}},
         {"model_type", "llama"},
         {"num_hidden_layers", c.n_layer},
         {"num_attention_heads", c.n_head},
         {"num_key_value_heads", c.n_kv_head},
         {"hidden_size", c.d_model},
         {"intermediate_size", c.d_ff},
         {"max_position_embeddings", c.max_seq},
         {"vocab_size", c.vocab_size},
         {"rms_norm_eps", c.norm_eps},
         {"rope_theta", c.rope_theta},
         {"hidden_act", "silu"},
         {"attention_bias", false},
         {"mlp_bias", false},
         {"tie_word_embeddings", c.tie_embeddings}};
  }
  j["bos_token_id"] = bos_id;
  j["eos_token_id"] = eos_id;
  j["torch_dtype"] = "float32";
  return j;
}

ModelConfig from_hf_config(const nlohmann::json& j, const std::string& file) {
  auto get_int = [&](const char* key) -> int {
    if (!j.contains(key) || !j[key].is_number_integer()) fail("{}: missing integer field '{}'", file, key);
    return j[key].get<int>();
  };
  std::string type = j.value("model_type", "");
  ModelConfig c;
  if (type == "gpt2") {
    c.family = Family::GPT2;
    c.n_layer = get_int("n_layer");
    c.n_head = c.n_kv_head = get_int("n_head");
    c.d_model = get_int("n_embd");
    c.d_ff = j.contains("n_inner") && j["n_inner"].is_number_integer() ? j["n_inner"].get<int>() : 4 * c.d_model;
    c.max_seq = get_int("n_positions");
    c.vocab_size = get_int("vocab_size");
    c.norm_eps = j.value("layer_norm_epsilon", 1e-5f);
    c.tie_embeddings = true;
    std::string act = j.value("activation_function", "gelu_new");
    if (act != "gelu_new" && act != "gelu_pytorch_tanh")
      fail("{}: activation_function '{}' is not supported (gelu_new)", file, act);
  } else if (type == "llama") {
    c.family = Family::LLaMA;
    c.n_layer = get_int("num_hidden_layers");
    c.n_head = get_int("num_attention_heads");
    c.n_kv_head = j.contains("num_key_value_heads") ? get_int("num_key_value_heads") : c.n_head;
    c.d_model = get_int("hidden_size");
    c.d_ff = get_int("intermediate_size");
    c.max_seq = get_int("max_position_embeddings");
    c.vocab_size = get_int("vocab_size");
    c.norm_eps = j.value("rms_norm_eps", 1e-6f);
    c.rope_theta = j.value("rope_theta", 10000.0f);
    c.tie_embeddings = j.value("tie_word_embeddings", false);
  } else {
    fail("{}: model_type '{}' is not supported (gpt2 or llama)", file, type);
  }
  try {
    c.validate();
  } catch (const Error& e) {
    fail("{}: {}", file, e.what());
  }
  return c;
}

}  // namespace tsumugi::model
