#pragma once
// TOML or JSON configuration text to one JSON value, with errors that name file, line and column.
#include <nlohmann/json.hpp>

#include <string>

namespace tsumugi {

nlohmann::json parse_config_text(const std::string& content, const std::string& origin, bool is_toml);
// Reads `path`; TOML unless it ends in ".json".
nlohmann::json parse_config_file(const std::string& path);

}  // namespace tsumugi
