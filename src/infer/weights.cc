#include "infer/weights.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "model/lora.h"
#include "util/config_file.h"
#include "util/error.h"
#include "util/io.h"

namespace tsumugi::infer {

namespace fs = std::filesystem;
using formats::DType;
using formats::TensorView;

namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out;
  for (auto d : s) out += (out.empty() ? "" : ", ") + std::to_string(d);
  return "[" + out + "]";
}

std::optional<WType> stored_wtype(DType t) {
  if (t == DType::F32) return WType::F32;
  if (t == DType::BF16) return WType::BF16;
  if (t == DType::F16) return WType::F16;
  return std::nullopt;
}

// LoRA deltas by base weight name: W += scale * B A, in tsumugi orientation [out, in].
struct Adapter {
  struct Pair {
    std::vector<float> a, b;  // A [r, in], B [out, r]
    int64_t in = 0, out = 0;
    bool used = false;
  };
  float scale = 0;
  int r = 0;
  std::map<std::string, Pair> by_weight;
  std::string file;
};

Adapter load_adapter(const std::string& dir) {
  Adapter ad;
  const fs::path cfgp = fs::path(dir) / "adapter_config.json";
  if (!fs::exists(cfgp)) fail("{}: missing (not a PEFT LoRA adapter directory)", cfgp.string());
  const nlohmann::json j = parse_config_file(cfgp.string());
  if (!j.contains("r") || !j["r"].is_number_integer() || j["r"].get<int>() <= 0)
    fail("{}: \"r\" must be a positive integer", cfgp.string());
  if (!j.contains("lora_alpha") || !j["lora_alpha"].is_number())
    fail("{}: \"lora_alpha\" must be a number", cfgp.string());
  if (j.contains("peft_type") && j["peft_type"] != "LORA")
    fail("{}: peft_type {} is not LORA", cfgp.string(), j["peft_type"].dump());
  ad.r = j["r"].get<int>();
  const double alpha = j["lora_alpha"].get<double>();
  const bool rs = j.value("use_rslora", false);
  ad.scale = static_cast<float>(rs ? alpha / std::sqrt(static_cast<double>(ad.r)) : alpha / ad.r);
  const fs::path wp = fs::path(dir) / "adapter_model.safetensors";
  if (!fs::exists(wp)) fail("{}: missing (adapters are read from safetensors only)", wp.string());
  ad.file = wp.string();
  formats::SafetensorsFile f(wp.string());
  const std::string prefix = "base_model.model.";
  for (const auto& t : f.tensors()) {
    std::string n = t.name;
    if (n.rfind(prefix, 0) == 0) n = n.substr(prefix.size());
    const std::string sa = ".lora_A.weight", sb = ".lora_B.weight";
    bool is_a = n.size() > sa.size() && n.compare(n.size() - sa.size(), sa.size(), sa) == 0;
    bool is_b = n.size() > sb.size() && n.compare(n.size() - sb.size(), sb.size(), sb) == 0;
    if (!is_a && !is_b) fail("{}: tensor '{}' is not a LoRA A/B weight (only LoRA adapters are supported)", wp.string(), t.name);
    if (t.shape.size() != 2) fail("{}: tensor '{}' has shape {}, 2 dimensions expected", wp.string(), t.name, shape_str(t.shape));
    const std::string weight = n.substr(0, n.size() - sa.size()) + ".weight";
    Adapter::Pair& p = ad.by_weight[weight];
    if (is_a) {
      if (t.shape[0] != ad.r) fail("{}: tensor '{}' has shape {}, rank r = {} expected first", wp.string(), t.name, shape_str(t.shape), ad.r);
      p.a = f.to_float(t.name);
      p.in = t.shape[1];
    } else {
      if (t.shape[1] != ad.r) fail("{}: tensor '{}' has shape {}, rank r = {} expected second", wp.string(), t.name, shape_str(t.shape), ad.r);
      p.b = f.to_float(t.name);
      p.out = t.shape[0];
    }
  }
  for (auto& [w, p] : ad.by_weight)
    if (p.a.empty() || p.b.empty()) fail("{}: '{}' has only one of lora_A / lora_B", wp.string(), w);
  return ad;
}

// Copies of the mapped matrices are anonymous memory, which (without swap) cannot be dropped and
// re-read as file pages can: only when the files take at most half of the memory available.
bool fits_in_memory(const formats::SafetensorsDir& src) {
  uint64_t bytes = 0;
  for (const auto& f : src.files()) bytes += f.file_bytes();
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  uint64_t kib = 0;
  while (meminfo >> key >> kib) {
    if (key == "MemAvailable:") return bytes <= kib * 1024 / 2;
    meminfo.ignore(64, '\n');
  }
  return false;
}

class Loader {
 public:
  Loader(const fs::path& dir, ModelWeights& mw, const WeightLoadOptions& opt, Adapter* ad)
      : src_(*(mw.source = std::make_unique<formats::SafetensorsDir>(dir.string()))), mw_(mw), ad_(ad),
        copy_mapped_(!opt.keep_mapped && transparent_huge_pages() && fits_in_memory(*mw.source)) {
    if (opt.dtype != "auto") {
      auto t = parse_wtype(opt.dtype);
      if (!t) fail("unknown weight dtype '{}' (auto | f32 | bf16 | f16 | q8_0)", opt.dtype);
      target_ = *t;
    }
  }
  bool has(const std::string& n) const { return src_.has(n); }
  void set_target_from(const std::string& name) {
    if (target_) return;
    auto [t, f] = src_.get(name);
    auto w = stored_wtype(t->dtype);
    if (!w) fail("{}: tensor '{}' has dtype {} (f32, f16 or bf16 expected)", f->path(), name, formats::dtype_name(t->dtype));
    target_ = *w;
  }
  WType target() const { return *target_; }

  std::vector<float> vec(const std::string& name, std::vector<int64_t> shape) {
    auto [t, f] = checked(name, shape);
    return f->to_float(name);
  }

  // A [rows, cols] matrix; `conv1d`: stored [cols, rows] (GPT-2's Conv1D).
  WMat mat(const std::string& name, int64_t rows, int64_t cols, bool conv1d, bool count = true) {
    auto [t, f] = checked(name, conv1d ? std::vector<int64_t>{cols, rows} : std::vector<int64_t>{rows, cols});
    Adapter::Pair* lora = nullptr;
    if (ad_) {
      auto it = ad_->by_weight.find(canonical(name));
      if (it != ad_->by_weight.end()) {
        lora = &it->second;
        if (lora->in != cols || lora->out != rows)
          fail("{}: LoRA for '{}' is [{} x {}], the weight is [{} x {}] (out x in)", ad_->file, it->first, lora->out,
               lora->in, rows, cols);
        lora->used = true;
      }
    }
    const WType target = *target_;
    if (target == WType::Q8_0 && cols % kQ8Block)
      fail("{}: tensor '{}' rows have {} values; q8_0 needs a multiple of 32", f->path(), name, cols);
    WMat m;
    m.type = target;
    m.rows = rows;
    m.cols = cols;
    const auto stored = stored_wtype(t->dtype);
    if (!conv1d && !lora && stored == target) {  // the stored bytes as they are
      if (copy_mapped_) {
        std::byte* buf = mw_.owned.alloc(m.bytes());
        std::memcpy(buf, t->data.data(), m.bytes());
        release_pages(t->data.data(), m.bytes());
        m.data = buf;
      } else {
        m.data = t->data.data();
        if (count) mw_.mapped_matrix_bytes += m.bytes();
      }
    } else {
      std::vector<float> w = f->to_float(name);
      if (conv1d) {
        std::vector<float> tr(w.size());
        for (int64_t i = 0; i < cols; ++i)
          for (int64_t o = 0; o < rows; ++o) tr[o * cols + i] = w[i * rows + o];
        w.swap(tr);
      }
      if (lora) model::merge_lora_matrix(w.data(), lora->a.data(), lora->b.data(), rows, cols, ad_->r, ad_->scale);
      convert(w, m);
    }
    if (count) mw_.matrix_bytes += m.bytes();
    return m;
  }

  void check_adapter_used() {
    if (!ad_) return;
    for (auto& [w, p] : ad_->by_weight)
      if (!p.used) fail("{}: the adapter has LoRA weights for '{}', which is not a weight matrix of this model", ad_->file, w);
  }
  std::string prefix;  // "transformer." for GPT-2 files that have it (hub files from old GPT-2 code lack it)

 private:
  std::string canonical(const std::string& name) const {
    return mw_.cfg.family == model::Family::GPT2 && prefix.empty() ? "transformer." + name : name;
  }
  std::pair<const TensorView*, const formats::SafetensorsFile*> checked(const std::string& name,
                                                                       const std::vector<int64_t>& shape) {
    auto [t, f] = src_.get(name);
    if (!stored_wtype(t->dtype))
      fail("{}: tensor '{}' has dtype {} (f32, f16 or bf16 expected)", f->path(), name, formats::dtype_name(t->dtype));
    if (t->shape != shape)
      fail("{}: tensor '{}' has shape {}, the model config needs {}", f->path(), name, shape_str(t->shape), shape_str(shape));
    return {t, f};
  }
  void convert(const std::vector<float>& w, WMat& m) {
    const uint64_t n = w.size();
    std::byte* buf = mw_.owned.alloc(m.bytes());
    switch (m.type) {
      case WType::F32: std::memcpy(buf, w.data(), 4 * n); break;
      case WType::BF16:
      case WType::F16: {
        auto* h = reinterpret_cast<uint16_t*>(buf);
        const bool bf = m.type == WType::BF16;
#pragma omp parallel for schedule(static)
        for (uint64_t i = 0; i < n; ++i) h[i] = bf ? formats::float_to_bf16(w[i]) : formats::float_to_f16(w[i]);
        break;
      }
      case WType::Q8_0: {
        auto* q = reinterpret_cast<uint8_t*>(buf);
        auto* d = reinterpret_cast<uint16_t*>(buf + n);
        const int64_t rows = m.rows, cols = m.cols;
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < rows; ++r)
          quantize_q8_0_matrix(w.data() + r * cols, cols, q + r * cols, d + r * (cols / kQ8Block));
        m.scales = d;
        break;
      }
    }
    m.data = buf;
  }

  // The whole pages of [p, p + n) in a file mapping, out of this process (they stay in the page
  // cache, reclaimable, until the kernel needs the memory): the copy is the one the decoder reads.
  static void release_pages(const std::byte* p, uint64_t n) {
    const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
    const uintptr_t a = (reinterpret_cast<uintptr_t>(p) + page - 1) / page * page;
    const uintptr_t b = (reinterpret_cast<uintptr_t>(p) + n) / page * page;
    if (b > a) ::madvise(reinterpret_cast<void*>(a), b - a, MADV_DONTNEED);
  }

  const formats::SafetensorsDir& src_;
  ModelWeights& mw_;
  Adapter* ad_;
  bool copy_mapped_;
  std::optional<WType> target_;
};

}  // namespace

WeightArena::~WeightArena() {
  for (auto& b : blocks_) ::munmap(b.base, b.size);
}

std::byte* WeightArena::alloc(uint64_t bytes) {
  constexpr uint64_t kAlign = 64, kHuge = 2ull << 20, kBlock = 64ull << 20;
  bytes = (bytes + kAlign - 1) / kAlign * kAlign;
  if (blocks_.empty() || blocks_.back().size - blocks_.back().used < bytes) {
    // A block starts on a 2 MiB boundary so whole huge pages fit; pages never touched cost nothing.
    const uint64_t size = std::max(kBlock, (bytes + kHuge - 1) / kHuge * kHuge);
    void* raw = ::mmap(nullptr, size + kHuge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) fail("cannot allocate {} bytes for converted weights: {}", size, std::strerror(errno));
    auto* p = static_cast<std::byte*>(raw);
    const uint64_t lead = (kHuge - reinterpret_cast<uintptr_t>(p) % kHuge) % kHuge;
    if (lead) ::munmap(p, lead);
    if (kHuge - lead) ::munmap(p + lead + size, kHuge - lead);
    p += lead;
    ::madvise(p, size, MADV_HUGEPAGE);  // advice only: without THP the pages are ordinary ones
    blocks_.push_back({p, size, 0});
  }
  Block& b = blocks_.back();
  std::byte* out = b.base + b.used;
  b.used += bytes;
  return out;
}

bool transparent_huge_pages() {
  std::ifstream f("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string s;
  std::getline(f, s);
  return s.find("[always]") != std::string::npos || s.find("[madvise]") != std::string::npos;
}

std::unique_ptr<ModelWeights> load_weights(const std::string& dir_s, const WeightLoadOptions& opt) {
  const fs::path dir(dir_s);
  if (!fs::is_directory(dir)) fail("{}: not a model directory", dir_s);
  const fs::path cfgp = dir / "config.json";
  if (!fs::exists(cfgp)) fail("{}: missing (a model directory needs config.json)", cfgp.string());
  auto mw = std::make_unique<ModelWeights>();
  const nlohmann::json cj = parse_config_file(cfgp.string());
  mw->cfg = model::from_hf_config(cj, cfgp.string());
  // Options of the HF configs that change the arithmetic and that this engine does not implement.
  if (cj.contains("rope_scaling") && !cj["rope_scaling"].is_null())
    fail("{}: rope_scaling {} is not supported", cfgp.string(), cj["rope_scaling"].dump());
  if (cj.contains("head_dim") && cj["head_dim"].is_number_integer() && cj["head_dim"].get<int>() != mw->cfg.head_dim())
    fail("{}: head_dim {} differs from hidden_size / num_attention_heads = {} (not supported)", cfgp.string(),
         cj["head_dim"].get<int>(), mw->cfg.head_dim());
  for (const char* key : {"attention_bias", "mlp_bias"})
    if (cj.value(key, false)) fail("{}: {} = true is not supported", cfgp.string(), key);
  const model::ModelConfig& c = mw->cfg;
  std::optional<Adapter> adapter;
  if (!opt.adapter.empty()) adapter = load_adapter(opt.adapter);
  Loader L(dir, *mw, opt, adapter ? &*adapter : nullptr);
  const int64_t C = c.d_model, F = c.d_ff, V = c.vocab_size;
  if (c.family == model::Family::GPT2) {
    const std::string p = L.has("transformer.wte.weight") || !L.has("wte.weight") ? "transformer." : "";
    L.prefix = p;
    L.set_target_from(p + "wte.weight");
    mw->type = L.target();
    mw->embed = L.mat(p + "wte.weight", V, C, false);
    mw->pos = L.vec(p + "wpe.weight", {c.max_seq, C});
    for (int l = 0; l < c.n_layer; ++l) {
      const std::string h = fmt::format("{}h.{}.", p, l);
      LayerWeights lw;
      lw.norm1_w = L.vec(h + "ln_1.weight", {C});
      lw.norm1_b = L.vec(h + "ln_1.bias", {C});
      lw.qkv = L.mat(h + "attn.c_attn.weight", 3 * C, C, true);
      lw.qkv_b = L.vec(h + "attn.c_attn.bias", {3 * C});
      lw.o = L.mat(h + "attn.c_proj.weight", C, C, true);
      lw.o_b = L.vec(h + "attn.c_proj.bias", {C});
      lw.norm2_w = L.vec(h + "ln_2.weight", {C});
      lw.norm2_b = L.vec(h + "ln_2.bias", {C});
      lw.fc = L.mat(h + "mlp.c_fc.weight", F, C, true);
      lw.fc_b = L.vec(h + "mlp.c_fc.bias", {F});
      lw.down = L.mat(h + "mlp.c_proj.weight", C, F, true);
      lw.down_b = L.vec(h + "mlp.c_proj.bias", {C});
      mw->layers.push_back(std::move(lw));
    }
    mw->norm_f_w = L.vec(p + "ln_f.weight", {C});
    mw->norm_f_b = L.vec(p + "ln_f.bias", {C});
    mw->lm_head = mw->embed;  // GPT-2 ties the output to the input embedding (lm_head.weight, if stored, is the same)
  } else {
    L.set_target_from("model.embed_tokens.weight");
    mw->type = L.target();
    const int64_t hd = c.head_dim(), Q = c.n_head * hd, K = c.n_kv_head * hd;
    mw->embed = L.mat("model.embed_tokens.weight", V, C, false, c.tie_embeddings);
    for (int l = 0; l < c.n_layer; ++l) {
      const std::string h = fmt::format("model.layers.{}.", l);
      LayerWeights lw;
      lw.norm1_w = L.vec(h + "input_layernorm.weight", {C});
      lw.q = L.mat(h + "self_attn.q_proj.weight", Q, C, false);
      lw.k = L.mat(h + "self_attn.k_proj.weight", K, C, false);
      lw.v = L.mat(h + "self_attn.v_proj.weight", K, C, false);
      lw.o = L.mat(h + "self_attn.o_proj.weight", C, Q, false);
      lw.norm2_w = L.vec(h + "post_attention_layernorm.weight", {C});
      lw.gate = L.mat(h + "mlp.gate_proj.weight", F, C, false);
      lw.up = L.mat(h + "mlp.up_proj.weight", F, C, false);
      lw.down = L.mat(h + "mlp.down_proj.weight", C, F, false);
      mw->layers.push_back(std::move(lw));
    }
    mw->norm_f_w = L.vec("model.norm.weight", {C});
    mw->lm_head = c.tie_embeddings ? mw->embed : L.mat("lm_head.weight", V, C, false);
  }
  L.check_adapter_used();
  for (const auto& f : mw->source->files()) f.advise_huge_pages();
  return mw;
}

}  // namespace tsumugi::infer
