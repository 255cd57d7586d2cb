#pragma once
// Small pieces shared by the self-contained HTML reports (pretraining runs, evaluations).
#include <cstddef>
#include <iterator>
#include <string>
#include <string_view>

namespace tsumugi::html {

// Text for HTML element content and attribute values.
inline std::string escape(std::string_view s) {
  std::string o;
  o.reserve(s.size());
  for (char ch : s) {
    switch (ch) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      case '\'': o += "&#39;"; break;
      default: o += ch;
    }
  }
  return o;
}

// The colour of the n-th run or series in a chart (a 10-colour palette, repeating).
inline const char* series_color(std::size_t n) {
  static constexpr const char* kPalette[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                                             "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};
  return kPalette[n % std::size(kPalette)];
}

}  // namespace tsumugi::html
