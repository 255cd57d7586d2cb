// `tsumugi export` (a model as a Hugging Face directory or a GGUF file for llama.cpp) and
// `tsumugi import --from-hf` (a Hugging Face directory as a tsumugi checkpoint).
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "infer/model_export.h"
#include "util/error.h"

namespace tsumugi::cli {

namespace {

// "5GB", "500MB", "64KiB", "1000000" -> bytes (decimal units as transformers spells them, binary
// ones with an i).
uint64_t parse_size(const std::string& s) {
  size_t pos = 0;
  double v = 0;
  try {
    v = std::stod(s, &pos);
  } catch (const std::logic_error&) {
    fail("--max-shard-size '{}' is not a size (e.g. 2GB, 500MB)", s);
  }
  std::string unit = s.substr(pos);
  for (auto& ch : unit) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  double mult = 0;
  if (unit.empty() || unit == "B") mult = 1;
  else if (unit == "KB") mult = 1e3;
  else if (unit == "MB") mult = 1e6;
  else if (unit == "GB") mult = 1e9;
  else if (unit == "KIB") mult = 1024.0;
  else if (unit == "MIB") mult = 1024.0 * 1024;
  else if (unit == "GIB") mult = 1024.0 * 1024 * 1024;
  if (mult == 0 || v <= 0) fail("--max-shard-size '{}' is not a positive size (e.g. 2GB, 500MB, 1GiB)", s);
  return static_cast<uint64_t>(v * mult);
}

}  // namespace

void register_export(CLI::App& app) {
  struct Args {
    std::string model, output, max_shard_size;
    infer::ExportOptions opt;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("export", "Write a model as a Hugging Face directory or a GGUF file for llama.cpp");
  cmd->description(
      "Write a tsumugi checkpoint (or any Hugging Face GPT2LMHeadModel / LlamaForCausalLM directory) in a\n"
      "format other tools load:\n"
      "  hf    a directory for transformers: config.json, model.safetensors (or shards with\n"
      "        model.safetensors.index.json), generation_config.json, tokenizer.model, tokenizer.json,\n"
      "        tokenizer_config.json, special_tokens_map.json\n"
      "  gguf  one file for llama.cpp (architecture gpt2 or llama) with the SentencePiece tokenizer in\n"
      "        its metadata; norms, biases and position embeddings stay f32, matrices take --dtype\n"
      "The output is written under a temporary name and renamed, so it exists whole or not at all.");
  cmd->add_option("--format", a->opt.format, "Output format: hf | gguf")->required();
  cmd->add_option("--dtype", a->opt.dtype, "Weight type: f32 | f16 | bf16 | q8_0 (q8_0: gguf only)")
      ->capture_default_str();
  cmd->add_option("--model", a->model, "Model directory (tsumugi checkpoint or Hugging Face directory)")->required();
  cmd->add_option("-o,--output", a->output, "Output directory (hf) or file (gguf)")->required();
  cmd->add_option("--max-shard-size", a->max_shard_size,
                  "hf: split the weights into safetensors shards of at most this size (e.g. 2GB, 500MB; default one file)");
  cmd->add_flag_callback("--no-progress", [a] { a->opt.progress = false; }, "Do not draw a progress line");
  cmd->footer(
      "Examples:\n"
      "  tsumugi export --format hf --model runs/tiny/checkpoints/step_00000300 -o tiny-hf\n"
      "  tsumugi export --format hf --dtype bf16 --max-shard-size 2GB --model ckpt -o ckpt-hf\n"
      "  tsumugi export --format gguf --dtype f16 --model ckpt -o tiny-f16.gguf\n"
      "  tsumugi export --format gguf --dtype q8_0 --model ckpt -o tiny-q8_0.gguf\n"
      "  llama-simple -m tiny-f16.gguf -n 32 \"吾輩は\"\n"
      "  python3 -c \"import transformers as t; m = t.AutoModelForCausalLM.from_pretrained('tiny-hf')\"");
  cmd->callback([a] {
    set_action([a] {
      if (!a->max_shard_size.empty()) a->opt.max_shard_size = parse_size(a->max_shard_size);
      infer::export_model(a->model, a->output, a->opt);
      std::fprintf(stderr, "wrote %s (%s, %s)\n", a->output.c_str(), a->opt.format.c_str(), a->opt.dtype.c_str());
      return 0;
    });
  });
}

void register_import(CLI::App& app) {
  struct Args {
    std::string from_hf, output;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("import", "Turn a Hugging Face model directory into a tsumugi checkpoint");
  cmd->description(
      "Read a Hugging Face GPT2LMHeadModel or LlamaForCausalLM directory (config.json; model.safetensors or\n"
      "sharded model-*-of-*.safetensors with model.safetensors.index.json; F32, F16 or BF16 tensors;\n"
      "tokenizer.model beside it when there is one) and write a tsumugi checkpoint directory: fp32\n"
      "model.safetensors, config.json, tokenizer.model and trainer_state.json, which `tsumugi generate`\n"
      "and the other model commands load. Written under a temporary name and renamed.");
  cmd->add_option("--from-hf", a->from_hf, "Hugging Face model directory")->required();
  cmd->add_option("-o,--output", a->output, "Checkpoint directory to write")->required();
  cmd->footer(
      "Examples:\n"
      "  tsumugi import --from-hf llm-jp-13b-v1.0/ -o ckpt/llm-jp-13b\n"
      "  tsumugi import --from-hf tiny-hf -o tiny-ckpt && tsumugi generate --model tiny-ckpt --prompt 吾輩は");
  cmd->callback([a] {
    set_action([a] {
      infer::import_hf(a->from_hf, a->output);
      std::fprintf(stderr, "wrote checkpoint %s\n", a->output.c_str());
      return 0;
    });
  });
}

}  // namespace tsumugi::cli
