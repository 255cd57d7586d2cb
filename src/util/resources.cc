#include "util/resources.h"

namespace tsumugi::resources {

std::optional<std::string_view> find(std::string_view name) {
  for (const auto& [k, v] : all())
    if (k == name) return v;
  return std::nullopt;
}

}  // namespace tsumugi::resources
