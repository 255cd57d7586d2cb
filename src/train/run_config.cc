#include "train/run_config.h"

#include <fmt/format.h>

#include <functional>
#include <map>

#include "util/config_file.h"
#include "util/error.h"

namespace tsumugi::train {
namespace {

enum class Type { Int, Float, Bool, String, StringList };

// Which commands accept a key.
enum class Scope { Both, Pretrain, Sft };

struct Key {
  const char* name;
  Type type;
  const char* help;
  std::function<void(RunConfig&, const nlohmann::json&)> set;
  std::function<nlohmann::json(const RunConfig&)> get;
  Scope scope = Scope::Both;
};

Key only(Scope s, Key k) {
  k.scope = s;
  return k;
}

bool in_scope(const Key& k, RunKind kind) {
  return k.scope == Scope::Both || (k.scope == Scope::Pretrain) == (kind == RunKind::Pretrain);
}

const char* type_name(Type t) {
  switch (t) {
    case Type::Int: return "int";
    case Type::Float: return "float";
    case Type::Bool: return "bool";
    case Type::String: return "string";
    case Type::StringList: return "strings";
  }
  return "?";
}

model::Family parse_family(const std::string& s) {
  if (s == "gpt2") return model::Family::GPT2;
  if (s == "llama") return model::Family::LLaMA;
  fail("model.family must be 'gpt2' or 'llama' (got '{}')", s);
}

#define INT_KEY(k, field, help) \
  Key{k, Type::Int, help, [](RunConfig& c, const nlohmann::json& v) { c.field = v.get<int64_t>(); }, \
      [](const RunConfig& c) { return nlohmann::json(c.field); }}
#define FLOAT_KEY(k, field, help) \
  Key{k, Type::Float, help, [](RunConfig& c, const nlohmann::json& v) { c.field = v.get<double>(); }, \
      [](const RunConfig& c) { return nlohmann::json(c.field); }}
#define STRING_KEY(k, field, help) \
  Key{k, Type::String, help, [](RunConfig& c, const nlohmann::json& v) { c.field = v.get<std::string>(); }, \
      [](const RunConfig& c) { return nlohmann::json(c.field); }}
#define BOOL_KEY(k, field, help) \
  Key{k, Type::Bool, help, [](RunConfig& c, const nlohmann::json& v) { c.field = v.get<bool>(); }, \
      [](const RunConfig& c) { return nlohmann::json(c.field); }}
#define LIST_KEY(k, field, help) \
  Key{k, Type::StringList, help, \
      [](RunConfig& c, const nlohmann::json& v) { c.field = v.get<std::vector<std::string>>(); }, \
      [](const RunConfig& c) { return nlohmann::json(c.field); }}

const std::vector<Key>& keys() {
  static const std::vector<Key> k = {
      STRING_KEY("out_dir", out_dir, "run directory: metrics.jsonl, checkpoints, report.html"),
      STRING_KEY("backend", backend, "auto | cpu | cpu-bf16 | cuda"),
      STRING_KEY("tokenizer", tokenizer, "SentencePiece .model the data was tokenized with (copied into checkpoints)"),
      only(Scope::Pretrain, LIST_KEY("data.train", train_data, "Megatron dataset prefixes (PREFIX.bin + PREFIX.idx) to train on")),
      only(Scope::Pretrain, LIST_KEY("data.valid", valid_data, "validation dataset prefixes (default: hold out data.valid_fraction of train)")),
      only(Scope::Pretrain, FLOAT_KEY("data.valid_fraction", valid_fraction, "fraction of the train token stream held out when data.valid is empty")),
      only(Scope::Sft, STRING_KEY("model", base_model, "checkpoint directory to tune (model.safetensors + config.json [+ tokenizer.model])")),
      only(Scope::Sft, LIST_KEY("data.train", train_data, "instruction JSONL files: instruction/input/output, text with the response marker, or messages")),
      only(Scope::Sft, LIST_KEY("data.valid", valid_data, "held-out instruction JSONL files (response-only validation loss)")),
      only(Scope::Sft, FLOAT_KEY("data.valid_fraction", valid_fraction, "fraction of the training examples held out when data.valid is empty")),
      only(Scope::Sft, BOOL_KEY("data.packing", sft.packing, "pack several examples into each sequence (causal attention spans the pack); false pads one example per sequence")),
      only(Scope::Sft, STRING_KEY("data.overflow", sft.overflow, "an example longer than train.seq_len + 1 tokens: truncate | drop (both counted)")),
      only(Scope::Sft, INT_KEY("lora.r", lora.r, "LoRA rank; 0 = full fine-tuning of every weight")),
      only(Scope::Sft, FLOAT_KEY("lora.alpha", lora.alpha, "LoRA alpha (the update is scaled by alpha / r)")),
      only(Scope::Sft, FLOAT_KEY("lora.dropout", lora.dropout, "dropout on the adapters' input while training")),
      only(Scope::Sft, LIST_KEY("lora.target_modules", lora.target_modules, "adapted modules by HF name or suffix (empty = c_attn,c_proj,c_fc | q/k/v/o/gate/up/down_proj)")),
      only(Scope::Sft, STRING_KEY("template.system", sft.prompt.system, "{system} of the prompt (and default system message of chats)")),
      only(Scope::Sft, STRING_KEY("template.system_with_input", sft.prompt.system_with_input, "{system} when the record has an input")),
      only(Scope::Sft, STRING_KEY("template.prompt", sft.prompt.prompt, "prompt of instruction/output records; ends with the response marker")),
      only(Scope::Sft, STRING_KEY("template.prompt_with_input", sft.prompt.prompt_with_input, "prompt when the record has an input ({input})")),
      only(Scope::Sft, STRING_KEY("template.turn", sft.prompt.turn, "each further user turn of a messages record")),
      only(Scope::Sft, STRING_KEY("template.response_marker", sft.prompt.response_marker, "where a response starts: every prompt form ends with it, text records are split at it")),
      only(Scope::Pretrain, STRING_KEY("model.preset", model_preset, "named shape (see `tsumugi pretrain --list-presets`); other model.* keys override it")),
      only(Scope::Pretrain,
           Key{"model.family", Type::String, "gpt2 | llama",
               [](RunConfig& c, const nlohmann::json& v) { c.model.family = parse_family(v.get<std::string>()); },
               [](const RunConfig& c) { return nlohmann::json(c.model.family_name()); }}),
      only(Scope::Pretrain, INT_KEY("model.n_layer", model.n_layer, "transformer blocks")),
      only(Scope::Pretrain, INT_KEY("model.n_head", model.n_head, "attention heads")),
      only(Scope::Pretrain, INT_KEY("model.n_kv_head", model.n_kv_head, "key/value heads (LLaMA grouped-query attention; 0 = n_head)")),
      only(Scope::Pretrain, INT_KEY("model.d_model", model.d_model, "hidden size")),
      only(Scope::Pretrain, INT_KEY("model.d_ff", model.d_ff, "MLP size (GPT-2: 4*d_model; LLaMA: SwiGLU intermediate; 0 = family default)")),
      only(Scope::Pretrain, INT_KEY("model.vocab_size", model.vocab_size, "embedding rows (0 = the tokenizer's vocabulary padded to 128)")),
      only(Scope::Pretrain, INT_KEY("model.max_seq", model.max_seq, "context length (learned positions for GPT-2)")),
      only(Scope::Pretrain, FLOAT_KEY("model.norm_eps", model.norm_eps, "LayerNorm / RMSNorm epsilon")),
      only(Scope::Pretrain, FLOAT_KEY("model.rope_theta", model.rope_theta, "RoPE base (LLaMA)")),
      only(Scope::Pretrain, BOOL_KEY("model.tie_embeddings", model.tie_embeddings, "share input and output embeddings (always for GPT-2)")),
      INT_KEY("train.steps", train.steps, "optimizer steps"),
      INT_KEY("train.stop_after", train.stop_after,
              "stop this invocation at this step with a checkpoint (time-limited jobs); --resume continues"),
      INT_KEY("train.batch_size", train.batch_size, "sequences per optimizer step, across all ranks"),
      INT_KEY("train.micro_batch_size", train.micro_batch_size,
              "sequences per forward/backward on one rank (0 = batch_size / ranks); the rest is gradient accumulation"),
      INT_KEY("train.seq_len", train.seq_len, "tokens per training sequence"),
      FLOAT_KEY("train.lr", train.lr, "peak learning rate"),
      FLOAT_KEY("train.min_lr", train.min_lr, "learning rate at the end of the decay"),
      INT_KEY("train.warmup_steps", train.warmup_steps, "linear warmup steps"),
      STRING_KEY("train.schedule", train.schedule, "cosine | linear | constant (after warmup)"),
      FLOAT_KEY("train.weight_decay", train.weight_decay, "AdamW decoupled weight decay (2-D weights only)"),
      FLOAT_KEY("train.beta1", train.beta1, "AdamW beta1"),
      FLOAT_KEY("train.beta2", train.beta2, "AdamW beta2"),
      FLOAT_KEY("train.eps", train.eps, "AdamW epsilon"),
      FLOAT_KEY("train.grad_clip", train.grad_clip, "clip the global gradient norm to this (0 = off)"),
      INT_KEY("train.seed", train.seed, "seed for initialisation and data sampling"),
      INT_KEY("train.eval_interval", train.eval_interval, "validation loss every N steps (0 = off)"),
      INT_KEY("train.eval_batches", train.eval_batches, "validation batches (of train.batch_size sequences) per evaluation"),
      INT_KEY("train.checkpoint_interval", train.checkpoint_interval, "checkpoint every N steps (and at the end)"),
      INT_KEY("train.keep_checkpoints", train.keep_checkpoints, "keep the last K checkpoints"),
      INT_KEY("train.log_interval", train.log_interval, "console line every N steps"),
      INT_KEY("train.report_interval", train.report_interval, "rewrite report.html every N steps"),
      INT_KEY("train.zero_stage", train.zero_stage,
              "with several ranks: 1 shards the AdamW state and master weights' update (ZeRO-1), 0 replicates it"),
      FLOAT_KEY("train.dropout", train.dropout,
                "hidden dropout probability on the embeddings and on each attention and MLP output before its residual add (GPT-2's resid_pdrop / embd_pdrop, Megatron's hidden_dropout); attention probabilities are not dropped"),
      BOOL_KEY("train.recompute", train.recompute,
               "activation recomputation: keep only each layer's output and recompute the rest in the backward pass (less memory, about one more forward pass of time; identical gradients)"),
      INT_KEY("train.sample_interval", train.sample_interval, "print a sample generation every N steps (0 = at the end only)"),
      INT_KEY("train.sample_tokens", train.sample_tokens, "tokens per sample generation"),
      STRING_KEY("train.sample_prompt", train.sample_prompt, "prompt for sample generations"),
  };
  return k;
}

const Key* find_key(const std::string& name, RunKind kind) {
  for (const auto& k : keys())
    if (name == k.name && in_scope(k, kind)) return &k;
  return nullptr;
}

std::string suggest(const std::string& name, RunKind kind) {
  const char* cmd = kind == RunKind::Pretrain ? "pretrain" : "sft";
  if (kind == RunKind::Sft && name.rfind("model.", 0) == 0)
    return " (the model's shape comes from the checkpoint given as `model`)";
  // Keys sharing the last component are the likely intent (e.g. "steps" -> "train.steps").
  std::string last = name.substr(name.rfind('.') == std::string::npos ? 0 : name.rfind('.') + 1);
  for (const auto& k : keys()) {
    if (!in_scope(k, kind)) continue;
    std::string kn = k.name;
    std::string kl = kn.substr(kn.rfind('.') == std::string::npos ? 0 : kn.rfind('.') + 1);
    if (kl == last) return fmt::format(" (did you mean '{}'?)", kn);
  }
  return fmt::format(" (see `tsumugi {} --list-keys`)", cmd);
}

void flatten(const nlohmann::json& j, const std::string& prefix, std::vector<std::pair<std::string, nlohmann::json>>& out) {
  for (auto& [k, v] : j.items()) {
    std::string name = prefix.empty() ? k : prefix + "." + k;
    if (v.is_object()) flatten(v, name, out);
    else out.emplace_back(name, v);
  }
}

// Checks a file value's JSON type against the key's type (ints are accepted for floats, a
// single string for a list).
nlohmann::json coerce(const Key& key, const nlohmann::json& v, const std::string& where) {
  auto bad = [&] {
    fail("{}: {} must be {} (got {})", where, key.name, type_name(key.type), v.dump());
  };
  switch (key.type) {
    case Type::Int:
      if (!v.is_number_integer()) bad();
      return v;
    case Type::Float:
      if (!v.is_number()) bad();
      return v.get<double>();
    case Type::Bool:
      if (!v.is_boolean()) bad();
      return v;
    case Type::String:
      if (!v.is_string()) bad();
      return v;
    case Type::StringList:
      if (v.is_string()) return nlohmann::json::array({v});
      if (!v.is_array()) bad();
      for (auto& e : v)
        if (!e.is_string()) bad();
      return v;
  }
  return v;
}

nlohmann::json parse_override_value(const Key& key, const std::string& text, const std::string& where) {
  try {
    std::size_t pos = 0;
    switch (key.type) {
      case Type::Int: {
        long long x = std::stoll(text, &pos);
        if (pos != text.size()) throw std::invalid_argument("trailing");
        return x;
      }
      case Type::Float: {
        double x = std::stod(text, &pos);
        if (pos != text.size()) throw std::invalid_argument("trailing");
        return x;
      }
      case Type::Bool:
        if (text == "true" || text == "1") return true;
        if (text == "false" || text == "0") return false;
        throw std::invalid_argument("bool");
      case Type::String:
        return text;
      case Type::StringList: {
        nlohmann::json a = nlohmann::json::array();
        std::size_t start = 0;
        while (start <= text.size()) {
          std::size_t comma = text.find(',', start);
          std::string part = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
          if (!part.empty()) a.push_back(part);
          if (comma == std::string::npos) break;
          start = comma + 1;
        }
        return a;
      }
    }
  } catch (const std::logic_error&) {
  }
  fail("{}: {} must be {} (got '{}')", where, key.name, type_name(key.type), text);
}

void check_sft(const RunConfig& c) {
  auto need = [&](bool ok, const std::string& msg) {
    if (!ok) fail("{}: {}", c.config_path, msg);
  };
  need(!c.base_model.empty(), "model is required: the checkpoint directory to tune (--set model=DIR)");
  need(c.lora.r >= 0, fmt::format("lora.r must be >= 0 (got {}; 0 = full fine-tuning)", c.lora.r));
  need(c.lora.alpha > 0, "lora.alpha must be > 0");
  need(c.lora.dropout >= 0 && c.lora.dropout < 1, "lora.dropout must be in [0, 1)");
  need(c.sft.overflow == "truncate" || c.sft.overflow == "drop",
       fmt::format("data.overflow must be truncate or drop (got '{}')", c.sft.overflow));
  const auto& t = c.sft.prompt;
  need(!t.response_marker.empty(), "template.response_marker must not be empty");
  auto ends_with_marker = [&](const std::string& key, const std::string& v) {
    const std::string& m = t.response_marker;
    need(v.size() >= m.size() && v.compare(v.size() - m.size(), m.size(), m) == 0,
         fmt::format("{} does not end with the response marker (template.response_marker = {}): the loss could not "
                     "tell the prompt from the response",
                     key, nlohmann::json(m).dump()));
  };
  ends_with_marker("template.prompt", t.prompt);
  ends_with_marker("template.prompt_with_input", t.prompt_with_input);
  ends_with_marker("template.turn", t.turn);
  need(t.prompt.find("{instruction}") != std::string::npos, "template.prompt has no {instruction}");
  need(t.prompt_with_input.find("{instruction}") != std::string::npos &&
           t.prompt_with_input.find("{input}") != std::string::npos,
       "template.prompt_with_input needs {instruction} and {input}");
  need(t.turn.find("{instruction}") != std::string::npos, "template.turn has no {instruction}");
  need(c.valid_fraction >= 0 && c.valid_fraction < 0.5, "data.valid_fraction must be in [0, 0.5)");
  need(!c.train_data.empty(), "data.train is required (instruction JSONL files)");
}

void check(const RunConfig& c) {
  auto need = [&](bool ok, const std::string& msg) {
    if (!ok) fail("{}: {}", c.config_path, msg);
  };
  const auto& t = c.train;
  need(c.backend == "auto" || c.backend == "cpu" || c.backend == "cpu-bf16" || c.backend == "cuda",
       fmt::format("backend must be auto, cpu, cpu-bf16 or cuda (got '{}')", c.backend));
  need(!c.out_dir.empty(), "out_dir must not be empty");
  need(t.steps >= 1, fmt::format("train.steps must be >= 1 (got {})", t.steps));
  need(t.stop_after >= 0, "train.stop_after must be >= 0");
  need(t.batch_size >= 1, fmt::format("train.batch_size must be >= 1 (got {})", t.batch_size));
  need(t.micro_batch_size >= 0, "train.micro_batch_size must be >= 0");
  need(t.seq_len >= 1, fmt::format("train.seq_len must be >= 1 (got {})", t.seq_len));
  need(t.lr > 0, "train.lr must be > 0");
  need(t.min_lr >= 0 && t.min_lr <= t.lr, "train.min_lr must be in [0, train.lr]");
  need(t.warmup_steps >= 0, "train.warmup_steps must be >= 0");
  need(t.schedule == "cosine" || t.schedule == "linear" || t.schedule == "constant",
       fmt::format("train.schedule must be cosine, linear or constant (got '{}')", t.schedule));
  need(t.beta1 >= 0 && t.beta1 < 1 && t.beta2 >= 0 && t.beta2 < 1, "train.beta1/beta2 must be in [0, 1)");
  need(t.eps > 0, "train.eps must be > 0");
  need(t.weight_decay >= 0, "train.weight_decay must be >= 0");
  need(t.grad_clip >= 0, "train.grad_clip must be >= 0");
  need(t.keep_checkpoints >= 1, "train.keep_checkpoints must be >= 1");
  need(t.eval_batches >= 1, "train.eval_batches must be >= 1");
  need(t.log_interval >= 1, "train.log_interval must be >= 1");
  need(t.checkpoint_interval >= 0 && t.eval_interval >= 0 && t.report_interval >= 0 && t.sample_interval >= 0,
       "intervals must be >= 0");
  need(t.zero_stage == 0 || t.zero_stage == 1, "train.zero_stage must be 0 or 1");
  need(t.dropout >= 0.0 && t.dropout < 1.0, "train.dropout must be in [0, 1)");
  if (c.kind == RunKind::Sft) {
    check_sft(c);
    return;  // the shape is the checkpoint's, checked when it is loaded
  }
  need(c.valid_fraction >= 0 && c.valid_fraction < 0.5, "data.valid_fraction must be in [0, 0.5)");
  need(!c.train_data.empty(), "data.train is required (Megatron prefixes written by `tsumugi tokenize`)");
  if (c.model.vocab_size != 0) {
    try {
      c.model.validate();
    } catch (const Error& e) {
      fail("{}: {}", c.config_path, e.what());
    }
  }
  need(c.train.seq_len <= c.model.max_seq,
       fmt::format("train.seq_len ({}) exceeds model.max_seq ({})", c.train.seq_len, c.model.max_seq));
}

}  // namespace

RunConfig default_run_config(RunKind kind) {
  RunConfig c;
  c.kind = kind;
  if (kind == RunKind::Sft) {
    c.out_dir = "runs/sft";
    c.valid_fraction = 0.0;
    c.lora.r = 8;
    c.train.steps = 100;
    c.train.lr = 1e-4;
    c.train.min_lr = 0.0;
    c.train.warmup_steps = 0;
    c.train.weight_decay = 0.0;
    c.train.schedule = "constant";
    c.train.seq_len = 256;
    c.train.eval_interval = 20;
    c.train.checkpoint_interval = 100;
  }
  return c;
}

RunConfig run_config_from_json(const nlohmann::json& j, const std::string& origin,
                               const std::vector<std::string>& overrides, RunKind kind) {
  if (!j.is_object()) fail("{}: a run config must be a table/object", origin);
  std::vector<std::pair<std::string, nlohmann::json>> flat;
  flatten(j, "", flat);
  std::vector<std::pair<const Key*, nlohmann::json>> values;
  for (auto& [name, v] : flat) {
    const Key* k = find_key(name, kind);
    if (!k) fail("{}: unknown key '{}'{}", origin, name, suggest(name, kind));
    values.emplace_back(k, coerce(*k, v, origin));
  }
  for (const auto& o : overrides) {
    auto eq = o.find('=');
    if (eq == std::string::npos) fail("--set {}: expected KEY=VALUE", o);
    std::string name = o.substr(0, eq);
    const Key* k = find_key(name, kind);
    if (!k) fail("--set {}: unknown key '{}'{}", o, name, suggest(name, kind));
    values.emplace_back(k, parse_override_value(*k, o.substr(eq + 1), "--set " + o));
  }
  RunConfig c = default_run_config(kind);
  c.config_path = origin;
  // The preset first (last one given wins), then every other key in order.
  for (auto& [k, v] : values)
    if (std::string(k->name) == "model.preset") k->set(c, v);
  if (!c.model_preset.empty()) {
    try {
      c.model = model::model_preset(c.model_preset);
    } catch (const Error& e) {
      fail("{}: {}", origin, e.what());
    }
  }
  bool d_ff_set = false, kv_set = false;
  for (auto& [k, v] : values) {
    if (std::string(k->name) == "model.preset") continue;
    k->set(c, v);
    if (std::string(k->name) == "model.d_ff") d_ff_set = true;
    if (std::string(k->name) == "model.n_kv_head") kv_set = true;
  }
  // Derived defaults when the shape was given by hand.
  if (!d_ff_set && c.model_preset.empty()) {
    // GPT-2: 4x; LLaMA: 8/3 x rounded up to a multiple of 32 (LLaMA's SwiGLU sizing)
    c.model.d_ff = c.model.family == model::Family::GPT2 ? 4 * c.model.d_model
                                                         : (8 * c.model.d_model / 3 + 31) / 32 * 32;
  }
  if (c.model.family == model::Family::GPT2) {
    if (!kv_set || c.model.n_kv_head == 0) c.model.n_kv_head = c.model.n_head;
    c.model.tie_embeddings = true;
  } else if (c.model.n_kv_head == 0 || (!kv_set && c.model_preset.empty())) {
    c.model.n_kv_head = c.model.n_head;
  }
  if (c.model.d_ff == 0) c.model.d_ff = 4 * c.model.d_model;
  check(c);
  return c;
}

RunConfig load_run_config(const std::string& file, const std::vector<std::string>& overrides, RunKind kind) {
  nlohmann::json j = parse_config_file(file);
  return run_config_from_json(j, file, overrides, kind);
}

nlohmann::json RunConfig::to_json() const {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& k : keys()) {
    if (!in_scope(k, kind)) continue;
    nlohmann::json* node = &j;
    std::string name = k.name;
    std::size_t start = 0, dot;
    while ((dot = name.find('.', start)) != std::string::npos) {
      node = &(*node)[name.substr(start, dot - start)];
      start = dot + 1;
    }
    (*node)[name.substr(start)] = k.get(*this);
  }
  return j;
}

std::string describe_run_keys(RunKind kind) {
  std::string out;
  RunConfig defaults = default_run_config(kind);
  for (const auto& k : keys())
    if (in_scope(k, kind))
      out += fmt::format("  {:<26} {:<8} {:<12} {}\n", k.name, type_name(k.type), k.get(defaults).dump(), k.help);
  return out;
}

}  // namespace tsumugi::train
