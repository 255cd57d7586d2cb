#include "model/lora.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <random>

#include "formats/safetensors.h"
#include "util/error.h"
#include "util/io.h"

namespace tsumugi::model {
namespace fs = std::filesystem;

std::vector<std::string> default_lora_targets(Family family) {
  if (family == Family::GPT2) return {"c_attn", "c_proj", "c_fc"};
  return {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
}

namespace {

struct Candidate {
  std::string name;  // module path
  LinearSite site;
  int in, out, out_offset, fused_out;
};

std::vector<Candidate> candidates(const ModelConfig& c, int layer) {
  const int C = c.d_model, F = c.d_ff, hd = c.head_dim(), Q = c.n_head * hd, K = c.n_kv_head * hd;
  if (c.family == Family::GPT2) {
    const std::string p = fmt::format("transformer.h.{}.", layer);
    return {{p + "attn.c_attn", LinearSite::AttnQKV, C, 3 * C, 0, 3 * C},
            {p + "attn.c_proj", LinearSite::AttnOut, C, C, 0, C},
            {p + "mlp.c_fc", LinearSite::MlpUp, C, F, 0, F},
            {p + "mlp.c_proj", LinearSite::MlpDown, F, C, 0, C}};
  }
  const std::string p = fmt::format("model.layers.{}.", layer);
  return {{p + "self_attn.q_proj", LinearSite::Q, C, Q, 0, Q + 2 * K},
          {p + "self_attn.k_proj", LinearSite::K, C, K, Q, Q + 2 * K},
          {p + "self_attn.v_proj", LinearSite::V, C, K, Q + K, Q + 2 * K},
          {p + "self_attn.o_proj", LinearSite::AttnOut, Q, C, 0, C},
          {p + "mlp.gate_proj", LinearSite::Gate, C, F, 0, 2 * F},
          {p + "mlp.up_proj", LinearSite::Up, C, F, F, 2 * F},
          {p + "mlp.down_proj", LinearSite::MlpDown, F, C, 0, C}};
}

bool matches(const std::string& module, const std::string& target) {
  if (module == target) return true;
  return module.size() > target.size() && module.compare(module.size() - target.size(), target.size(), target) == 0 &&
         module[module.size() - target.size() - 1] == '.';
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

}  // namespace

std::vector<LoraModule> lora_modules(const ModelConfig& cfg, const LoraConfig& lora) {
  if (lora.r <= 0) return {};
  const std::vector<std::string> targets =
      lora.target_modules.empty() ? default_lora_targets(cfg.family) : lora.target_modules;
  std::vector<bool> used(targets.size(), false);
  std::vector<LoraModule> out;
  uint64_t offset = 0;
  for (int l = 0; l < cfg.n_layer; ++l) {
    for (const auto& c : candidates(cfg, l)) {
      bool hit = false;
      for (std::size_t i = 0; i < targets.size(); ++i)
        if (matches(c.name, targets[i])) hit = used[i] = true;
      if (!hit) continue;
      LoraModule m;
      m.module = c.name;
      m.layer = l;
      m.site = c.site;
      m.in = c.in;
      m.out = c.out;
      m.out_offset = c.out_offset;
      m.fused_out = c.fused_out;
      m.a_offset = offset;
      offset += static_cast<uint64_t>(lora.r) * c.in;
      m.b_offset = offset;
      offset += static_cast<uint64_t>(c.out) * lora.r;
      out.push_back(std::move(m));
    }
  }
  for (std::size_t i = 0; i < targets.size(); ++i)
    if (!used[i])
      fail("lora.target_modules: '{}' matches no linear layer of this {} model (adaptable: {})", targets[i],
           cfg.family_name(), join(default_lora_targets(cfg.family)));
  return out;
}

uint64_t lora_num_parameters(const std::vector<LoraModule>& mods, int r) {
  uint64_t n = 0;
  for (const auto& m : mods) n += static_cast<uint64_t>(r) * (m.in + m.out);
  return n;
}

std::vector<ParamTensor> lora_layout(const std::vector<LoraModule>& mods, int r) {
  std::vector<ParamTensor> out;
  for (const auto& m : mods) {
    ParamTensor a, b;
    a.name = "base_model.model." + m.module + ".lora_A.weight";
    a.shape = {r, m.in};
    a.offset = m.a_offset;
    a.size = static_cast<uint64_t>(r) * m.in;
    a.decay = true;
    b.name = "base_model.model." + m.module + ".lora_B.weight";
    b.shape = {m.out, r};
    b.offset = m.b_offset;
    b.size = static_cast<uint64_t>(m.out) * r;
    b.decay = true;
    out.push_back(std::move(a));
    out.push_back(std::move(b));
  }
  return out;
}

std::vector<float> lora_init(const std::vector<LoraModule>& mods, int r, uint64_t seed) {
  std::vector<float> w(lora_num_parameters(mods, r), 0.0f);
  std::mt19937_64 rng(seed ^ 0x4C6F5241ull);  // "LoRA": a stream apart from the base model's init
  for (const auto& m : mods) {
    // kaiming_uniform_(a=sqrt(5)) as PEFT: bound = sqrt(6 / ((1 + 5) * fan_in)) = 1/sqrt(fan_in)
    const float bound = 1.0f / std::sqrt(static_cast<float>(m.in));
    std::uniform_real_distribution<float> u(-bound, bound);
    for (uint64_t i = 0; i < static_cast<uint64_t>(r) * m.in; ++i) w[m.a_offset + i] = u(rng);
  }
  return w;
}

namespace {
// Layout index of the weight tensor a module adapts (its rows start at the module's out_offset).
const ParamTensor& target_weight(const std::vector<ParamTensor>& layout, const LoraModule& m) {
  const std::string name = m.module + ".weight";
  for (const auto& p : layout)
    if (p.name == name) return p;
  fail("internal: no weight {} for adapter", name);
}
}  // namespace

void merge_lora_matrix(float* W, const float* A, const float* B, int64_t out, int64_t in, int r, double scaling) {
  // Rows are independent, so they split over threads; within a row the rank loop runs outermost
  // over a row of double sums, which keeps the inner loop contiguous (A's rows) for large layers.
#pragma omp parallel
  {
    std::vector<double> acc(static_cast<std::size_t>(in));
#pragma omp for schedule(static)
    for (int64_t o = 0; o < out; ++o) {
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int k = 0; k < r; ++k) {
        const double b = B[o * r + k];
        const float* a = A + static_cast<int64_t>(k) * in;
        for (int64_t i = 0; i < in; ++i) acc[i] += b * a[i];
      }
      float* w = W + o * in;
      for (int64_t i = 0; i < in; ++i) w[i] += static_cast<float>(scaling * acc[i]);
    }
  }
}

void merge_lora(const ModelConfig& cfg, const LoraConfig& lora, const std::vector<float>& adapter,
                std::vector<float>& weights) {
  const auto mods = lora_modules(cfg, lora);
  if (adapter.size() != lora_num_parameters(mods, lora.r))
    fail("adapter has {} values; r={} on these modules needs {}", adapter.size(), lora.r,
         lora_num_parameters(mods, lora.r));
  const auto layout = parameter_layout(cfg);
  for (const auto& m : mods) {
    const ParamTensor& p = target_weight(layout, m);
    merge_lora_matrix(weights.data() + p.offset, adapter.data() + m.a_offset, adapter.data() + m.b_offset, m.out, m.in,
                      lora.r, lora.scaling());
  }
}

namespace {
// A float as the double its shortest decimal spells (0.05f -> 0.05, not 0.05000000074505806).
double shortest(float x) { return std::stod(fmt::format("{}", x)); }
}  // namespace

void save_peft_adapter(const std::string& dir, const ModelConfig& cfg, const LoraConfig& lora,
                       const std::vector<float>& adapter, const std::string& base_model) {
  const auto mods = lora_modules(cfg, lora);
  if (adapter.size() != lora_num_parameters(mods, lora.r)) fail("internal: adapter size mismatch");
  std::vector<formats::TensorToWrite> tensors;
  for (const auto& p : lora_layout(mods, lora.r)) {
    formats::TensorToWrite t;
    t.name = p.name;
    t.dtype = formats::DType::F32;
    t.shape = p.shape;
    t.data = adapter.data() + p.offset;
    tensors.push_back(std::move(t));
  }
  fs::create_directories(dir);
  formats::write_safetensors((fs::path(dir) / "adapter_model.safetensors").string(), tensors, {{"format", "pt"}});
  const std::vector<std::string> targets =
      lora.target_modules.empty() ? default_lora_targets(cfg.family) : lora.target_modules;
  nlohmann::json j = {{"peft_type", "LORA"},
                      {"task_type", "CAUSAL_LM"},
                      {"r", lora.r},
                      {"lora_alpha", shortest(lora.alpha)},
                      {"lora_dropout", shortest(lora.dropout)},
                      {"target_modules", targets},
                      {"fan_in_fan_out", cfg.family == Family::GPT2},
                      {"bias", "none"},
                      {"base_model_name_or_path", base_model},
                      {"inference_mode", true},
                      {"modules_to_save", nullptr},
                      {"init_lora_weights", true},
                      {"use_rslora", false},
                      {"use_dora", false}};
  write_file_atomic((fs::path(dir) / "adapter_config.json").string(), j.dump(2) + "\n");
}

LoadedAdapter load_peft_adapter(const std::string& dir, const ModelConfig& cfg) {
  const std::string cpath = (fs::path(dir) / "adapter_config.json").string();
  const std::string wpath = (fs::path(dir) / "adapter_model.safetensors").string();
  if (!fs::exists(cpath)) fail("{}: not a PEFT adapter directory (no adapter_config.json)", dir);
  if (!fs::exists(wpath)) fail("{}: missing adapter_model.safetensors", dir);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(cpath));
  } catch (const nlohmann::json::parse_error& e) {
    fail("{}: invalid JSON: {}", cpath, e.what());
  }
  auto field = [&](const char* k) -> const nlohmann::json& {
    if (!j.contains(k)) fail("{}: missing field '{}'", cpath, k);
    return j[k];
  };
  if (field("peft_type") != "LORA") fail("{}: peft_type is {}, only LORA is supported", cpath, j["peft_type"].dump());
  LoadedAdapter out;
  try {
    out.lora.r = field("r").get<int>();
    out.lora.alpha = field("lora_alpha").get<float>();
    out.lora.dropout = j.value("lora_dropout", 0.0f);
    const auto& t = field("target_modules");
    if (t.is_string()) out.lora.target_modules = {t.get<std::string>()};
    else out.lora.target_modules = t.get<std::vector<std::string>>();
    out.base_model = j.value("base_model_name_or_path", std::string());
  } catch (const nlohmann::json::exception& e) {
    fail("{}: {}", cpath, e.what());
  }
  if (out.lora.r <= 0) fail("{}: r must be > 0 (got {})", cpath, out.lora.r);
  if (j.value("bias", std::string("none")) != "none") fail("{}: only bias \"none\" is supported", cpath);
  if (j.value("use_dora", false) || j.value("use_rslora", false))
    fail("{}: DoRA / rsLoRA adapters are not supported", cpath);
  const auto mods = lora_modules(cfg, out.lora);
  formats::SafetensorsFile f(wpath);
  out.weights.assign(lora_num_parameters(mods, out.lora.r), 0.0f);
  for (const auto& p : lora_layout(mods, out.lora.r)) {
    // PEFT saves without the adapter name; some tools keep ".default".
    std::string name = p.name;
    if (!f.contains(name)) {
      std::string alt = name;
      alt.insert(alt.size() - std::string(".weight").size(), ".default");
      if (f.contains(alt)) name = alt;
      else fail("{}: tensor '{}' is missing", wpath, p.name);
    }
    const auto* t = f.find(name);
    if (t->shape != p.shape)
      fail("{}: tensor '{}' has shape [{}], r={} on this model needs [{}, {}]", wpath, name,
           fmt::join(t->shape, ", "), out.lora.r, p.shape[0], p.shape[1]);
    auto v = f.to_float(name);
    std::copy(v.begin(), v.end(), out.weights.begin() + static_cast<std::ptrdiff_t>(p.offset));
  }
  return out;
}

}  // namespace tsumugi::model
