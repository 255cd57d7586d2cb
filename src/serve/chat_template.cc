#include "serve/chat_template.h"

#include <filesystem>
#include <nlohmann/json.hpp>

#include "util/error.h"
#include "util/io.h"

namespace tsumugi::serve {

namespace {

const char kLlmJpSystem[] = "以下は、タスクを説明する指示です。要求を適切に満たす応答を書きなさい。";

// Replaces {content} with `content` and {{ / }} with single braces; any other brace is an error
// naming `where`.
std::string expand(const std::string& pattern, const std::string& content, const std::string& where) {
  std::string out;
  out.reserve(pattern.size() + content.size());
  static const std::string kPlaceholder = "{content}";
  for (std::size_t i = 0; i < pattern.size();) {
    if (pattern.compare(i, kPlaceholder.size(), kPlaceholder) == 0) {
      out += content;
      i += kPlaceholder.size();
    } else if (pattern.compare(i, 2, "{{") == 0 || pattern.compare(i, 2, "}}") == 0) {
      out += pattern[i];
      i += 2;
    } else if (pattern[i] == '{' || pattern[i] == '}') {
      fail("{}: unexpected '{}' at byte {} (only {{content}} is a placeholder; write {{{{ or }}}} for a brace)", where,
           pattern[i], i);
    } else {
      out += pattern[i++];
    }
  }
  return out;
}

}  // namespace

ChatTemplate ChatTemplate::llm_jp() {
  ChatTemplate t;
  t.name_ = "llm-jp";
  t.system_ = "{content}\n\n";
  t.default_system_ = kLlmJpSystem;
  t.user_ = "### 指示:\n{content}\n\n### 応答:\n";
  t.assistant_ = "{content}\n\n";
  t.stop_ = {"\n\n### 指示:"};
  return t;
}

ChatTemplate ChatTemplate::plain() {
  ChatTemplate t;
  t.name_ = "plain";
  t.separator_ = "\n";
  return t;
}

std::vector<std::string> ChatTemplate::builtin_names() { return {"llm-jp", "plain"}; }

ChatTemplate ChatTemplate::from_json(const std::string& json_text, const std::string& origin) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(json_text);
  } catch (const nlohmann::json::parse_error& e) {
    fail("{}: not valid JSON (byte {}): {}", origin, e.byte, e.what());
  }
  if (!j.is_object()) fail("{}: a chat template is a JSON object", origin);
  ChatTemplate t;
  t.name_ = origin;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    const std::string where = origin + ": field '" + key + "'";
    if (key == "stop") {
      if (!it->is_array()) fail("{} must be an array of strings", where);
      for (std::size_t i = 0; i < it->size(); ++i) {
        if (!(*it)[i].is_string() || (*it)[i].get<std::string>().empty())
          fail("{}[{}] must be a non-empty string", where, i);
        t.stop_.push_back((*it)[i].get<std::string>());
      }
      continue;
    }
    std::string* target = key == "system"           ? &t.system_
                          : key == "default_system" ? &t.default_system_
                          : key == "user"           ? &t.user_
                          : key == "assistant"      ? &t.assistant_
                          : key == "separator"      ? &t.separator_
                                                    : nullptr;
    if (!target) fail("{}: unknown field '{}' (system, default_system, user, assistant, separator, stop)", origin, key);
    if (!it->is_string()) fail("{} must be a string", where);
    *target = it->get<std::string>();
    expand(*target, "", where);  // reject bad placeholders at load, not at the first request
  }
  if (!j.contains("user")) fail("{}: field 'user' is required", origin);
  return t;
}

ChatTemplate ChatTemplate::load(const std::string& name_or_file) {
  if (name_or_file == "llm-jp") return llm_jp();
  if (name_or_file == "plain") return plain();
  if (!std::filesystem::exists(name_or_file))
    fail("chat template '{}' is neither a built-in (llm-jp, plain) nor an existing file", name_or_file);
  return from_json(read_file(name_or_file), name_or_file);
}

std::string ChatTemplate::render(const std::vector<ChatMessage>& messages) const {
  std::string out;
  bool any_turn = false;
  bool first = true;
  auto append = [&](const std::string& piece) {
    if (!first) out += separator_;
    out += piece;
    first = false;
  };
  const bool has_system = !messages.empty() && messages[0].role == "system";
  if (!has_system && !default_system_.empty()) append(expand(system_, default_system_, "system"));
  for (std::size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (m.role == "system") {
      if (i != 0) fail("messages[{}]: a system message may only come first", i);
      append(expand(system_, m.content, "system"));
    } else if (m.role == "user") {
      append(expand(user_, m.content, "user"));
      any_turn = true;
    } else if (m.role == "assistant") {
      append(expand(assistant_, m.content, "assistant"));
      any_turn = true;
    } else {
      fail("messages[{}].role: '{}' is not one of system, user, assistant", i, m.role);
    }
  }
  if (!any_turn) fail("messages: the conversation needs at least one user message");
  return out;
}

}  // namespace tsumugi::serve
