// Evaluation datasets.
//
// Generation and multiple-choice sets are llm-jp-eval's evaluation dataset JSON (what its
// preprocessing writes for jaster):
//   {"instruction": "...", "output_length": 3, "metrics": ["exact_match"],
//    "few_shots": [{"input": "...", "output": "..."}], "samples": [{"input": "...", "output": "..."}]}
// Two extensions, both optional and ignored by llm-jp-eval:
//   "category": "QA"           the category for the averages when the dataset is not a jaster set
//   samples[i].choices: [...]   the answer options, for the log-likelihood metrics acc / acc_norm
//                               (lm-evaluation-harness style); output must be one of them
// The dataset's name is the file name without .json, as llm-jp-eval names it (scores are keyed
// "{name}_{metric}").
//
// Perplexity sets are JSONL files (.jsonl, .jsonl.gz, .jsonl.zst) with a "text" field per line.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tsumugi::eval {

struct Example {
  std::string input, output;
  std::vector<std::string> choices;  // only for multiple-choice samples
};

// Metric names llm-jp-eval defines that tsumugi computes, plus the log-likelihood ones.
inline constexpr const char* kGenerationMetrics[] = {"exact_match", "char_f1", "set_f1", "pearson", "spearman",
                                                     "bleu_en"};
inline constexpr const char* kChoiceMetrics[] = {"acc", "acc_norm"};

struct Dataset {
  std::string name, path;
  std::string instruction;
  int output_length = 0;
  std::vector<std::string> metrics;
  std::vector<Example> few_shots, samples;
  std::string category;  // the "category" extension field, else empty
  bool multiple_choice() const;  // any of the metrics is acc / acc_norm
};

// Reads and checks a dataset file. Errors name the file and the item: a missing or ill-typed
// field, an unknown metric, no samples, a choice sample whose output is not among its choices.
Dataset read_dataset(const std::string& path);

struct TextDoc {
  std::string text;
  uint64_t line = 0;
};
// Reads the "text" of every line of a JSONL file; a bad line is an error naming file and line.
std::vector<TextDoc> read_text_jsonl(const std::string& path);

// Whether `path` names a perplexity set (JSONL) rather than a dataset JSON.
bool is_text_jsonl(const std::string& path);
// The name a file's scores are keyed by: its file name without the .json / .jsonl(.gz|.zst) ending.
std::string dataset_name(const std::string& path);

}  // namespace tsumugi::eval
