#include "train/checkpoint.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>

#include "formats/safetensors.h"
#include "util/error.h"
#include "util/io.h"

namespace tsumugi::train {
namespace fs = std::filesystem;
using formats::DType;
using formats::TensorToWrite;

namespace {

std::vector<int64_t> hf_shape(const model::ParamTensor& p) {
  if (p.hf_transposed) return {p.shape[1], p.shape[0]};
  return p.shape;
}

// Tensors of a flat buffer under HF names, transposing Conv1D weights while writing.
std::vector<TensorToWrite> hf_tensors(const model::ModelConfig& cfg, const std::vector<float>& flat,
                                      const std::string& prefix, bool hf_orientation) {
  std::vector<TensorToWrite> out;
  for (const auto& p : model::parameter_layout(cfg)) {
    TensorToWrite t;
    t.name = prefix + p.name;
    t.dtype = DType::F32;
    const float* src = flat.data() + p.offset;
    if (hf_orientation && p.hf_transposed) {
      t.shape = hf_shape(p);
      const int64_t rows = p.shape[0], cols = p.shape[1];
      t.fill = [src, rows, cols](std::span<std::byte> dst) {
        float* d = reinterpret_cast<float*>(dst.data());
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t c = 0; c < cols; ++c) d[c * rows + r] = src[r * cols + c];
      };
    } else {
      t.shape = p.shape;
      t.data = src;
    }
    out.push_back(std::move(t));
  }
  return out;
}

void read_into(const formats::SafetensorsFile& f, const std::string& name, const std::vector<int64_t>& shape,
               float* dst, bool transpose_from_hf, const std::vector<int64_t>& shape_ours) {
  const auto* t = f.find(name);
  if (!t) fail("{}: tensor '{}' is missing", f.path(), name);
  if (t->shape != shape) {
    std::string a, b;
    for (auto d : t->shape) a += (a.empty() ? "" : ", ") + std::to_string(d);
    for (auto d : shape) b += (b.empty() ? "" : ", ") + std::to_string(d);
    fail("{}: tensor '{}' has shape [{}], the model config needs [{}]", f.path(), name, a, b);
  }
  std::vector<float> v = f.to_float(name);
  if (transpose_from_hf) {
    const int64_t rows = shape_ours[0], cols = shape_ours[1];
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) dst[r * cols + c] = v[c * rows + r];
  } else {
    std::copy(v.begin(), v.end(), dst);
  }
}

void write_trainer_state(const std::string& path, const CheckpointState& state, const char* format) {
  nlohmann::json st = {{"format", format},
                       {"step", state.step},
                       {"tokens_seen", state.tokens_seen},
                       {"loss", state.loss},
                       {"run_config", state.run_config}};
  write_file_atomic(path, st.dump(2) + "\n");
}

CheckpointState read_trainer_state(const std::string& path) {
  nlohmann::json st;
  try {
    st = nlohmann::json::parse(read_file(path));
  } catch (const nlohmann::json::parse_error& e) {
    fail("{}: invalid JSON: {}", path, e.what());
  }
  CheckpointState out;
  out.step = st.value("step", int64_t{0});
  out.tokens_seen = st.value("tokens_seen", uint64_t{0});
  out.loss = st.value("loss", 0.0);
  out.run_config = st.value("run_config", nlohmann::json::object());
  return out;
}

// Replaces an existing checkpoint of the same step (a rerun) only once the new one is complete.
void publish_dir(const fs::path& tmp, const fs::path& final_dir) {
  if (fs::exists(final_dir)) fs::remove_all(final_dir);
  fs::rename(tmp, final_dir);
}

}  // namespace

void save_hf_weights(const std::string& path, const model::ModelConfig& cfg, const std::vector<float>& flat) {
  formats::write_safetensors(path, hf_tensors(cfg, flat, "", true), {{"format", "pt"}});
}

std::vector<float> load_hf_weights(const std::string& path, const model::ModelConfig& cfg) {
  formats::SafetensorsFile f(path);
  std::vector<float> flat(cfg.num_parameters());
  for (const auto& p : model::parameter_layout(cfg))
    read_into(f, p.name, hf_shape(p), flat.data() + p.offset, p.hf_transposed, p.shape);
  return flat;
}

HfWeightsReader::HfWeightsReader(const std::string& dir, const model::ModelConfig& cfg)
    : dir_(dir), cfg_(cfg), files_(std::make_unique<formats::SafetensorsDir>(dir)) {
  // Every tensor is there before anything is read (a bad directory fails at once, not mid-export).
  for (const auto& p : model::parameter_layout(cfg))
    if (file_name(p.name).empty()) fail("{}: tensor '{}' is missing from the model's safetensors", dir, p.name);
}

// The name a tensor has in the files: GPT-2 checkpoints from older code lack "transformer.".
std::string HfWeightsReader::file_name(const std::string& name) const {
  if (files_->has(name)) return name;
  if (name.rfind("transformer.", 0) == 0 && files_->has(name.substr(12))) return name.substr(12);
  return {};
}

HfWeightsReader::~HfWeightsReader() = default;

void HfWeightsReader::read(const model::ParamTensor& p, float* dst) const {
  const std::string name = file_name(p.name);
  if (name.empty()) fail("{}: tensor '{}' is missing from the model's safetensors", dir_, p.name);
  read_into(*files_->get(name).second, name, hf_shape(p), dst, p.hf_transposed, p.shape);
}

std::vector<float> HfWeightsReader::read(const model::ParamTensor& p) const {
  std::vector<float> out(p.size);
  read(p, out.data());
  return out;
}

std::vector<float> HfWeightsReader::read_all() const {
  std::vector<float> flat(cfg_.num_parameters());
  for (const auto& p : model::parameter_layout(cfg_)) read(p, flat.data() + p.offset);
  return flat;
}

std::vector<float> load_hf_weights_dir(const std::string& dir, const model::ModelConfig& cfg) {
  return HfWeightsReader(dir, cfg).read_all();
}


std::string checkpoint_dir_name(int64_t step) { return fmt::format("step_{:08d}", step); }

void save_checkpoint(const std::string& dir, const model::ModelConfig& cfg, const std::vector<float>& weights,
                     const std::vector<float>& m, const std::vector<float>& v, const CheckpointState& state,
                     const std::string& tokenizer_path, int bos_id, int eos_id) {
  fs::path final_dir(dir);
  fs::path tmp = final_dir.parent_path() / (final_dir.filename().string() + ".tmp-" + std::to_string(getpid()));
  std::error_code ec;
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp);
  save_hf_weights((tmp / "model.safetensors").string(), cfg, weights);
  write_file_atomic((tmp / "config.json").string(), model::to_hf_config(cfg, bos_id, eos_id).dump(2) + "\n");
  if (!tokenizer_path.empty()) fs::copy_file(tokenizer_path, tmp / "tokenizer.model", fs::copy_options::overwrite_existing);
  if (!m.empty()) {
    auto tm = hf_tensors(cfg, m, "exp_avg.", false);
    auto tv = hf_tensors(cfg, v, "exp_avg_sq.", false);
    tm.insert(tm.end(), std::make_move_iterator(tv.begin()), std::make_move_iterator(tv.end()));
    formats::write_safetensors((tmp / "optimizer.safetensors").string(), tm, {{"optimizer", "adamw"}});
  }
  write_trainer_state((tmp / "trainer_state.json").string(), state, "tsumugi-checkpoint-1");
  publish_dir(tmp, final_dir);
}

void save_lora_checkpoint(const std::string& dir, const model::ModelConfig& cfg, const model::LoraConfig& lora,
                          const std::vector<float>& adapter, const std::vector<float>& m, const std::vector<float>& v,
                          const CheckpointState& state, const std::string& tokenizer_path,
                          const std::string& base_model) {
  fs::path final_dir(dir);
  fs::path tmp = final_dir.parent_path() / (final_dir.filename().string() + ".tmp-" + std::to_string(getpid()));
  std::error_code ec;
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp);
  model::save_peft_adapter(tmp.string(), cfg, lora, adapter, base_model);
  if (!tokenizer_path.empty()) fs::copy_file(tokenizer_path, tmp / "tokenizer.model", fs::copy_options::overwrite_existing);
  if (!m.empty()) {
    std::vector<TensorToWrite> t;
    const std::pair<const char*, const std::vector<float>*> moments[] = {{"exp_avg.", &m}, {"exp_avg_sq.", &v}};
    for (const auto& [prefix, values] : moments)
      for (const auto& p : model::lora_layout(model::lora_modules(cfg, lora), lora.r)) {
        TensorToWrite w;
        w.name = prefix + p.name;
        w.shape = p.shape;
        w.data = values->data() + p.offset;
        t.push_back(std::move(w));
      }
    formats::write_safetensors((tmp / "optimizer.safetensors").string(), t, {{"optimizer", "adamw"}});
  }
  write_trainer_state((tmp / "trainer_state.json").string(), state, "tsumugi-lora-checkpoint-1");
  publish_dir(tmp, final_dir);
}

LoadedLoraCheckpoint load_lora_checkpoint(const std::string& dir, const model::ModelConfig& cfg,
                                          const model::LoraConfig& lora) {
  LoadedLoraCheckpoint out;
  model::LoadedAdapter a = model::load_peft_adapter(dir, cfg);
  if (a.lora.r != lora.r || a.lora.target_modules != (lora.target_modules.empty() ? model::default_lora_targets(cfg.family) : lora.target_modules))
    fail("{}: the checkpoint's adapter (r={}) does not match the run's lora settings (r={})", dir, a.lora.r, lora.r);
  out.adapter = std::move(a.weights);
  out.state = read_trainer_state((fs::path(dir) / "trainer_state.json").string());
  const std::string op = (fs::path(dir) / "optimizer.safetensors").string();
  if (!fs::exists(op)) fail("{}: no optimizer state to resume from", dir);
  formats::SafetensorsFile f(op);
  out.m.resize(out.adapter.size());
  out.v.resize(out.adapter.size());
  for (const auto& p : model::lora_layout(model::lora_modules(cfg, lora), lora.r)) {
    read_into(f, "exp_avg." + p.name, p.shape, out.m.data() + p.offset, false, p.shape);
    read_into(f, "exp_avg_sq." + p.name, p.shape, out.v.data() + p.offset, false, p.shape);
  }
  return out;
}

LoadedCheckpoint load_checkpoint(const std::string& dir, bool with_optimizer) {
  fs::path d(dir);
  if (!fs::is_directory(d)) fail("{}: not a checkpoint directory", dir);
  for (const char* f : {"config.json", "model.safetensors"})
    if (!fs::exists(d / f)) fail("{}: missing {} (not a complete checkpoint)", dir, f);
  LoadedCheckpoint out;
  std::string cfg_path = (d / "config.json").string();
  nlohmann::json cj;
  try {
    cj = nlohmann::json::parse(read_file(cfg_path));
  } catch (const nlohmann::json::parse_error& e) {
    fail("{}: invalid JSON: {}", cfg_path, e.what());
  }
  out.config = model::from_hf_config(cj, cfg_path);
  out.weights = load_hf_weights((d / "model.safetensors").string(), out.config);
  if (fs::exists(d / "tokenizer.model")) out.tokenizer_path = (d / "tokenizer.model").string();
  if (fs::exists(d / "trainer_state.json")) out.state = read_trainer_state((d / "trainer_state.json").string());
  if (with_optimizer) {
    std::string op = (d / "optimizer.safetensors").string();
    if (!fs::exists(op)) fail("{}: no optimizer state to resume from", dir);
    formats::SafetensorsFile f(op);
    out.m.resize(out.weights.size());
    out.v.resize(out.weights.size());
    for (const auto& p : model::parameter_layout(out.config)) {
      read_into(f, "exp_avg." + p.name, p.shape, out.m.data() + p.offset, false, p.shape);
      read_into(f, "exp_avg_sq." + p.name, p.shape, out.v.data() + p.offset, false, p.shape);
    }
  }
  return out;
}

std::vector<std::string> list_checkpoints(const std::string& run_dir) {
  std::vector<std::pair<int64_t, std::string>> found;
  fs::path root = fs::path(run_dir) / "checkpoints";
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return {};
  for (const auto& e : fs::directory_iterator(root)) {
    std::string name = e.path().filename().string();
    if (!e.is_directory() || name.rfind("step_", 0) != 0 || name.find(".tmp") != std::string::npos) continue;
    if (!fs::exists(e.path() / "trainer_state.json")) continue;
    try {
      found.emplace_back(std::stoll(name.substr(5)), e.path().string());
    } catch (const std::exception&) {
    }
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  for (auto& [s, p] : found) out.push_back(p);
  return out;
}

}  // namespace tsumugi::train
