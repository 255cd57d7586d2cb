// `tsumugi pretrain`.
#include <fmt/format.h>

#include <cstdio>
#include <memory>

#include "backend/backend.h"
#include "cli/commands.h"
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

}  // namespace tsumugi::cli
