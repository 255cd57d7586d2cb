// `tsumugi pretrain` and `tsumugi generate`.
#include <fmt/format.h>

#include <cstdio>
#include <memory>
#include <sstream>

#include "backend/backend.h"
#include "cli/commands.h"
#include "model/generate.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "train/checkpoint.h"
#include "train/collective.h"
#include "train/run_config.h"
#include "train/trainer.h"
#include "util/error.h"
#include "util/log.h"

namespace tsumugi::cli {

namespace {

struct PretrainArgs {
  std::string config;
  std::vector<std::string> sets;
  bool resume = false, list_keys = false, list_presets = false;
};

struct GenerateArgs {
  std::string model, prompt, prompt_ids, output_format = "text", backend = "cpu";
  int max_tokens = 64, top_k = 0;
  float temperature = 0.0f;
  uint64_t seed = 1;
};

std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> out;
  std::istringstream in(s);
  std::string tok;
  while (in >> tok) {
    try {
      std::size_t pos = 0;
      long v = std::stol(tok, &pos);
      if (pos != tok.size() || v < 0 || v > INT32_MAX) throw std::invalid_argument(tok);
      out.push_back(static_cast<int32_t>(v));
    } catch (const std::logic_error&) {
      fail("--prompt-ids: '{}' is not a token id", tok);
    }
  }
  return out;
}

int run_generate(const GenerateArgs& a) {
  train::LoadedCheckpoint ck = train::load_checkpoint(a.model, false);
  std::unique_ptr<tokenizer::Tokenizer> tok;
  if (!ck.tokenizer_path.empty())
    tok = std::make_unique<tokenizer::Tokenizer>(tokenizer::Tokenizer::load(ck.tokenizer_path));
  std::vector<int32_t> prompt;
  if (!a.prompt_ids.empty()) {
    prompt = parse_ids(a.prompt_ids);
  } else {
    if (!tok) fail("{}: the checkpoint has no tokenizer.model; use --prompt-ids", a.model);
    tok->encode(a.prompt, prompt);
  }
  if (prompt.empty()) fail("the prompt is empty: give --prompt TEXT or --prompt-ids \"ID ...\"");
  for (int32_t id : prompt)
    if (id >= ck.config.vocab_size) fail("prompt token id {} is outside the vocabulary ({})", id, ck.config.vocab_size);
  if (static_cast<int>(prompt.size()) >= ck.config.max_seq)
    fail("the prompt has {} tokens; the model's context is {}", prompt.size(), ck.config.max_seq);
  if (a.output_format != "text" && a.output_format != "ids")
    fail("--output-format must be text or ids (got '{}')", a.output_format);
  if (a.output_format == "text" && !tok) fail("{}: no tokenizer.model in the checkpoint; use --output-format ids", a.model);
  auto be = backend::make_backend(a.backend);
  model::Model m(ck.config, *be);
  m.set_parameters(ck.weights);
  model::SampleOptions so;
  so.max_tokens = std::min(a.max_tokens, ck.config.max_seq - static_cast<int>(prompt.size()));
  so.temperature = a.temperature;
  so.top_k = a.top_k;
  so.seed = a.seed;
  if (tok) {
    int32_t eod = tok->piece_to_id("<EOD>");
    so.stop_id = tok->is_unknown(eod) ? tok->eos_id() : eod;
    so.vocab_limit = tok->vocab_size();
  }
  if (a.output_format == "ids") {
    bool first = true;
    model::generate(m, prompt, so, [&](int32_t id) {
      std::fputs(fmt::format("{}{}", first ? "" : " ", id).c_str(), stdout);
      first = false;
      std::fflush(stdout);
    });
    std::fputc('\n', stdout);
  } else {
    // Print text as it grows: decode the whole completion and emit the new suffix.
    std::vector<int32_t> done;
    std::string shown;
    std::fputs(a.prompt.c_str(), stdout);
    model::generate(m, prompt, so, [&](int32_t id) {
      done.push_back(id);
      std::string text = tok->decode(done);
      if (text.size() > shown.size() && text.compare(0, shown.size(), shown) == 0) {
        std::fputs(text.substr(shown.size()).c_str(), stdout);
        shown = text;
        std::fflush(stdout);
      }
    });
    std::fputc('\n', stdout);
  }
  return 0;
}

}  // namespace

void register_pretrain(CLI::App& app) {
  auto a = std::make_shared<PretrainArgs>();
  auto* cmd = app.add_subcommand("pretrain", "Pretrain a GPT-2 or LLaMA family model on Megatron token shards");
  cmd->description(
      "Pretrain a GPT-2-family (LLM-jp-13B v1.0 style) or LLaMA-family (LLM-jp-3 style) model from\n"
      "scratch on Megatron datasets made by `tsumugi tokenize`. The run is described by a TOML/JSON\n"
      "file (see configs/); every key can be overridden with --set KEY=VALUE.\n\n"
      "The run directory (out_dir) gets metrics.jsonl (one JSON object per step), TensorBoard event\n"
      "files under tensorboard/, report.html (refreshing while the run goes), samples.jsonl, and\n"
      "checkpoints/step_NNNNNNNN/ with model.safetensors (Hugging Face names), config.json,\n"
      "tokenizer.model, optimizer.safetensors and trainer_state.json. Ctrl-C writes a checkpoint and\n"
      "exits; --resume continues from the newest checkpoint bit for bit.");
  cmd->add_option("--config", a->config, "Run configuration (TOML, or JSON if it ends in .json)");
  cmd->add_option("--set", a->sets, "Override a key, e.g. --set train.steps=200 --set out_dir=runs/x")->take_all();
  cmd->add_flag("--resume", a->resume, "Continue from the newest checkpoint in out_dir");
  cmd->add_flag("--list-keys", a->list_keys, "List every configuration key with its type and default");
  cmd->add_flag("--list-presets", a->list_presets, "List the model presets with their parameter counts");
  cmd->footer(
      "Examples:\n"
      "  tsumugi pretrain --config configs/tiny.toml\n"
      "  tsumugi pretrain --config configs/tiny.toml --set train.steps=50 --set out_dir=runs/quick\n"
      "  tsumugi pretrain --config configs/tiny.toml --resume\n"
      "  tsumugi pretrain --config configs/tiny-llama.toml --set backend=cpu-bf16");
  cmd->callback([a] {
    set_action([a] {
      if (a->list_keys) {
        std::fputs(train::describe_run_keys().c_str(), stdout);
        return 0;
      }
      if (a->list_presets) {
        for (const auto& name : model::model_preset_names()) {
          auto c = model::model_preset(name);
          if (c.vocab_size == 0) c.vocab_size = 32768;  // for the count; the tokenizer decides
          std::fputs(fmt::format("{:<18} {}{}\n", name, c.summary(),
                                 model::model_preset(name).vocab_size == 0 ? " (vocab from the tokenizer; counted at 32768)" : "")
                         .c_str(),
                     stdout);
        }
        return 0;
      }
      if (a->config.empty()) fail("--config FILE is required (see configs/tiny.toml)");
      // Under mpirun/srun every rank runs this; a rank that fails ends them all with its message
      // instead of leaving the others blocked in a collective.
      auto comm = train::make_collective();
      try {
        train::RunConfig cfg = train::load_run_config(a->config, a->sets);
        train::PretrainOptions opt;
        opt.resume = a->resume;
        opt.comm = comm.get();
        if (comm->rank() != 0 && log::level() < log::Level::warn) log::set_level(log::Level::warn);
        if (comm->size() > 1 && comm->rank() == 0)
          log::info("data parallel over {} {} ranks", comm->size(), comm->kind());
        return train::run_pretrain(cfg, opt);
      } catch (const std::exception& e) {
        if (comm->size() > 1) comm->abort(e.what());
        throw;
      }
    });
  });
}

void register_generate(CLI::App& app) {
  auto a = std::make_shared<GenerateArgs>();
  auto* cmd = app.add_subcommand("generate", "Generate text from a checkpoint");
  cmd->description(
      "Continue a prompt with a checkpoint written by `tsumugi pretrain` (or any directory with a\n"
      "Hugging Face GPT-2/LLaMA config.json and model.safetensors). Temperature 0 is greedy.");
  cmd->add_option("--model", a->model, "Checkpoint directory")->required();
  cmd->add_option("--prompt", a->prompt, "Prompt text (encoded with the checkpoint's tokenizer.model)");
  cmd->add_option("--prompt-ids", a->prompt_ids, "Prompt as token ids, e.g. \"7 123 45\"");
  cmd->add_option("--max-tokens", a->max_tokens, "Tokens to generate")->capture_default_str();
  cmd->add_option("--temperature", a->temperature, "Sampling temperature (0 = greedy)")->capture_default_str();
  cmd->add_option("--top-k", a->top_k, "Sample from the k most likely tokens (0 = all)")->capture_default_str();
  cmd->add_option("--seed", a->seed, "Sampling seed")->capture_default_str();
  cmd->add_option("--output-format", a->output_format, "text | ids")->capture_default_str();
  cmd->add_option("--backend", a->backend, "cpu | cpu-bf16 | cuda | auto")->capture_default_str();
  cmd->footer(
      "Examples:\n"
      "  tsumugi generate --model runs/tiny/checkpoints/step_00000300 --prompt 'ファイルを' --max-tokens 40\n"
      "  tsumugi generate --model CKPT --prompt-ids \"7 1234\" --max-tokens 8 --output-format ids");
  cmd->callback([a] {
    set_action([a] {
      if (a->prompt.empty() == a->prompt_ids.empty()) fail("give exactly one of --prompt or --prompt-ids");
      return run_generate(*a);
    });
  });
}

}  // namespace tsumugi::cli
