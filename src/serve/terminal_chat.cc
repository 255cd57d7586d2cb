#include "serve/terminal_chat.h"

#include <istream>
#include <ostream>
#include <vector>

#include "util/error.h"

namespace tsumugi::serve {

namespace {

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r") - b + 1);
}

}  // namespace

int run_terminal_chat(infer::Engine& engine, const TerminalChatOptions& opt, std::istream& in, std::ostream& out) {
  if (!engine.has_tokenizer()) fail("{}: chat needs a tokenizer.model in the model directory", engine.name());
  std::vector<ChatMessage> history;
  auto reset = [&] {
    history.clear();
    if (!opt.system.empty()) history.push_back({"system", opt.system});
  };
  reset();
  infer::Sampling sampling = opt.sampling;
  for (const auto& st : opt.chat_template.stop()) sampling.stop.push_back(st);
  if (opt.interactive)
    out << "Chatting with " << engine.name() << " (template " << opt.chat_template.name()
        << "). /reset starts over, /exit quits, Ctrl-C stops an answer.\n";
  int answers = 0;
  std::string line;
  while (true) {
    if (opt.interactive) out << "> " << std::flush;
    if (!std::getline(in, line)) break;
    const std::string cmd = trim(line);
    if (cmd.empty()) continue;
    if (cmd == "/exit" || cmd == "/quit") break;
    if (cmd == "/reset") {
      reset();
      if (opt.interactive) out << "(conversation cleared)\n";
      continue;
    }
    history.push_back({"user", line});
    // Drop the oldest exchanges until the conversation fits, keeping room for an answer.
    std::vector<int32_t> ids;
    bool dropped = false;
    while (true) {
      ids.clear();
      engine.tokenizer().encode(opt.chat_template.render(history), ids);
      if (static_cast<int>(ids.size()) < engine.context_length()) break;
      const std::size_t first = !history.empty() && history[0].role == "system" ? 1 : 0;
      if (history.size() - first <= 1) break;
      history.erase(history.begin() + first);
      dropped = true;
    }
    if (static_cast<int>(ids.size()) >= engine.context_length()) {
      out << "(the message is too long: " << ids.size() << " tokens; the model's context is " << engine.context_length()
          << ")\n"
          << std::flush;
      history.pop_back();
      continue;
    }
    if (dropped && opt.interactive) out << "(older turns dropped to fit the context)\n";
    if (opt.cancel) opt.cancel->store(false);
    infer::Completion c = engine.complete(ids, sampling, [&](const std::string& delta) {
      out << delta << std::flush;
      return !(opt.cancel && opt.cancel->load());
    });
    if (c.finish_reason == "cancelled") out << " [stopped]";
    out << "\n" << std::flush;
    history.push_back({"assistant", c.text});
    ++answers;
  }
  return answers;
}

}  // namespace tsumugi::serve
