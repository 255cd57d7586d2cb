#include "corpus/filter.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "util/error.h"

namespace tsumugi::corpus {

Params::Params(std::string filter_type, nlohmann::json j) : type_(std::move(filter_type)), j_(std::move(j)) {
  used_.insert("type");
  used_.insert("name");
}

bool Params::has(const std::string& key) const { return j_.contains(key); }

const nlohmann::json* Params::get(const std::string& key) {
  used_.insert(key);
  auto it = j_.find(key);
  return it == j_.end() ? nullptr : &*it;
}

double Params::number(const std::string& key, double def) {
  auto* v = get(key);
  if (!v) return def;
  if (!v->is_number()) fail("filter '{}': parameter '{}' must be a number, got {}", type_, key, v->dump());
  return v->get<double>();
}

int64_t Params::integer(const std::string& key, int64_t def) {
  auto* v = get(key);
  if (!v) return def;
  if (!v->is_number_integer()) fail("filter '{}': parameter '{}' must be an integer, got {}", type_, key, v->dump());
  return v->get<int64_t>();
}

bool Params::boolean(const std::string& key, bool def) {
  auto* v = get(key);
  if (!v) return def;
  if (!v->is_boolean()) fail("filter '{}': parameter '{}' must be true or false, got {}", type_, key, v->dump());
  return v->get<bool>();
}

std::string Params::string(const std::string& key, const std::string& def) {
  auto* v = get(key);
  if (!v) return def;
  if (!v->is_string()) fail("filter '{}': parameter '{}' must be a string, got {}", type_, key, v->dump());
  return v->get<std::string>();
}

std::vector<std::string> Params::strings(const std::string& key, const std::vector<std::string>& def) {
  auto* v = get(key);
  if (!v) return def;
  if (v->is_string()) return {v->get<std::string>()};
  if (!v->is_array()) fail("filter '{}': parameter '{}' must be a list of strings", type_, key);
  std::vector<std::string> out;
  for (auto& e : *v) {
    if (!e.is_string()) fail("filter '{}': parameter '{}' must be a list of strings", type_, key);
    out.push_back(e.get<std::string>());
  }
  return out;
}

void Params::check_all_used() const {
  std::vector<std::string> unknown;
  for (auto& [k, v] : j_.items())
    if (!used_.count(k)) unknown.push_back(k);
  if (!unknown.empty()) fail("filter '{}': unknown parameter(s) {}", type_, fmt::join(unknown, ", "));
}

std::unique_ptr<Filter> make_filter(const nlohmann::json& entry) {
  if (!entry.is_object() || !entry.contains("type") || !entry["type"].is_string())
    fail("a filter entry needs a string 'type', got {}", entry.dump());
  std::string type = entry["type"].get<std::string>();
  for (const auto& spec : filter_specs()) {
    if (spec.type != type) continue;
    Params p(type, entry);
    std::string name = entry.contains("name") && entry["name"].is_string() ? entry["name"].get<std::string>() : type;
    auto f = spec.make(name, p);
    p.check_all_used();
    return f;
  }
  std::vector<std::string> known;
  for (const auto& s : filter_specs()) known.push_back(s.type);
  fail("unknown filter type '{}' (known: {})", type, fmt::join(known, ", "));
}

}  // namespace tsumugi::corpus
