#include "util/config_file.h"

#include <toml++/toml.h>

#include "util/error.h"
#include "util/io.h"

namespace tsumugi {
namespace {
nlohmann::json toml_to_json(const toml::node& n) {
  if (auto* t = n.as_table()) {
    nlohmann::json j = nlohmann::json::object();
    for (auto& [k, v] : *t) j[std::string(k.str())] = toml_to_json(v);
    return j;
  }
  if (auto* a = n.as_array()) {
    nlohmann::json j = nlohmann::json::array();
    for (auto& v : *a) j.push_back(toml_to_json(v));
    return j;
  }
  if (auto* v = n.as_string()) return v->get();
  if (auto* v = n.as_integer()) return v->get();
  if (auto* v = n.as_floating_point()) return v->get();
  if (auto* v = n.as_boolean()) return v->get();
  return nlohmann::json();
}
}  // namespace

nlohmann::json parse_config_text(const std::string& content, const std::string& origin, bool is_toml) {
  if (is_toml) {
    try {
      return toml_to_json(toml::parse(content, origin));
    } catch (const toml::parse_error& e) {
      fail("{}:{}:{}: invalid TOML: {}", origin, e.source().begin.line, e.source().begin.column, e.description());
    }
  }
  try {
    return nlohmann::json::parse(content);
  } catch (const nlohmann::json::parse_error& e) {
    fail("{}: invalid JSON at byte {}: {}", origin, e.byte, e.what());
  }
}

nlohmann::json parse_config_file(const std::string& path) {
  bool is_json = path.size() >= 5 && path.compare(path.size() - 5, 5, ".json") == 0;
  return parse_config_text(read_file(path), path, !is_json);
}

}  // namespace tsumugi
