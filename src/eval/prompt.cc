#include "eval/prompt.h"

#include "eval/metrics.h"
#include "text/utf8.h"
#include "util/error.h"

namespace tsumugi::eval {

PromptFormat prompt_format(const std::string& style) {
  PromptFormat f;
  f.style = style;
  if (style == "v1.3") {
    f.header = "以下は、タスクを説明する指示と、文脈のある入力の組み合わせです。要求を適切に満たす応答を書きなさい。";
    f.instruction_marker = "### 指示:";
    f.input_marker = "### 入力:";
    f.response_marker = "### 応答:";
  } else if (style == "v1.0") {
    f.header = "以下はタスクを説明する指示と、追加の背景情報を提供する入力の組み合わせです。要求を適切に満たす回答を書いてください。";
    f.instruction_marker = "### 指示：";
    f.input_marker = "### 入力：";
    f.response_marker = "### 回答：";
  } else {
    fail("unknown prompt style '{}' (v1.3 | v1.0)", style);
  }
  return f;
}

std::string build_prompt(const PromptFormat& f, const Dataset& d, const std::string& input, int num_few_shots) {
  if (num_few_shots < 0) fail("the number of few-shot examples must be >= 0, not {}", num_few_shots);
  if (static_cast<std::size_t>(num_few_shots) > d.few_shots.size())
    fail("{}: {} few-shot examples asked for, the dataset has {} in \"few_shots\"", d.path, num_few_shots,
         d.few_shots.size());
  std::string p;
  if (f.style == "v1.0") {
    p = f.header + "\n" + f.instruction_marker + "\n" + d.instruction + "\n";
    for (int i = 0; i < num_few_shots; ++i) {
      if (i) p += "\n";
      p += "\n" + f.input_marker + "\n" + d.few_shots[i].input + "\n" + f.response_marker + "\n" + d.few_shots[i].output;
    }
    p += "\n" + f.input_marker + "\n" + input + "\n" + f.response_marker + "\n";
  } else {
    p = f.header + "\n\n" + f.instruction_marker + "\n" + d.instruction;
    for (int i = 0; i < num_few_shots; ++i)
      p += "\n\n" + f.input_marker + "\n" + d.few_shots[i].input + "\n\n" + f.response_marker + "\n" +
           d.few_shots[i].output;
    p += "\n\n" + f.input_marker + "\n" + input + "\n\n" + f.response_marker + "\n";
  }
  return p;
}

namespace {
std::string strip(std::string_view s) {
  std::u32string u;
  const char* p = s.data();
  while (p < s.data() + s.size()) u.push_back(text::next_codepoint(p, s.data() + s.size()));
  std::size_t b = 0, e = u.size();
  while (b < e && is_python_space(u[b])) ++b;
  while (e > b && is_python_space(u[e - 1])) --e;
  std::string out;
  for (std::size_t i = b; i < e; ++i) text::append_utf8(out, u[i]);
  return out;
}
// Generated text may end inside a character when generation hit its token limit.
std::string valid_utf8(std::string_view s) {
  if (text::is_valid_utf8(s)) return std::string(s);
  std::string out;
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = text::sequence_length(static_cast<unsigned char>(s[i]));
    if (i + n <= s.size() && text::is_valid_utf8(s.substr(i, n))) {
      out.append(s.substr(i, n));
      i += n;
    } else {
      // One U+FFFD for the bad lead byte and the continuation bytes after it, as Python's
      // errors="replace" does for a truncated sequence.
      out += "\xEF\xBF\xBD";
      std::size_t j = i + 1;
      while (j < s.size() && j < i + n && (static_cast<unsigned char>(s[j]) & 0xC0) == 0x80) ++j;
      i = j;
    }
  }
  return out;
}
}  // namespace

std::string extract_answer(const PromptFormat& f, std::string_view generated) {
  const std::string g = valid_utf8(generated);
  if (f.style == "v1.0") {
    const std::string n = text::nfkc(g);
    return strip(std::string_view(n).substr(0, n.find('\n')));
  }
  const std::size_t cut = g.find("\n\n");
  return strip(text::nfkc(std::string_view(g).substr(0, cut)));
}

std::string normalize_gold(std::string_view output) { return text::nfkc(output); }

}  // namespace tsumugi::eval
