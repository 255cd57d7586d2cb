// `tsumugi generate`: one prompt through infer::Engine, printed as it streams; --bench measures it.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <memory>
#include <sstream>

#include "cli/commands.h"
#include "infer/bench.h"
#include "infer/engine.h"
#include "util/error.h"

namespace tsumugi::cli {

namespace {

struct GenerateArgs {
  bool mmap = false;
  std::string model, prompt, prompt_ids, output_format = "text", backend = "cpu", dtype = "auto", adapter, kv_cache = "auto";
  std::string decoder = "auto";
  int max_tokens = 64, top_k = 0, threads = 0, bench_prompt = 128, bench_repeat = 3;
  float temperature = 0.0f, top_p = 1.0f, min_p = 0.0f, repetition_penalty = 1.0f;
  uint64_t seed = 1;
  std::vector<std::string> stop;
  bool ignore_eos = false, bench = false;
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
  if (a.output_format != "text" && a.output_format != "ids")
    fail("--output-format must be text or ids (got '{}')", a.output_format);
  infer::LoadOptions lo;
  lo.dtype = a.dtype;
  lo.threads = a.threads;
  lo.adapter = a.adapter;
  lo.decoder = a.decoder;
  lo.kv_cache = a.kv_cache;
  lo.keep_mapped = a.mmap;
  if (a.backend == "cpu-bf16") {
    if (lo.dtype == "auto") lo.dtype = "bf16";
  } else if (a.backend == "cuda") {
    lo.decoder = "reference";  // the training model on the GPU, recomputing the window
    lo.backend = "cuda";
  } else if (a.backend != "cpu" && a.backend != "auto") {
    fail("--backend must be cpu, cpu-bf16, cuda or auto (got '{}')", a.backend);
  }
  auto engine = infer::Engine::load(a.model, lo);
  if (a.bench) {
    const infer::BenchResult r = infer::bench_engine(*engine, a.bench_prompt, a.max_tokens, a.seed, a.bench_repeat);
    nlohmann::json j = {{"dtype", engine->weights_dtype()},
                        {"kv_cache", engine->kv_cache_dtype()},
                        {"threads", engine->threads()},
                        {"prompt_tokens", r.prompt_tokens},
                        {"prompt_tokens_per_s", r.prompt_tokens_per_s},
                        {"decode_tokens", r.decode_tokens},
                        {"decode_tokens_per_s", r.decode_tokens_per_s},
                        {"weights_bytes", engine->weights_bytes()}};
    std::fputs((j.dump() + "\n").c_str(), stdout);
    return 0;
  }
  if (a.prompt.empty() == a.prompt_ids.empty()) fail("give exactly one of --prompt or --prompt-ids");
  std::vector<int32_t> prompt;
  if (!a.prompt_ids.empty()) {
    prompt = parse_ids(a.prompt_ids);
  } else {
    if (!engine->has_tokenizer()) fail("{}: the model directory has no tokenizer.model; use --prompt-ids", a.model);
    engine->tokenizer().encode(a.prompt, prompt);
  }
  if (prompt.empty()) fail("the prompt is empty: give --prompt TEXT or --prompt-ids \"ID ...\"");
  if (a.output_format == "text" && !engine->has_tokenizer())
    fail("{}: no tokenizer.model in the model directory; use --output-format ids", a.model);
  infer::Sampling s;
  s.max_tokens = a.max_tokens;
  s.temperature = a.temperature;
  s.top_k = a.top_k;
  s.top_p = a.top_p;
  s.min_p = a.min_p;
  s.repetition_penalty = a.repetition_penalty;
  s.seed = a.seed;
  s.stop = a.stop;
  s.ignore_eos = a.ignore_eos;
  if (a.output_format == "ids") {
    bool first = true;
    engine->complete(prompt, s, {}, [&](int32_t id) {
      std::fputs(fmt::format("{}{}", first ? "" : " ", id).c_str(), stdout);
      first = false;
      std::fflush(stdout);
    });
    std::fputc('\n', stdout);
  } else {
    std::fputs(a.prompt.c_str(), stdout);
    engine->complete(prompt, s, [](const std::string& delta) {
      std::fputs(delta.c_str(), stdout);
      std::fflush(stdout);
      return true;
    });
    std::fputc('\n', stdout);
  }
  return 0;
}

}  // namespace

void register_generate(CLI::App& app) {
  auto a = std::make_shared<GenerateArgs>();
  auto* cmd = app.add_subcommand("generate", "Generate text from a checkpoint (or measure decoding speed)");
  cmd->description(
      "Continue a prompt with a checkpoint written by `tsumugi pretrain`, or any Hugging Face GPT-2 /\n"
      "LLaMA directory (config.json + model.safetensors, or sharded model-*-of-*.safetensors with\n"
      "model.safetensors.index.json; f32, f16 or bf16). Weights are memory-mapped; decoding keeps a KV\n"
      "cache and runs on the CPU in the --dtype given (q8_0 is GGML's 8-bit block format). Text streams\n"
      "as it is generated; a --stop string ends it and is not printed. Temperature 0 is greedy.\n\n"
      "--bench prints one JSON line instead: a random prompt of --bench-prompt tokens processed at\n"
      "once (prompt_tokens_per_s), then, on a fresh sequence as llama-bench's tg test, --max-tokens\n"
      "tokens decoded one by one with EOS ignored (decode_tokens_per_s), medians of --bench-repeat\n"
      "rounds after a warm-up round.");
  cmd->add_option("--model", a->model, "Checkpoint or Hugging Face model directory")->required();
  cmd->add_option("--prompt", a->prompt, "Prompt text (encoded with the directory's tokenizer.model)");
  cmd->add_option("--prompt-ids", a->prompt_ids, "Prompt as token ids, e.g. \"7 123 45\"");
  cmd->add_option("--max-tokens", a->max_tokens, "Tokens to generate (at most the context left)")->capture_default_str();
  cmd->add_option("--temperature", a->temperature, "Sampling temperature (0 = greedy)")->capture_default_str();
  cmd->add_option("--top-k", a->top_k, "Sample from the k most likely tokens (0 = all)")->capture_default_str();
  cmd->add_option("--top-p", a->top_p, "Nucleus sampling: the smallest set with this probability (1 = off)")
      ->capture_default_str();
  cmd->add_option("--min-p", a->min_p, "Drop tokens with p < min_p * p_max (0 = off)")->capture_default_str();
  cmd->add_option("--repetition-penalty", a->repetition_penalty,
                  "Divide positive / multiply negative logits of ids already seen (1 = off)")
      ->capture_default_str();
  cmd->add_option("--stop", a->stop, "Stop string, not included in the output (repeatable)");
  cmd->add_flag("--ignore-eos", a->ignore_eos, "Keep generating after the end-of-text token");
  cmd->add_option("--seed", a->seed, "Sampling seed (same seed, same output)")->capture_default_str();
  cmd->add_option("--output-format", a->output_format, "text | ids")->capture_default_str();
  cmd->add_option("--dtype", a->dtype, "Weights for decoding: auto (as stored) | f32 | bf16 | f16 | q8_0")
      ->capture_default_str();
  cmd->add_flag("--mmap", a->mmap, "Decode weights stored in the decoding type straight from the file mapping (instant start, shared page cache) instead of copying them into huge pages (faster decoding)");
  cmd->add_option("--kv-cache", a->kv_cache, "KV cache: auto (f16 with bf16/f16/q8_0 weights, f32 with f32) | f32 | f16")->capture_default_str();
  cmd->add_option("--threads", a->threads, "CPU threads (0 = all cores)")->capture_default_str();
  cmd->add_option("--adapter", a->adapter, "PEFT LoRA adapter directory, merged into the weights at load");
  cmd->add_option("--backend", a->backend,
                  "cpu (the KV-cache engine) | cpu-bf16 (same, bf16 weights unless --dtype) | cuda (the training "
                  "model on the GPU, recomputing the whole window per token: slow, for checks) | auto (= cpu)")
      ->capture_default_str();
  cmd->add_option("--decoder", a->decoder, "auto | reference (the training model on the CPU; for checking)")
      ->capture_default_str();
  cmd->add_flag("--bench", a->bench, "Measure prompt and decode tokens/s; print one JSON line");
  cmd->add_option("--bench-prompt", a->bench_prompt, "Prompt tokens for --bench")->capture_default_str();
  cmd->add_option("--bench-repeat", a->bench_repeat, "Measured rounds for --bench (median reported)")
      ->capture_default_str();
  cmd->footer(
      "Examples:\n"
      "  tsumugi generate --model runs/tiny/checkpoints/step_00000300 --prompt 'ファイルを' --max-tokens 40\n"
      "  tsumugi generate --model CKPT --prompt-ids \"7 1234\" --max-tokens 8 --output-format ids\n"
      "  tsumugi generate --model CKPT --prompt 'The' --temperature 0.8 --top-p 0.9 --seed 3 --stop $'\\n\\n'\n"
      "  tsumugi generate --model hf/llm-jp-3-1.8b --dtype q8_0 --prompt '自然言語処理とは' --threads 2\n"
      "  tsumugi generate --model CKPT --adapter sft-out/adapter --prompt-ids \"7 1234\"\n"
      "  tsumugi generate --model CKPT --dtype q8_0 --bench --bench-prompt 128 --max-tokens 128 --threads 2");
  cmd->callback([a] { set_action([a] { return run_generate(*a); }); });
}

}  // namespace tsumugi::cli
