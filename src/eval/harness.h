// The evaluation run: datasets through a model, scored as llm-jp-eval scores them.
//
// For each dataset file:
//   * generation metrics (exact_match, char_f1, set_f1, pearson, spearman, bleu_en): the few-shot
//     prompt (prompt.h), greedy generation of up to output_length tokens (stopping at the
//     style's answer end), the answer cut and normalized, then the metric;
//   * acc / acc_norm: log-likelihood of each choice after the prompt (lm-evaluation-harness:
//     the prompt's trailing whitespace moves to the continuation, the continuation's tokens are
//     those of encode(prompt + choice) past encode(prompt)); acc picks the highest sum of
//     log-probabilities, acc_norm the highest sum divided by the choice's length in characters;
//   * a JSONL file of "text": perplexity, bits per character and bits per UTF-8 byte. Each
//     document is preceded by the model's end-of-document token (how documents follow one another
//     in pretraining) so that its first token is scored too; a document longer than the context
//     is scored in consecutive windows, each starting with the last token of the one before.
// Prompts are encoded with the model's tokenizer, preceded by the end-of-document token; a
// prompt longer than the context minus the generation budget keeps its end.
//
// Scores: "{dataset}_{metric}" as llm-jp-eval keys them, the jaster category averages and
// "AVG" (the mean of the categories present; see docs/architecture.md for the grouping).
#pragma once

#include <nlohmann/json.hpp>

#include <map>
#include <string>
#include <vector>

#include "eval/prompt.h"

namespace tsumugi::infer {
class Engine;
}

namespace tsumugi::eval {

struct EvalOptions {
  std::vector<std::string> datasets;
  std::string out_dir;
  int num_few_shots = 4;
  int max_samples = 100;  // per dataset, as llm-jp-eval's max_num_samples; -1 = all
  int max_tokens = 0;     // 0 = the dataset's output_length
  PromptFormat format = prompt_format("v1.3");
  bool progress = true;
  // Samples (and text documents) scored at once: their decoding steps are shared, so several
  // raise throughput, and results do not depend on the number.
  int parallel = 4;
  std::string model_label, adapter_label;  // recorded in scores.json
};

// The jaster category of a score key ("jnli_exact_match" → "NLI"), or "" if it has none.
std::string jaster_category(const std::string& score_key);

// Category averages and AVG over `scores` ("{dataset}_{metric}" → value); `extra_categories`
// maps score keys of non-jaster datasets to the category their file declares.
std::map<std::string, double> category_scores(const std::map<std::string, double>& scores,
                                              const std::map<std::string, std::string>& extra_categories);

// Runs every dataset, writes OUT_DIR/scores.json, OUT_DIR/samples.jsonl and OUT_DIR/report.html
// (atomically), and returns the scores document.
nlohmann::json run_eval(infer::Engine& engine, const EvalOptions& opt);

// Encodes prompt-then-continuation the way lm-evaluation-harness does; returns the context ids
// and the continuation ids (exposed for tests).
void encode_pair(const infer::Engine& engine, const std::string& context, const std::string& continuation,
                 std::vector<int32_t>& context_ids, std::vector<int32_t>& continuation_ids);

// Sum of log p(continuation | context) (natural log), the continuation's ids after the context's.
double continuation_logprob(infer::Engine& engine, const std::vector<int32_t>& context,
                            const std::vector<int32_t>& continuation);

}  // namespace tsumugi::eval
