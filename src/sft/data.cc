#include "sft/data.h"

#include <fmt/format.h>

#include <algorithm>
#include <random>

#include "tokenizer/tokenizer.h"
#include "train/data.h"
#include "train/run_config.h"
#include "util/error.h"
#include "util/io.h"

namespace tsumugi::sft {

namespace {

// Replaces {system}, {instruction} and {input} in one pass, so braces inside the values are kept.
std::string fill(const std::string& tmpl, const std::string& system, const std::string& instruction,
                 const std::string& input) {
  std::string out;
  out.reserve(tmpl.size() + system.size() + instruction.size() + input.size());
  for (std::size_t i = 0; i < tmpl.size();) {
    if (tmpl[i] == '{') {
      const std::pair<const char*, const std::string*> names[] = {
          {"{system}", &system}, {"{instruction}", &instruction}, {"{input}", &input}};
      bool hit = false;
      for (const auto& [name, value] : names) {
        const std::size_t n = std::char_traits<char>::length(name);
        if (tmpl.compare(i, n, name) == 0) {
          out += *value;
          i += n;
          hit = true;
          break;
        }
      }
      if (hit) continue;
    }
    out += tmpl[i++];
  }
  return out;
}

std::string string_field(const nlohmann::json& rec, const char* name, const std::string& where, bool required) {
  auto it = rec.find(name);
  if (it == rec.end() || it->is_null()) {
    if (required) fail("{}: field '{}' is missing", where, name);
    return {};
  }
  if (!it->is_string()) fail("{}: field '{}' must be a string (got {})", where, name, it->type_name());
  return it->get<std::string>();
}

Rendered render_messages(const nlohmann::json& msgs, const Template& t, const std::string& where) {
  if (!msgs.is_array() || msgs.empty()) fail("{}: field 'messages' must be a non-empty array", where);
  std::size_t i = 0;
  std::string system = t.system;
  auto role_of = [&](std::size_t k) {
    const auto& m = msgs[k];
    if (!m.is_object()) fail("{}: messages[{}] is not an object", where, k);
    return string_field(m, "role", fmt::format("{}: messages[{}]", where, k), true);
  };
  auto content_of = [&](std::size_t k) {
    return string_field(msgs[k], "content", fmt::format("{}: messages[{}]", where, k), true);
  };
  if (role_of(0) == "system") {
    system = content_of(0);
    i = 1;
  }
  Rendered r;
  bool first = true;
  while (i < msgs.size()) {
    const std::string ru = role_of(i);
    if (ru != "user")
      fail("{}: messages[{}] has role '{}' where a 'user' turn was expected (after the optional system message, "
           "turns alternate user, assistant)",
           where, i, ru);
    const std::string user = content_of(i);
    if (i + 1 >= msgs.size())
      fail("{}: messages[{}]: the last message must be the assistant's (there is no response to train on)", where, i);
    const std::string ra = role_of(i + 1);
    if (ra != "assistant")
      fail("{}: messages[{}] has role '{}' where an 'assistant' turn was expected", where, i + 1, ra);
    const std::string answer = content_of(i + 1);
    r.text += first ? fill(t.prompt, system, user, "") : fill(t.turn, system, user, "");
    r.responses.emplace_back(r.text.size(), r.text.size() + answer.size());
    r.text += answer;
    first = false;
    i += 2;
  }
  if (first) fail("{}: messages has no user/assistant turn", where);
  return r;
}

Rendered render_text(const std::string& text, const Template& t, const std::string& where) {
  const std::string& marker = t.response_marker;
  const std::string next_turn = t.turn.substr(0, t.turn.find("{instruction}"));
  Rendered r;
  r.text = text;
  std::size_t pos = text.find(marker);
  if (pos == std::string::npos)
    fail("{}: field 'text' has no response marker {} (template.response_marker)", where, nlohmann::json(marker).dump());
  while (pos != std::string::npos) {
    const std::size_t begin = pos + marker.size();
    std::size_t next = text.find(marker, begin);
    std::size_t end = next == std::string::npos ? text.size() : next;
    if (!next_turn.empty()) {
      std::size_t turn = text.find(next_turn, begin);
      if (turn != std::string::npos) end = std::min(end, turn);
    }
    r.responses.emplace_back(begin, end);
    pos = next;
  }
  return r;
}

std::size_t common_prefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  std::size_t n = 0;
  while (n < a.size() && n < b.size() && a[n] == b[n]) ++n;
  return n;
}

}  // namespace

Rendered render_record(const nlohmann::json& rec, const Template& t, const std::string& where) {
  if (!rec.is_object()) fail("{}: a record must be a JSON object (got {})", where, rec.type_name());
  if (rec.contains("messages")) return render_messages(rec["messages"], t, where);
  if (rec.contains("instruction") || rec.contains("output")) {
    const std::string instruction = string_field(rec, "instruction", where, true);
    const std::string input = string_field(rec, "input", where, false);
    const std::string output = string_field(rec, "output", where, true);
    Rendered r;
    r.text = render_prompt(t, instruction, input);
    r.responses.emplace_back(r.text.size(), r.text.size() + output.size());
    r.text += output;
    return r;
  }
  if (rec.contains("text")) return render_text(string_field(rec, "text", where, true), t, where);
  fail("{}: no 'instruction'/'output', 'text' or 'messages' field", where);
}

std::string render_prompt(const Template& t, const std::string& instruction, const std::string& input) {
  if (input.empty()) return fill(t.prompt, t.system, instruction, "");
  return fill(t.prompt_with_input, t.system_with_input, instruction, input);
}

Example tokenize(const Rendered& r, const tokenizer::Tokenizer& tok, int32_t eod) {
  std::vector<int32_t> full, prefix;
  tok.encode(r.text, full);
  Example ex;
  std::size_t done = 0;
  auto take = [&](std::size_t upto, bool target) {
    for (; done < upto; ++done) {
      ex.tokens.push_back(full[done]);
      ex.is_target.push_back(target ? 1 : 0);
    }
  };
  for (const auto& [b, e] : r.responses) {
    prefix.clear();
    tok.encode(std::string_view(r.text).substr(0, b), prefix);
    const std::size_t pb = std::max(done, common_prefix(prefix, full));
    std::size_t pe = full.size();
    if (e < r.text.size()) {
      prefix.clear();
      tok.encode(std::string_view(r.text).substr(0, e), prefix);
      pe = common_prefix(prefix, full);
    }
    pe = std::max(pe, pb);
    take(pb, false);
    take(pe, true);
    ex.tokens.push_back(eod);
    ex.is_target.push_back(1);
  }
  take(full.size(), false);
  return ex;
}

std::vector<Example> load_examples(const std::vector<std::string>& files, const Template& t,
                                   const tokenizer::Tokenizer& tok, int32_t eod, LoadStats* stats) {
  std::vector<Example> out;
  for (const auto& path : files) {
    LineReader reader(path);
    std::string_view line;
    uint64_t records = 0;
    while (reader.next(line)) {
      if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
      const std::string where = fmt::format("{}:{}", path, reader.line_number());
      nlohmann::json rec;
      try {
        rec = nlohmann::json::parse(line);
      } catch (const nlohmann::json::parse_error& e) {
        fail("{}: invalid JSON: {}", where, e.what());
      }
      Example ex = tokenize(render_record(rec, t, where), tok, eod);
      ++records;
      if (stats) {
        stats->tokens += ex.tokens.size();
        for (uint8_t x : ex.is_target) stats->target_tokens += x;
      }
      out.push_back(std::move(ex));
    }
    if (records == 0) fail("{}: no records (the file is empty)", path);
    if (stats) stats->records += records;
  }
  if (stats) stats->examples = out.size();
  return out;
}

Sequences pack(const std::vector<Example>& examples, const PackOptions& o, LoadStats* stats) {
  const std::size_t W = static_cast<std::size_t>(o.seq_len) + 1;  // a sequence's tokens incl. the last target
  Sequences s;
  s.seq_len = o.seq_len;
  std::vector<int32_t> cur;
  std::vector<uint8_t> cur_t;
  auto flush = [&] {
    if (cur.empty()) return;
    for (int i = 0; i < o.seq_len; ++i) {
      s.inputs.push_back(static_cast<std::size_t>(i) < cur.size() ? cur[i] : o.pad);
      const std::size_t next = static_cast<std::size_t>(i) + 1;
      s.targets.push_back(next < cur.size() && cur_t[next] ? cur[next] : -1);
    }
    cur.clear();
    cur_t.clear();
  };
  for (const auto& ex : examples) {
    std::size_t n = ex.tokens.size();
    if (n > W) {
      if (o.drop_overflow) {
        if (stats) ++stats->dropped;
        continue;
      }
      n = W;
      // a response cut off entirely leaves nothing to learn from
      if (std::find(ex.is_target.begin() + 1, ex.is_target.begin() + static_cast<std::ptrdiff_t>(n), 1) ==
          ex.is_target.begin() + static_cast<std::ptrdiff_t>(n)) {
        if (stats) ++stats->dropped;
        continue;
      }
      if (stats) ++stats->truncated;
    }
    if (!o.packing || cur.size() + n > W) flush();
    cur.insert(cur.end(), ex.tokens.begin(), ex.tokens.begin() + static_cast<std::ptrdiff_t>(n));
    cur_t.insert(cur_t.end(), ex.is_target.begin(), ex.is_target.begin() + static_cast<std::ptrdiff_t>(n));
  }
  flush();
  return s;
}

SftBatches::SftBatches(Sequences train, Sequences valid, uint64_t seed)
    : train_(std::move(train)), valid_(std::move(valid)), seed_(seed) {
  if (train_.count() == 0) fail("no training sequences: every example was dropped (see data.overflow)");
}

void SftBatches::train_sequence(uint64_t index, int32_t* inputs, int32_t* targets) const {
  const uint64_t n = train_.count();
  const uint64_t epoch = index / n;
  if (epoch != perm_epoch_) {
    perm_.resize(n);
    for (uint64_t i = 0; i < n; ++i) perm_[i] = static_cast<uint32_t>(i);
    std::mt19937_64 rng(train::splitmix64(seed_ * 0x100000001B3ull ^ train::splitmix64(epoch)));
    for (uint64_t i = n - 1; i > 0; --i) std::swap(perm_[i], perm_[rng() % (i + 1)]);
    perm_epoch_ = epoch;
  }
  const std::size_t T = train_.seq_len, at = static_cast<std::size_t>(perm_[index % n]) * T;
  std::copy_n(train_.inputs.begin() + at, T, inputs);
  std::copy_n(train_.targets.begin() + at, T, targets);
}

uint64_t SftBatches::valid_sequences(const train::TrainOptions& t) const {
  // As in pretraining, one evaluation reads at most eval_batches x batch_size sequences: the first
  // ones, the same every time, so the curve compares like with like.
  return std::min<uint64_t>(valid_.count(), static_cast<uint64_t>(t.eval_batches) * t.batch_size);
}

void SftBatches::valid_sequence(uint64_t index, int32_t* inputs, int32_t* targets) const {
  const std::size_t T = valid_.seq_len, at = static_cast<std::size_t>(index % valid_.count()) * T;
  std::copy_n(valid_.inputs.begin() + at, T, inputs);
  std::copy_n(valid_.targets.begin() + at, T, targets);
}

void SftBatches::check_vocabulary(int vocab_size) const {
  for (const Sequences* s : {&train_, &valid_})
    for (int32_t x : s->inputs)
      if (x >= vocab_size)
        fail("token id {} of the instruction data is outside the model's vocabulary ({} rows): the checkpoint's "
             "tokenizer and model disagree",
             x, vocab_size);
}

std::string SftBatches::describe() const {
  uint64_t tt = 0, vt = 0;
  for (int32_t x : train_.targets) tt += x >= 0;
  for (int32_t x : valid_.targets) vt += x >= 0;
  return fmt::format("{} training sequences ({} response tokens), {} held-out ({} response tokens)", train_.count(),
                     tt, valid_.count(), vt);
}

}  // namespace tsumugi::sft
