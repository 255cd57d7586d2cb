#pragma once
// A profile is an ordered list of filters with parameters, read from TOML or JSON
// (by extension) or taken from a built-in preset compiled into the binary.
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace tsumugi::corpus {

struct Profile {
  std::string name;
  std::string description;
  std::vector<nlohmann::json> filters;  // each {"type": ..., "name"?: ..., params...}
};

// Parses profile text; `origin` names the file in errors.
Profile parse_profile(const std::string& content, const std::string& origin, bool is_toml);
Profile load_profile_file(const std::string& path);
Profile load_preset(const std::string& name);
std::vector<std::string> preset_names();

}  // namespace tsumugi::corpus
