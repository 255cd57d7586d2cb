#include "infer/model_export.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <map>

#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "tokenizer/hf_export.h"
#include "tokenizer/tokenizer.h"
#include "train/checkpoint.h"
#include "util/config_file.h"
#include "util/error.h"
#include "util/io.h"
#include "util/log.h"
#include "util/progress.h"

namespace tsumugi::infer {

namespace fs = std::filesystem;
using formats::GgmlType;
using formats::GgufValue;
using model::Family;

namespace {

// config.json token ids may be an integer, a list (the first is used) or null.
int config_token_id(const nlohmann::json& j, const char* key) {
  if (!j.contains(key)) return -1;
  const auto& v = j[key];
  if (v.is_number_integer()) return v.get<int>();
  if (v.is_array() && !v.empty() && v[0].is_number_integer()) return v[0].get<int>();
  return -1;
}

// The token tsumugi stops at: <EOD> when the tokenizer has it, else </s>.
int stop_id(const tokenizer::Tokenizer& t) {
  const int32_t eod = t.piece_to_id("<EOD>");
  return t.is_unknown(eod) ? t.eos_id() : eod;
}

// The temporary sibling a directory is built in before it is renamed into place.
fs::path temp_sibling(const fs::path& final_path) {
  fs::path p = final_path.lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  return p.parent_path() / (p.filename().string() + ".tmp-" + std::to_string(getpid()));
}

// Refuses to replace a directory that does not look like an earlier output (a mistyped -o must
// not delete someone's files).
void check_replaceable(const fs::path& out, const char* marker) {
  std::error_code ec;
  if (!fs::exists(out, ec)) return;
  if (!fs::is_directory(out, ec)) fail("{}: exists and is not a directory", out.string());
  if (fs::is_empty(out, ec) || fs::exists(out / marker, ec)) return;
  fail("{}: exists and holds no {}; refusing to replace it (remove it or choose another output)", out.string(), marker);
}

void rename_into_place(const fs::path& tmp, const fs::path& out) {
  std::error_code ec;
  if (fs::exists(out, ec)) fs::remove_all(out);
  fs::rename(tmp, out);
}

enum class Elem { F32, F16, BF16, Q8_0 };

Elem parse_elem(const std::string& dtype) {
  if (dtype == "f32") return Elem::F32;
  if (dtype == "f16") return Elem::F16;
  if (dtype == "bf16") return Elem::BF16;
  if (dtype == "q8_0") return Elem::Q8_0;
  fail("--dtype '{}' is not one of f32, f16, bf16, q8_0", dtype);
}

// `n` floats into 16-bit values.
void to_half(const float* src, size_t n, std::byte* dst, bool bf16) {
  for (size_t k = 0; k < n; ++k) {
    const uint16_t h = bf16 ? formats::float_to_bf16(src[k]) : formats::float_to_f16(src[k]);
    std::memcpy(dst + 2 * k, &h, 2);
  }
}

// Rows of one tensor in HF orientation (Conv1D weights transposed back to [in, out]).
std::vector<float> hf_oriented(const model::ParamTensor& p, const train::HfWeightsReader& weights) {
  std::vector<float> v = weights.read(p);
  if (!p.hf_transposed) return v;
  const int64_t rows = p.shape[0], cols = p.shape[1];
  std::vector<float> out(p.size);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) out[c * rows + r] = v[r * cols + c];
  return out;
}

// Rows of a [n_heads * head_dim, C] projection reordered within each head from HF's rotate-half
// pairing (i, i + d/2) to GGML's adjacent pairing (2i, 2i + 1).
std::vector<float> permute_for_ggml_rope(const float* w, int n_heads, int head_dim, int64_t cols) {
  std::vector<float> out(size_t(n_heads) * head_dim * cols);
  const int half = head_dim / 2;
  for (int h = 0; h < n_heads; ++h)
    for (int j = 0; j < half; ++j)
      for (int s = 0; s < 2; ++s) {
        const float* from = w + (int64_t(h) * head_dim + s * half + j) * cols;
        float* to = out.data() + (int64_t(h) * head_dim + 2 * j + s) * cols;
        std::copy(from, from + cols, to);
      }
  return out;
}

std::string gguf_name_for(const std::string& hf, Family fam) {
  auto ends = [&](const std::string& s) { return hf.size() >= s.size() && hf.compare(hf.size() - s.size(), s.size(), s) == 0; };
  auto suffix = [&]() { return ends(".bias") ? std::string(".bias") : std::string(".weight"); };
  if (fam == Family::GPT2) {
    if (hf == "transformer.wte.weight") return "token_embd.weight";
    if (hf == "transformer.wpe.weight") return "position_embd.weight";
    if (hf.rfind("transformer.ln_f.", 0) == 0) return "output_norm" + suffix();
    const std::string pre = "transformer.h.";
    const size_t dot = hf.find('.', pre.size());
    const std::string layer = hf.substr(pre.size(), dot - pre.size());
    const std::string rest = hf.substr(dot + 1);
    static const std::map<std::string, std::string> m = {{"ln_1", "attn_norm"},        {"attn.c_attn", "attn_qkv"},
                                                         {"attn.c_proj", "attn_output"}, {"ln_2", "ffn_norm"},
                                                         {"mlp.c_fc", "ffn_up"},        {"mlp.c_proj", "ffn_down"}};
    const std::string module = rest.substr(0, rest.rfind('.'));
    return "blk." + layer + "." + m.at(module) + suffix();
  }
  if (hf == "model.embed_tokens.weight") return "token_embd.weight";
  if (hf == "model.norm.weight") return "output_norm.weight";
  if (hf == "lm_head.weight") return "output.weight";
  const std::string pre = "model.layers.";
  const size_t dot = hf.find('.', pre.size());
  const std::string layer = hf.substr(pre.size(), dot - pre.size());
  const std::string rest = hf.substr(dot + 1);
  static const std::map<std::string, std::string> m = {
      {"input_layernorm.weight", "attn_norm"}, {"self_attn.q_proj.weight", "attn_q"},
      {"self_attn.k_proj.weight", "attn_k"},   {"self_attn.v_proj.weight", "attn_v"},
      {"self_attn.o_proj.weight", "attn_output"}, {"post_attention_layernorm.weight", "ffn_norm"},
      {"mlp.gate_proj.weight", "ffn_gate"},    {"mlp.up_proj.weight", "ffn_up"},
      {"mlp.down_proj.weight", "ffn_down"}};
  return "blk." + layer + "." + m.at(rest) + ".weight";
}

uint32_t gguf_file_type(Elem e) {
  // llama_ftype numbers: ALL_F32, MOSTLY_F16, MOSTLY_Q8_0, MOSTLY_BF16.
  switch (e) {
    case Elem::F32: return 0;
    case Elem::F16: return 1;
    case Elem::Q8_0: return 7;
    case Elem::BF16: return 32;
  }
  return 0;
}

}  // namespace

ModelDir read_model_dir(const std::string& dir) {
  const fs::path d(dir);
  if (!fs::is_directory(d)) fail("{}: not a model directory", dir);
  const fs::path cfg_path = d / "config.json";
  if (!fs::exists(cfg_path)) fail("{}: no config.json (not a tsumugi checkpoint or Hugging Face model directory)", dir);
  ModelDir m;
  m.dir = dir;
  const nlohmann::json cj = parse_config_file(cfg_path.string());
  m.config = model::from_hf_config(cj, cfg_path.string());
  m.weights = std::make_shared<const train::HfWeightsReader>(dir, m.config);
  m.bos_id = config_token_id(cj, "bos_token_id");
  m.eos_id = config_token_id(cj, "eos_token_id");
  // transformers' defaults (GPT-2's 50256) may lie outside a small vocabulary: ask the tokenizer.
  if (m.bos_id >= m.config.vocab_size) m.bos_id = -1;
  if (m.eos_id >= m.config.vocab_size) m.eos_id = -1;
  if (fs::exists(d / "tokenizer.model")) {
    m.tokenizer_path = (d / "tokenizer.model").string();
    if (m.bos_id < 0 || m.eos_id < 0) {
      const auto t = tokenizer::Tokenizer::load(m.tokenizer_path);
      if (m.eos_id < 0) m.eos_id = stop_id(t);
      if (m.bos_id < 0) m.bos_id = t.bos_id() >= 0 ? t.bos_id() : m.eos_id;
    }
  }
  return m;
}

void check_export_options(const ExportOptions& opt) {
  if (opt.format != "hf" && opt.format != "gguf") fail("--format '{}' is not one of hf, gguf", opt.format);
  const Elem e = parse_elem(opt.dtype);
  if (opt.format == "hf" && e == Elem::Q8_0) fail("--dtype q8_0 is a GGUF type; --format hf takes f32, f16 or bf16");
  if (opt.format == "gguf" && opt.max_shard_size != 0) fail("--max-shard-size applies to --format hf only");
}

void export_model(const std::string& model_dir, const std::string& out, const ExportOptions& opt) {
  check_export_options(opt);
  const ModelDir m = read_model_dir(model_dir);
  if (opt.format == "hf") export_hf(m, out, opt);
  else export_gguf(m, out, opt);
}

void export_hf(const ModelDir& m, const std::string& out_dir, const ExportOptions& opt) {
  check_export_options(opt);
  const Elem e = parse_elem(opt.dtype);
  const formats::DType st_type = e == Elem::F32 ? formats::DType::F32 : e == Elem::F16 ? formats::DType::F16 : formats::DType::BF16;
  const fs::path out(out_dir);
  check_replaceable(out, "config.json");
  const fs::path tmp = temp_sibling(out);
  std::error_code ec;
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp);
  try {
    // Tensors in layout order, cut into shards no larger than max_shard_size (a tensor larger
    // than the limit gets a shard of its own, as transformers does).
    const auto layout = model::parameter_layout(m.config);
    const size_t esize = formats::dtype_size(st_type);
    std::vector<std::vector<size_t>> shards(1);
    uint64_t shard_bytes = 0, total_bytes = 0;
    for (size_t k = 0; k < layout.size(); ++k) {
      const uint64_t b = layout[k].size * esize;
      if (opt.max_shard_size > 0 && !shards.back().empty() && shard_bytes + b > opt.max_shard_size) {
        shards.emplace_back();
        shard_bytes = 0;
      }
      shards.back().push_back(k);
      shard_bytes += b;
      total_bytes += b;
    }
    Progress progress("export hf", total_bytes, opt.progress && Progress::stderr_is_tty());
    nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
    for (size_t s = 0; s < shards.size(); ++s) {
      const std::string file = shards.size() == 1 ? "model.safetensors"
                                                  : fmt::format("model-{:05d}-of-{:05d}.safetensors", s + 1, shards.size());
      std::vector<formats::TensorToWrite> tensors;
      for (size_t k : shards[s]) {
        const auto& p = layout[k];
        formats::TensorToWrite t;
        t.name = p.name;
        t.dtype = st_type;
        t.shape = p.hf_transposed ? std::vector<int64_t>{p.shape[1], p.shape[0]} : p.shape;
        t.fill = [&m, &p, e, &progress, esize](std::span<std::byte> dst) {
          const std::vector<float> v = hf_oriented(p, *m.weights);
          if (e == Elem::F32) std::memcpy(dst.data(), v.data(), v.size() * 4);
          else to_half(v.data(), v.size(), dst.data(), e == Elem::BF16);
          progress.add(v.size() * esize, 1);
        };
        tensors.push_back(std::move(t));
        weight_map[p.name] = file;
      }
      formats::write_safetensors((tmp / file).string(), tensors, {{"format", "pt"}});
    }
    progress.finish();
    if (shards.size() > 1) {
      nlohmann::ordered_json index = {{"metadata", {{"total_size", total_bytes}}}, {"weight_map", weight_map}};
      write_file_atomic((tmp / "model.safetensors.index.json").string(), index.dump(2) + "\n");
    }
    nlohmann::json cfg = model::to_hf_config(m.config, m.bos_id, m.eos_id);
    cfg["torch_dtype"] = e == Elem::F32 ? "float32" : e == Elem::F16 ? "float16" : "bfloat16";
    write_file_atomic((tmp / "config.json").string(), cfg.dump(2) + "\n");
    nlohmann::ordered_json gen = {{"bos_token_id", m.bos_id}, {"eos_token_id", m.eos_id}};
    if (!m.tokenizer_path.empty()) {
      const auto t = tokenizer::Tokenizer::load(m.tokenizer_path);
      if (t.pad_id() >= 0) gen["pad_token_id"] = t.pad_id();
      fs::copy_file(m.tokenizer_path, tmp / "tokenizer.model", fs::copy_options::overwrite_existing);
      tokenizer::HfExportOptions ho;
      ho.model_max_length = m.config.max_seq;
      try {
        tokenizer::export_hf(t.model(), tmp.string(), ho);
      } catch (const Error& err) {
        // Word and char models have no tokenizers equivalent; tokenizer.model still goes along.
        log::warn("{}: tokenizer.json not written: {}", m.tokenizer_path, err.what());
      }
    } else {
      log::warn("{}: no tokenizer.model; the export has no tokenizer files", m.dir);
    }
    write_file_atomic((tmp / "generation_config.json").string(), gen.dump(2) + "\n");
    rename_into_place(tmp, out);
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
}

std::vector<std::pair<std::string, std::string>> gguf_tensor_names(const model::ModelConfig& cfg) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& p : model::parameter_layout(cfg)) out.emplace_back(p.name, gguf_name_for(p.name, cfg.family));
  return out;
}

void export_gguf(const ModelDir& m, const std::string& out_path, const ExportOptions& opt) {
  check_export_options(opt);
  const Elem e = parse_elem(opt.dtype);
  if (m.tokenizer_path.empty())
    fail("{}: no tokenizer.model; a GGUF file for llama.cpp needs the tokenizer", m.dir);
  const auto tok = tokenizer::Tokenizer::load(m.tokenizer_path);
  const auto& c = m.config;
  if (tok.vocab_size() > c.vocab_size)
    fail("{}: the tokenizer has {} pieces but the model only {} embedding rows", m.dir, tok.vocab_size(), c.vocab_size);

  const std::string arch = c.family == Family::GPT2 ? "gpt2" : "llama";
  formats::GgufMetadata md;
  auto put = [&](const std::string& k, GgufValue v) { md.emplace_back(k, std::move(v)); };
  fs::path name_path = fs::path(m.dir).lexically_normal();
  if (name_path.filename().empty()) name_path = name_path.parent_path();
  put("general.architecture", GgufValue::string(arch));
  put("general.type", GgufValue::string("model"));
  put("general.name", GgufValue::string(name_path.filename().string()));
  put("general.file_type", GgufValue::uint32(gguf_file_type(e)));
  if (e == Elem::Q8_0) put("general.quantization_version", GgufValue::uint32(2));
  put("general.alignment", GgufValue::uint32(formats::kGgufDefaultAlignment));
  put(arch + ".context_length", GgufValue::uint32(c.max_seq));
  put(arch + ".embedding_length", GgufValue::uint32(c.d_model));
  put(arch + ".block_count", GgufValue::uint32(c.n_layer));
  put(arch + ".feed_forward_length", GgufValue::uint32(c.d_ff));
  put(arch + ".attention.head_count", GgufValue::uint32(c.n_head));
  if (c.family == Family::GPT2) {
    put(arch + ".attention.layer_norm_epsilon", GgufValue::float32(c.norm_eps));
  } else {
    put(arch + ".attention.head_count_kv", GgufValue::uint32(c.n_kv_head));
    put(arch + ".attention.layer_norm_rms_epsilon", GgufValue::float32(c.norm_eps));
    put(arch + ".rope.freq_base", GgufValue::float32(c.rope_theta));
    put(arch + ".rope.dimension_count", GgufValue::uint32(c.head_dim()));
    put(arch + ".vocab_size", GgufValue::uint32(c.vocab_size));
  }

  // The tokenizer, padded to the embedding rows with UNUSED pieces so ids and rows agree.
  std::vector<std::string> pieces;
  std::vector<float> scores;
  std::vector<int32_t> types;
  for (int32_t id = 0; id < c.vocab_size; ++id) {
    if (id < tok.vocab_size()) {
      pieces.push_back(tok.id_to_piece(id));
      scores.push_back(tok.score(id));
      types.push_back(static_cast<int32_t>(tok.piece_type(id)));
    } else {
      pieces.push_back(fmt::format("<tsumugi_pad_{}>", id));
      scores.push_back(-1e4f);
      types.push_back(static_cast<int32_t>(tokenizer::PieceType::unused));
    }
  }
  put("tokenizer.ggml.model", GgufValue::string("llama"));
  put("tokenizer.ggml.pre", GgufValue::string("default"));
  put("tokenizer.ggml.tokens", GgufValue::strings(pieces));
  put("tokenizer.ggml.scores", GgufValue::float32s(scores));
  put("tokenizer.ggml.token_type", GgufValue::int32s(types));
  const int stop = stop_id(tok);
  if (tok.bos_id() >= 0) put("tokenizer.ggml.bos_token_id", GgufValue::uint32(tok.bos_id()));
  if (stop >= 0) put("tokenizer.ggml.eos_token_id", GgufValue::uint32(stop));
  put("tokenizer.ggml.unknown_token_id", GgufValue::uint32(tok.unk_id()));
  if (tok.pad_id() >= 0) put("tokenizer.ggml.padding_token_id", GgufValue::uint32(tok.pad_id()));
  put("tokenizer.ggml.add_bos_token", GgufValue::boolean(false));
  put("tokenizer.ggml.add_eos_token", GgufValue::boolean(false));
  put("tokenizer.ggml.add_space_prefix", GgufValue::boolean(tok.model().normalizer().add_dummy_prefix_or_default()));

  std::vector<formats::GgufTensorToWrite> tensors;
  uint64_t total = 0;
  const auto layout = model::parameter_layout(c);  // outlives the fill callbacks below
  for (const auto& p : layout) {
    formats::GgufTensorToWrite t;
    t.name = gguf_name_for(p.name, c.family);
    for (auto it = p.shape.rbegin(); it != p.shape.rend(); ++it) t.ne.push_back(uint64_t(*it));
    // llama.cpp's converter keeps 1-D tensors, norms and position embeddings in F32.
    const bool keep_f32 = p.shape.size() == 1 || t.name == "position_embd.weight";
    Elem te = keep_f32 ? Elem::F32 : e;
    if (te == Elem::Q8_0 && t.ne[0] % formats::kQ8_0BlockElems != 0) te = Elem::F16;
    t.type = te == Elem::F32 ? GgmlType::F32 : te == Elem::F16 ? GgmlType::F16 : te == Elem::BF16 ? GgmlType::BF16 : GgmlType::Q8_0;
    const bool is_q = c.family == Family::LLaMA && t.name.ends_with("attn_q.weight");
    const bool is_k = c.family == Family::LLaMA && t.name.ends_with("attn_k.weight");
    t.fill = [&m, &p, te, is_q, is_k, &c](std::span<std::byte> dst) {
      const std::vector<float> values = m.weights->read(p);
      const float* w = values.data();
      std::vector<float> permuted;
      if (is_q || is_k) {
        permuted = permute_for_ggml_rope(w, is_q ? c.n_head : c.n_kv_head, c.head_dim(), p.shape[1]);
        w = permuted.data();
      }
      switch (te) {
        case Elem::F32: std::memcpy(dst.data(), w, p.size * 4); break;
        case Elem::F16: to_half(w, p.size, dst.data(), false); break;
        case Elem::BF16: to_half(w, p.size, dst.data(), true); break;
        case Elem::Q8_0: formats::quantize_q8_0(w, int64_t(p.size), dst.data()); break;
      }
    };
    total += formats::ggml_nbytes(uint32_t(t.type), t.ne);
    tensors.push_back(std::move(t));
  }
  Progress progress("export gguf", total, opt.progress && Progress::stderr_is_tty());
  formats::write_gguf(out_path, md, tensors, [&](uint64_t bytes) { progress.add(bytes, 1); });
  progress.finish();
}

void import_hf(const std::string& hf_dir, const std::string& ckpt_dir) {
  const ModelDir m = read_model_dir(hf_dir);
  if (m.tokenizer_path.empty())
    log::warn("{}: no tokenizer.model beside the model; the checkpoint will have no tokenizer", hf_dir);
  check_replaceable(fs::path(ckpt_dir), "config.json");
  train::CheckpointState st;
  st.run_config = {{"imported_from", fs::absolute(hf_dir).lexically_normal().string()}};
  train::save_checkpoint(ckpt_dir, m.config, m.weights->read_all(), {}, {}, st, m.tokenizer_path, m.bos_id, m.eos_id);
}

}  // namespace tsumugi::infer
