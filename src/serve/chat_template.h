// Chat messages → prompt text. A template is a handful of strings: what wraps each role's
// message, a default system message, a separator between messages and stop strings. The built-in
// `llm-jp` template is the LLM-jp instruction format that `tsumugi sft` trains on (byte-exact);
// `plain` joins the messages with newlines for base models; a JSON file gives any other.
//
// Template file (JSON; every field optional except "user"):
//   {
//     "system":         "{content}\n\n",    // wraps the system message ({content} = its text)
//     "default_system": "...",              // used when the conversation has no system message
//     "user":           "### 指示:\n{content}\n\n### 応答:\n",
//     "assistant":      "{content}\n\n",
//     "separator":      "",                 // between consecutive rendered messages
//     "stop":           ["\n\n### 指示:"]   // stop strings added to every chat request
//   }
// `{content}` may appear any number of times; `{{` and `}}` stand for literal braces.
#pragma once

#include <string>
#include <vector>

namespace tsumugi::serve {

struct ChatMessage {
  std::string role;  // system | user | assistant
  std::string content;
};

class ChatTemplate {
 public:
  // A built-in name (llm-jp, plain) or a path to a JSON template file.
  static ChatTemplate load(const std::string& name_or_file);
  static ChatTemplate llm_jp();
  static ChatTemplate plain();
  // Parses a template from JSON text; `origin` names it in errors.
  static ChatTemplate from_json(const std::string& json_text, const std::string& origin);
  static std::vector<std::string> builtin_names();

  // The prompt for `messages`. A system message may come only first; the conversation must have
  // at least one user or assistant message. Errors name the message index and field.
  std::string render(const std::vector<ChatMessage>& messages) const;

  const std::string& name() const { return name_; }
  // Stop strings every chat request gets (the model's EOS is always a stop as well).
  const std::vector<std::string>& stop() const { return stop_; }

 private:
  std::string name_;
  std::string system_ = "{content}", default_system_, user_ = "{content}", assistant_ = "{content}", separator_;
  std::vector<std::string> stop_;
};

}  // namespace tsumugi::serve
