// The prompt template of instruction tuning. Defaults are LLM-jp's (llm-jp-sft / the LLM-jp
// instruct models), which follow the Japanese Alpaca format:
//   single turn     {system}\n\n### 指示:\n{instruction}\n\n### 応答:\n{output}
//   with an input   {system_with_input}\n\n### 指示:\n{instruction}\n\n### 入力:\n{input}\n\n### 応答:\n{output}
//   chat (messages) {system}\n\n### 指示:\n{user_1}\n\n### 応答:\n{assistant_1}\n\n### 指示:\n{user_2}\n\n### 応答:\n{assistant_2}
// The input form's header sentence is the one LLM-jp's Alpaca-style data and llm-jp-eval use when
// an input is present (「…指示と、文脈のある入力の組み合わせです。…」).
#pragma once

#include <string>

namespace tsumugi::sft {

struct Template {
  std::string system = "以下は、タスクを説明する指示です。要求を適切に満たす応答を書きなさい。";
  std::string system_with_input =
      "以下は、タスクを説明する指示と、文脈のある入力の組み合わせです。要求を適切に満たす応答を書きなさい。";
  std::string prompt = "{system}\n\n### 指示:\n{instruction}\n\n### 応答:\n";
  std::string prompt_with_input = "{system}\n\n### 指示:\n{instruction}\n\n### 入力:\n{input}\n\n### 応答:\n";
  // Every further user turn of a `messages` record.
  std::string turn = "\n\n### 指示:\n{instruction}\n\n### 応答:\n";
  // Each prompt form must end with it; `text` records are split at it.
  std::string response_marker = "### 応答:\n";
};

}  // namespace tsumugi::sft
