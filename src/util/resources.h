#pragma once
// Files compiled into the binary from resources/ (presets, word lists).
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

namespace tsumugi::resources {

// All embedded files as (path relative to resources/, bytes).
const std::vector<std::pair<std::string_view, std::string_view>>& all();
// The bytes of one embedded file, e.g. "wordlists/adult_ja.txt".
std::optional<std::string_view> find(std::string_view name);

}  // namespace tsumugi::resources
