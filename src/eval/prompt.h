// Prompts and answer normalization exactly as llm-jp-eval builds and reads them.
//
// Style "v1.3" (llm-jp-eval v1.1.0 – v1.3.x, the default; Alpaca-style with blank lines):
//   {header}\n\n### 指示:\n{instruction}
//   \n\n### 入力:\n{shot input}\n\n### 応答:\n{shot output}        (once per few-shot example)
//   \n\n### 入力:\n{input}\n\n### 応答:\n
// with header 以下は、タスクを説明する指示と、文脈のある入力の組み合わせです。要求を適切に満たす応答を書きなさい。
// The answer is the generation up to its first blank line ("\n\n"), NFKC-normalized and
// stripped of surrounding whitespace; the gold output is NFKC-normalized.
//
// Style "v1.0" (llm-jp-eval v1.0.x; full-width colons, 回答, single newlines):
//   {header}\n### 指示：\n{instruction}\n
//   then the few-shot blocks "\n### 入力：\n{in}\n### 回答：\n{out}" joined by "\n"
//   then "\n### 入力：\n{input}\n### 回答：\n"
// with header 以下はタスクを説明する指示と、追加の背景情報を提供する入力の組み合わせです。要求を適切に満たす回答を書いてください。
// The answer is the first line of the NFKC-normalized generation, stripped.
//
// Text is inserted literally (llm-jp-eval escapes braces in few-shot inputs for its template
// engine so that they come out literally too). Header and markers can be replaced.
#pragma once

#include <string>
#include <string_view>

#include "eval/dataset.h"

namespace tsumugi::eval {

struct PromptFormat {
  std::string style = "v1.3";  // v1.3 | v1.0: the layout (separators) and the answer cut
  std::string header, instruction_marker, input_marker, response_marker;
  // Generation stops at this string; the answer is the text before it.
  std::string answer_end() const { return style == "v1.0" ? "\n" : "\n\n"; }
};

// The defaults of a style; throws Error on an unknown style name.
PromptFormat prompt_format(const std::string& style);

// The prompt for `input` with the first `num_few_shots` of d.few_shots. Throws Error naming the
// file when the dataset has fewer few-shot examples than asked for.
std::string build_prompt(const PromptFormat& f, const Dataset& d, const std::string& input, int num_few_shots);

// The answer llm-jp-eval scores: cut at the style's answer end, NFKC, strip.
std::string extract_answer(const PromptFormat& f, std::string_view generated);
// The gold answer as llm-jp-eval compares it (NFKC).
std::string normalize_gold(std::string_view output);

}  // namespace tsumugi::eval
