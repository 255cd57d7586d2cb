#include "corpus/profile.h"

#include <fmt/format.h>
#include <fmt/ranges.h>


#include "util/error.h"
#include "util/io.h"
#include "util/config_file.h"
#include "util/resources.h"

namespace tsumugi::corpus {

namespace {
bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}
}  // namespace

Profile parse_profile(const std::string& content, const std::string& origin, bool is_toml) {
  nlohmann::json j = parse_config_text(content, origin, is_toml);
  if (!j.is_object()) fail("{}: a profile must be a table/object", origin);
  Profile p;
  p.name = j.value("name", origin);
  p.description = j.value("description", "");
  if (!j.contains("filters") || !j["filters"].is_array())
    fail("{}: a profile needs a list of filters ([[filters]] tables in TOML, \"filters\": [...] in JSON)", origin);
  for (auto& f : j["filters"]) {
    if (!f.is_object() || !f.contains("type")) fail("{}: every filter needs a 'type', got {}", origin, f.dump());
    p.filters.push_back(f);
  }
  for (auto& [k, v] : j.items())
    if (k != "name" && k != "description" && k != "filters") fail("{}: unknown top-level key '{}'", origin, k);
  return p;
}

Profile load_profile_file(const std::string& path) {
  std::string content = read_file(path);
  bool is_toml = !ends_with(path, ".json");
  return parse_profile(content, path, is_toml);
}

std::vector<std::string> preset_names() {
  std::vector<std::string> names;
  for (auto& [k, v] : resources::all()) {
    std::string key(k);
    if (key.rfind("presets/", 0) == 0 && ends_with(key, ".toml")) names.push_back(key.substr(8, key.size() - 13));
  }
  return names;
}

Profile load_preset(const std::string& name) {
  auto data = resources::find("presets/" + name + ".toml");
  if (!data) fail("unknown preset '{}' (available: {})", name, fmt::join(preset_names(), ", "));
  return parse_profile(std::string(*data), "preset " + name, true);
}

}  // namespace tsumugi::corpus
