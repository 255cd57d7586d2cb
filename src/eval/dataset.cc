#include "eval/dataset.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "text/utf8.h"
#include "util/error.h"
#include "util/io.h"

namespace tsumugi::eval {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string json_message(const std::exception& e) {
  std::string m = e.what();
  if (auto p = m.find("] "); m.rfind("[json.exception", 0) == 0 && p != std::string::npos) m = m.substr(p + 2);
  return m;
}

const json& field(const json& obj, const char* key, json::value_t type, const char* type_name, const std::string& path,
                  const std::string& item) {
  auto it = obj.find(key);
  const std::string where = item.empty() ? std::string(key) : item + "." + key;
  if (it == obj.end()) fail("{}: {}: missing field \"{}\"", path, item.empty() ? "top level" : item, key);
  const bool ok = type == json::value_t::number_integer ? it->is_number_integer() : it->type() == type;
  if (!ok) fail("{}: {}: expected {}, found {}", path, where, type_name, it->type_name());
  return *it;
}

std::string string_field(const json& obj, const char* key, const std::string& path, const std::string& item) {
  std::string s = field(obj, key, json::value_t::string, "a string", path, item).get<std::string>();
  if (!text::is_valid_utf8(s)) fail("{}: {}.{}: not valid UTF-8", path, item, key);
  return s;
}

std::vector<Example> examples(const json& top, const char* key, const std::string& path) {
  const json& arr = field(top, key, json::value_t::array, "an array", path, "");
  std::vector<Example> out;
  for (std::size_t i = 0; i < arr.size(); ++i) {
    const std::string item = fmt::format("{}[{}]", key, i);
    if (!arr[i].is_object()) fail("{}: {}: expected an object with \"input\" and \"output\", found {}", path, item, arr[i].type_name());
    Example e;
    e.input = string_field(arr[i], "input", path, item);
    e.output = string_field(arr[i], "output", path, item);
    if (auto c = arr[i].find("choices"); c != arr[i].end()) {
      if (!c->is_array() || c->empty()) fail("{}: {}.choices: expected a non-empty array of strings", path, item);
      for (std::size_t k = 0; k < c->size(); ++k) {
        if (!(*c)[k].is_string()) fail("{}: {}.choices[{}]: expected a string, found {}", path, item, k, (*c)[k].type_name());
        e.choices.push_back((*c)[k].get<std::string>());
      }
    }
    out.push_back(std::move(e));
  }
  return out;
}

bool known(std::string_view m, const auto& list) {
  return std::any_of(std::begin(list), std::end(list), [&](const char* k) { return m == k; });
}

}  // namespace

bool Dataset::multiple_choice() const {
  return std::any_of(metrics.begin(), metrics.end(), [](const std::string& m) { return known(m, kChoiceMetrics); });
}

bool is_text_jsonl(const std::string& path) {
  return ends_with(path, ".jsonl") || ends_with(path, ".jsonl.gz") || ends_with(path, ".jsonl.zst");
}

std::string dataset_name(const std::string& path) {
  std::string n = fs::path(path).filename().string();
  for (std::string_view suffix : {".jsonl.gz", ".jsonl.zst", ".jsonl", ".json"})
    if (ends_with(n, suffix)) return n.substr(0, n.size() - suffix.size());
  return n;
}

Dataset read_dataset(const std::string& path) {
  json top;
  try {
    top = json::parse(read_file(path));
  } catch (const json::exception& e) {
    fail("{}: not valid JSON: {}", path, json_message(e));
  }
  if (!top.is_object()) fail("{}: expected a JSON object (llm-jp-eval's dataset format), found {}", path, top.type_name());
  Dataset d;
  d.path = path;
  d.name = dataset_name(path);
  d.instruction = string_field(top, "instruction", path, "");
  d.output_length = field(top, "output_length", json::value_t::number_integer, "an integer", path, "").get<int>();
  if (d.output_length <= 0) fail("{}: output_length: must be positive, found {}", path, d.output_length);
  const json& metrics = field(top, "metrics", json::value_t::array, "an array", path, "");
  if (metrics.empty()) fail("{}: metrics: the list is empty", path);
  for (std::size_t i = 0; i < metrics.size(); ++i) {
    if (!metrics[i].is_string()) fail("{}: metrics[{}]: expected a string, found {}", path, i, metrics[i].type_name());
    const std::string m = metrics[i].get<std::string>();
    if (!known(m, kGenerationMetrics) && !known(m, kChoiceMetrics)) {
      std::string all;
      for (const char* k : kGenerationMetrics) all += std::string(all.empty() ? "" : ", ") + k;
      for (const char* k : kChoiceMetrics) all += std::string(", ") + k;
      fail("{}: metrics[{}]: unknown metric '{}' (known: {})", path, i, m, all);
    }
    d.metrics.push_back(m);
  }
  // few_shots is optional in older llm-jp-eval files (it kept them in a separate train file).
  if (top.contains("few_shots")) d.few_shots = examples(top, "few_shots", path);
  d.samples = examples(top, "samples", path);
  if (d.samples.empty()) fail("{}: samples: the list is empty; nothing to evaluate", path);
  if (auto c = top.find("category"); c != top.end()) {
    if (!c->is_string()) fail("{}: category: expected a string, found {}", path, c->type_name());
    d.category = c->get<std::string>();
  }
  if (d.multiple_choice()) {
    for (std::size_t i = 0; i < d.samples.size(); ++i) {
      const Example& e = d.samples[i];
      if (e.choices.empty()) fail("{}: samples[{}]: metric acc/acc_norm needs \"choices\" in every sample", path, i);
      if (std::find(e.choices.begin(), e.choices.end(), e.output) == e.choices.end())
        fail("{}: samples[{}]: output '{}' is not one of its choices", path, i, e.output);
    }
  }
  return d;
}

std::vector<TextDoc> read_text_jsonl(const std::string& path) {
  LineReader r(path);
  std::vector<TextDoc> out;
  std::string_view line;
  while (r.next(line)) {
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    json j;
    try {
      j = json::parse(line);
    } catch (const json::exception& e) {
      throw InputError(path, r.line_number(), "not valid JSON: " + json_message(e));
    }
    if (!j.is_object()) throw InputError(path, r.line_number(), fmt::format("expected a JSON object, found {}", j.type_name()));
    auto t = j.find("text");
    if (t == j.end()) throw InputError(path, r.line_number(), "missing field \"text\"");
    if (!t->is_string()) throw InputError(path, r.line_number(), fmt::format("\"text\" is {}, expected a string", t->type_name()));
    std::string s = t->get<std::string>();
    if (!text::is_valid_utf8(s)) throw InputError(path, r.line_number(), "\"text\" is not valid UTF-8");
    out.push_back({std::move(s), r.line_number()});
  }
  if (out.empty()) fail("{}: no documents with a \"text\" field", path);
  return out;
}

}  // namespace tsumugi::eval
