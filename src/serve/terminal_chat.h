// `tsumugi chat`: a conversation in the terminal. Each line read is a user message; the answer
// streams out as it is generated and joins the conversation. `/reset` forgets the conversation,
// `/exit` (or end of input) quits. Works the same with piped input (no prompt is printed then).
#pragma once

#include <atomic>
#include <iosfwd>
#include <string>

#include "infer/engine.h"
#include "serve/chat_template.h"

namespace tsumugi::serve {

struct TerminalChatOptions {
  ChatTemplate chat_template = ChatTemplate::llm_jp();
  infer::Sampling sampling;  // stop strings of the template are added
  std::string system;        // system message; empty = the template's default
  bool interactive = false;  // print a "> " prompt and hints
  // Set (e.g. by a SIGINT handler) to stop the answer being generated; cleared before each answer.
  std::atomic<bool>* cancel = nullptr;
};

// Runs the conversation until /exit or end of input. Returns the number of answers given.
int run_terminal_chat(infer::Engine& engine, const TerminalChatOptions& opt, std::istream& in, std::ostream& out);

}  // namespace tsumugi::serve
