// `tsumugi eval` (score a model on llm-jp-eval datasets) and `tsumugi eval report` (compare runs).
#include <filesystem>
#include <memory>

#include "cli/commands.h"
#include "eval/harness.h"
#include "eval/report.h"
#include "infer/engine.h"
#include "util/error.h"
#include "util/interrupt.h"
#include "util/log.h"

namespace tsumugi::cli {

namespace {
struct EvalArgs {
  std::string model, adapter, out_dir, dtype = "auto", kv_cache = "auto";
  bool mmap = false;
  std::vector<std::string> datasets, compare;
  int num_few_shots = 4, max_samples = 100, max_tokens = 0, threads = 0, parallel = 4;
  std::string prompt_style = "v1.3", header, instruction_marker, input_marker, response_marker;
  bool no_progress = false;
};
struct EvalReportArgs {
  std::vector<std::string> runs;
  std::string output;
};
}  // namespace

void register_eval(CLI::App& app) {
  auto a = std::make_shared<EvalArgs>();
  auto* cmd = app.add_subcommand("eval", "Evaluate a model on llm-jp-eval datasets; scores JSON, per-sample JSONL, HTML report");
  cmd->description(
      "Score a model the way llm-jp-eval scores it. Each --dataset is llm-jp-eval's evaluation JSON\n"
      "(instruction, output_length, metrics, few_shots, samples; e.g. the jaster files its\n"
      "preprocessing writes, or tsumugi's data/eval/): the few-shot prompt is built as llm-jp-eval\n"
      "builds it, the model answers greedily (at most output_length tokens), the answer is cut at\n"
      "the first blank line, NFKC-normalized and stripped, and scored with the dataset's metrics:\n"
      "exact_match, char_f1, set_f1, pearson, spearman, bleu_en, and the log-likelihood multiple\n"
      "choice metrics acc / acc_norm (samples with \"choices\"). A .jsonl file of {\"text\": ...}\n"
      "lines is a perplexity set: perplexity, bits per character and bits per byte.\n\n"
      "OUTDIR gets scores.json (\"{dataset}_{metric}\" scores, jaster category averages, AVG),\n"
      "samples.jsonl (one row per sample: prompt, pred, gold, raw generation, per-metric scores) and\n"
      "report.html (self-contained: table and bar charts). `tsumugi eval report` puts several runs\n"
      "side by side.");
  cmd->add_option("--model", a->model, "Model directory (tsumugi checkpoint or Hugging Face GPT-2/LLaMA dir with tokenizer.model)");
  cmd->add_option("--adapter", a->adapter, "PEFT LoRA adapter directory applied on top of --model");
  cmd->add_option("--dataset", a->datasets, "Dataset files: llm-jp-eval .json, or .jsonl text for perplexity")->take_all();
  cmd->add_option("-o,--output", a->out_dir, "Output directory");
  cmd->add_option("--num-few-shots", a->num_few_shots, "Few-shot examples in each prompt (from the file's few_shots)")
      ->capture_default_str();
  cmd->add_option("--max-samples", a->max_samples, "Samples per dataset, from the start (-1 = all; llm-jp-eval's default is 100)")
      ->capture_default_str();
  cmd->add_option("--max-tokens", a->max_tokens, "Generation limit for every dataset (0 = each file's output_length)")
      ->capture_default_str();
  cmd->add_option("--prompt-style", a->prompt_style, "v1.3 (### 指示: / ### 入力: / ### 応答:) | v1.0 (### 指示： / ### 入力： / ### 回答：)")
      ->capture_default_str();
  cmd->add_option("--header", a->header, "Replace the prompt's first line (the style's header)");
  cmd->add_option("--instruction-marker", a->instruction_marker, "Replace the instruction marker, e.g. '### 指示'");
  cmd->add_option("--input-marker", a->input_marker, "Replace the input marker, e.g. '### 入力：'");
  cmd->add_option("--response-marker", a->response_marker, "Replace the response marker, e.g. '### 回答：'");
  cmd->add_option("--dtype", a->dtype, "Weights for decoding: auto | f32 | bf16 | f16 | q8_0")->capture_default_str();
  cmd->add_flag("--mmap", a->mmap, "Decode weights stored in the decoding type straight from the file mapping (instant start, shared page cache) instead of copying them into huge pages (faster decoding)");
  cmd->add_option("--kv-cache", a->kv_cache, "KV cache: auto (f16 with bf16/f16/q8_0 weights, f32 with f32) | f32 | f16")->capture_default_str();
  cmd->add_option("--threads", a->threads, "CPU threads (0 = all cores)")->capture_default_str();
  cmd->add_option("--parallel", a->parallel,
                  "Samples scored at once; their decoding steps share each read of the weights (scores do not "
                  "depend on it)")
      ->capture_default_str();
  cmd->add_option("--compare", a->compare, "Earlier eval output directories to put beside this run in report.html")->take_all();
  cmd->add_flag("--no-progress", a->no_progress, "No progress line");
  cmd->footer(
      "Examples:\n"
      "  tsumugi eval --model runs/demo/checkpoints/step_00000300 --dataset data/eval/*.json -o eval/base\n"
      "  tsumugi eval --model BASE --adapter runs/sft-lora/adapter --dataset data/eval/*.json -o eval/lora \\\n"
      "      --compare eval/base                          # before/after in one report\n"
      "  tsumugi eval --model llm-jp-13b --dataset jaster/test/jnli.json jaster/test/niilc.json \\\n"
      "      --num-few-shots 4 --max-samples -1 -o eval/13b\n"
      "  tsumugi eval --model M --dataset held-out.jsonl -o eval/ppl   # perplexity, bits per char/byte\n"
      "  tsumugi eval report eval/base eval/lora -o compare.html");

  auto r = std::make_shared<EvalReportArgs>();
  auto* rep = cmd->add_subcommand("report", "Put eval runs side by side in one HTML report");
  rep->description(
      "Write one self-contained HTML page (inline SVG, no network) from directories written by\n"
      "`tsumugi eval`: every score in a table with one column per run (the best in bold), the\n"
      "category averages and each category's dataset scores as bar charts.");
  rep->add_option("runs", r->runs, "Eval output directories (or their scores.json)")->required();
  rep->add_option("-o,--output", r->output, "Output HTML file")->required();
  rep->footer("Example:\n  tsumugi eval report eval/base eval/lora -o before-after.html");
  rep->callback([r] {
    set_action([r] {
      eval::write_eval_report(r->runs, r->output);
      log::info("wrote {}", r->output);
      return 0;
    });
  });

  cmd->callback([a, cmd, rep] {
    if (cmd->got_subcommand(rep)) return;
    set_action([a] {
      if (a->model.empty()) fail("--model DIR is required");
      if (a->datasets.empty()) fail("give at least one --dataset FILE");
      if (a->out_dir.empty()) fail("-o OUTDIR is required");
      eval::EvalOptions opt;
      opt.datasets = a->datasets;
      opt.out_dir = a->out_dir;
      opt.num_few_shots = a->num_few_shots;
      opt.max_samples = a->max_samples;
      if (a->max_samples < -1 || a->max_samples == 0) fail("--max-samples must be positive or -1 (all)");
      if (a->max_tokens < 0) fail("--max-tokens must be >= 0");
      opt.max_tokens = a->max_tokens;
      opt.format = eval::prompt_format(a->prompt_style);
      if (!a->header.empty()) opt.format.header = a->header;
      if (!a->instruction_marker.empty()) opt.format.instruction_marker = a->instruction_marker;
      if (!a->input_marker.empty()) opt.format.input_marker = a->input_marker;
      if (!a->response_marker.empty()) opt.format.response_marker = a->response_marker;
      opt.progress = !a->no_progress;
      if (a->parallel < 1) fail("--parallel must be at least 1 (got {})", a->parallel);
      opt.parallel = a->parallel;
      opt.model_label = a->model;
      opt.adapter_label = a->adapter;
      infer::LoadOptions lo;
      lo.dtype = a->dtype;
      lo.threads = a->threads;
      lo.adapter = a->adapter;
      lo.kv_cache = a->kv_cache;
      lo.keep_mapped = a->mmap;
      install_interrupt_handler();
      auto engine = infer::Engine::load(a->model, lo);
      eval::run_eval(*engine, opt);
      const std::string html = (std::filesystem::path(a->out_dir) / "report.html").string();
      if (!a->compare.empty()) {
        std::vector<std::string> runs = a->compare;
        runs.push_back(a->out_dir);
        eval::write_eval_report(runs, html);
      }
      log::info("wrote {}/scores.json, samples.jsonl and report.html", a->out_dir);
      return 0;
    });
  });
}

}  // namespace tsumugi::cli
