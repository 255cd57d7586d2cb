// `tsumugi sft` (instruction tuning, full or LoRA) and `tsumugi sft merge`.
#include <fmt/format.h>

#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "sft/run.h"
#include "train/collective.h"
#include "train/run_config.h"
#include "util/error.h"
#include "util/log.h"

namespace tsumugi::cli {

namespace {
struct SftArgs {
  std::string config;
  std::vector<std::string> sets;
  bool resume = false, list_keys = false;
};
struct MergeArgs {
  std::string model, adapter, out;
};
}  // namespace

void register_sft(CLI::App& app) {
  auto a = std::make_shared<SftArgs>();
  auto m = std::make_shared<MergeArgs>();
  auto* cmd = app.add_subcommand("sft", "Instruction-tune a checkpoint (LoRA or full fine-tuning)");
  cmd->description(
      "Tune a checkpoint on instruction data, with the loss on the responses only, on the same\n"
      "trainer as pretraining (checkpoints, --resume, metrics.jsonl, TensorBoard, report.html, MPI).\n\n"
      "Data (data.train, data.valid): JSONL records with instruction/input/output, a text field\n"
      "containing the response marker, or OpenAI-style messages. Each is rendered through the\n"
      "template (LLM-jp's by default: 以下は、タスクを説明する指示です。…\\n\\n### 指示:\\n…\\n\\n### 応答:\\n),\n"
      "each response is followed by <EOD>, and examples are packed into train.seq_len sequences.\n\n"
      "lora.r > 0 (default 8, alpha 32, dropout 0.05 on c_attn/c_proj/c_fc or q/k/v/o/gate/up/down_proj)\n"
      "trains adapters only; checkpoints are PEFT adapter directories (adapter_config.json +\n"
      "adapter_model.safetensors) that peft loads on the transformers model. lora.r = 0 tunes every\n"
      "weight and writes full checkpoints. `tsumugi sft merge` folds an adapter into the base.");
  cmd->add_option("--config", a->config, "Run configuration (TOML, or JSON if it ends in .json)");
  cmd->add_option("--set", a->sets, "Override a key, e.g. --set model=DIR --set lora.r=0 --set train.steps=50")
      ->take_all();
  cmd->add_flag("--resume", a->resume, "Continue from the newest checkpoint in out_dir");
  cmd->add_flag("--list-keys", a->list_keys, "List every configuration key with its type and default");
  cmd->footer(
      "Examples:\n"
      "  tsumugi sft --config configs/sft-tiny.toml --set model=runs/tiny/checkpoints/step_00000300\n"
      "  tsumugi sft --config configs/sft-tiny.toml --set lora.r=0 --set out_dir=runs/sft-full\n"
      "  tsumugi sft --config configs/sft-tiny.toml --set lora.target_modules=c_attn --set lora.r=16\n"
      "  tsumugi sft --config configs/sft-tiny.toml --resume\n"
      "  tsumugi sft merge --model BASE --adapter runs/sft-tiny/checkpoints/step_00000060 -o merged/\n"
      "  mpirun -np 4 tsumugi sft --config configs/sft-tiny.toml");

  auto* merge = cmd->add_subcommand("merge", "Merge a LoRA adapter into its base checkpoint");
  merge->description(
      "Write OUT, a full checkpoint whose weights are BASE's plus (lora_alpha / r) * B A for every\n"
      "adapted layer (transposed back to Conv1D for GPT-2 files), with BASE's config and tokenizer.");
  merge->add_option("--model", m->model, "Base checkpoint directory")->required();
  merge->add_option("--adapter", m->adapter, "PEFT LoRA adapter directory (a `tsumugi sft` checkpoint)")->required();
  merge->add_option("-o,--output", m->out, "Output checkpoint directory")->required();
  merge->footer(
      "Examples:\n"
      "  tsumugi sft merge --model runs/tiny/checkpoints/step_00000300 \\\n"
      "      --adapter runs/sft-tiny/checkpoints/step_00000060 -o runs/sft-tiny/merged\n"
      "  tsumugi generate --model runs/sft-tiny/merged --prompt '...'");
  merge->callback([m] {
    set_action([m] {
      sft::merge_adapter(m->model, m->adapter, m->out);
      log::info("merged {} into {}: {}", m->adapter, m->model, m->out);
      return 0;
    });
  });

  cmd->callback([a, merge] {
    if (merge->parsed()) return;
    set_action([a] {
      if (a->list_keys) {
        std::fputs(train::describe_run_keys(train::RunKind::Sft).c_str(), stdout);
        return 0;
      }
      if (a->config.empty()) fail("--config FILE is required (see configs/sft-tiny.toml)");
      auto comm = train::make_collective();
      try {
        train::RunConfig cfg = train::load_run_config(a->config, a->sets, train::RunKind::Sft);
        if (comm->rank() != 0 && log::level() < log::Level::warn) log::set_level(log::Level::warn);
        if (comm->size() > 1 && comm->rank() == 0)
          log::info("data parallel over {} {} ranks", comm->size(), comm->kind());
        return sft::run_sft(cfg, a->resume, comm.get());
      } catch (const std::exception& e) {
        if (comm->size() > 1) comm->abort(e.what());
        throw;
      }
    });
  });
}

}  // namespace tsumugi::cli
