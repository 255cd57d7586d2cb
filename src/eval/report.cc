#include "eval/report.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <optional>
#include <map>
#include <set>

#include "util/html.h"
#include "util/error.h"
#include "util/io.h"

namespace tsumugi::eval {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string esc(std::string_view s) { return html::escape(s); }
const char* color_of(std::size_t run) { return html::series_color(run); }

constexpr const char* kStyle = R"CSS(
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", "Hiragino Sans", "Noto Sans JP", sans-serif; margin: 24px; color: #222; background: #fafafa; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 24px 0 8px; }
.meta { color: #666; margin: 0; }
table.scores { border-collapse: collapse; background: #fff; }
table.scores th, table.scores td { border: 1px solid #ddd; padding: 4px 8px; text-align: right; white-space: nowrap; }
table.scores th:first-child, table.scores td.name { text-align: left; }
table.scores tr.cat td { background: #f3f3f3; font-weight: 600; }
td.best { font-weight: 700; }
.sw { display: inline-block; width: 12px; height: 12px; border-radius: 2px; margin-right: 6px; vertical-align: -1px; }
.legend { margin: 0 0 8px; } .legend span.item { margin-right: 16px; white-space: nowrap; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); gap: 16px; }
figure.chart { margin: 0; background: #fff; border: 1px solid #ddd; border-radius: 4px; padding: 8px; }
figure.chart figcaption { font-weight: 600; margin-bottom: 4px; }
figure.chart svg { width: 100%; height: auto; display: block; }
svg .grid { stroke: #eee; } svg .frame { fill: none; stroke: #bbb; }
svg text { font-size: 11px; fill: #555; } svg text.lbl { font-size: 10px; }
)CSS";

std::string fmt_score(const json& v) {
  if (!v.is_number()) return "";
  const double d = v.get<double>();
  return std::fabs(d) >= 100 ? fmt::format("{:.2f}", d) : fmt::format("{:.4f}", d);
}

// key → category for one run's datasets (the resolved category scores.json records).
std::map<std::string, std::string> key_categories(const json& doc) {
  std::map<std::string, std::string> out;
  if (!doc.contains("datasets")) return out;
  for (const auto& [name, info] : doc["datasets"].items()) {
    const std::string cat = info.value("category", "");
    if (cat.empty() || !info.contains("scores")) continue;
    for (const auto& [m, v] : info["scores"].items())
      if (m != "bleu_en") out[name + "_" + m] = cat;
  }
  return out;
}

// Grouped bars: one group per label, one bar per run; values on a 0..max(1, top) scale.
std::string bar_chart(const std::string& title, const std::vector<std::string>& labels, const std::vector<EvalRun>& runs,
                      const std::function<std::optional<double>(const EvalRun&, const std::string&)>& value) {
  const double W = 440, H = 230, left = 40, right = 8, top = 10, bottom = 40;
  double vmax = 1.0;
  for (const auto& l : labels)
    for (const auto& r : runs)
      if (auto v = value(r, l)) vmax = std::max(vmax, *v);
  const double plot_w = W - left - right, plot_h = H - top - bottom;
  const double group_w = plot_w / std::max<std::size_t>(1, labels.size());
  const double bar_w = std::min(36.0, group_w * 0.8 / std::max<std::size_t>(1, runs.size()));
  std::string s = fmt::format("<figure class=\"chart\"><figcaption>{}</figcaption><svg viewBox=\"0 0 {} {}\" role=\"img\">",
                              esc(title), W, H);
  for (int t = 0; t <= 4; ++t) {
    const double v = vmax * t / 4, y = top + plot_h - plot_h * t / 4;
    s += fmt::format("<line class=\"grid\" x1=\"{}\" x2=\"{}\" y1=\"{:.1f}\" y2=\"{:.1f}\"/>", left, W - right, y, y);
    s += fmt::format("<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{:.2g}</text>", left - 4, y + 4, v);
  }
  for (std::size_t g = 0; g < labels.size(); ++g) {
    const double gx = left + group_w * g + (group_w - bar_w * runs.size()) / 2;
    for (std::size_t r = 0; r < runs.size(); ++r) {
      auto v = value(runs[r], labels[g]);
      if (!v) continue;
      const double h = plot_h * std::max(0.0, *v) / vmax;
      s += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"{}\"><title>{} · {}: {:.4f}</title></rect>",
                       gx + bar_w * r, top + plot_h - h, std::max(1.0, bar_w - 2), h, color_of(r), esc(runs[r].name),
                       esc(labels[g]), *v);
    }
    // "{dataset}_{metric}" on two lines, horizontal, so that long names stay inside the chart.
    const double cx = left + group_w * g + group_w / 2;
    std::string first = labels[g], second;
    for (const char* m : {"_exact_match", "_char_f1", "_set_f1", "_pearson", "_spearman", "_bleu_en", "_acc_norm", "_acc"}) {
      const std::string suffix = m;
      if (first.size() > suffix.size() && first.compare(first.size() - suffix.size(), suffix.size(), suffix) == 0) {
        second = suffix.substr(1);
        first.resize(first.size() - suffix.size());
        break;
      }
    }
    s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" class=\"lbl\">{}</text>", cx, top + plot_h + 14,
                     esc(first));
    if (!second.empty())
      s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" class=\"lbl\">{}</text>", cx,
                       top + plot_h + 27, esc(second));
  }
  s += fmt::format("<rect class=\"frame\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"/></svg></figure>\n", left, top, plot_w, plot_h);
  return s;
}

std::optional<double> number_at(const json& obj, const std::string& key) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_number()) return std::nullopt;
  return it->get<double>();
}

}  // namespace

EvalRun read_eval_run(const std::string& run) {
  EvalRun r;
  fs::path p(run);
  fs::path file = fs::is_directory(p) ? p / "scores.json" : p;
  r.dir = fs::is_directory(p) ? p.string() : p.parent_path().string();
  fs::path d = fs::path(r.dir).lexically_normal();
  if (d.filename().empty()) d = d.parent_path();
  r.name = d.filename().string();
  if (r.name.empty()) r.name = file.string();
  if (!fs::exists(file)) fail("{}: no scores.json (is it a directory `tsumugi eval` wrote?)", file.string());
  try {
    r.scores = json::parse(read_file(file.string()));
  } catch (const json::exception& e) {
    fail("{}: not valid JSON: {}", file.string(), e.what());
  }
  if (!r.scores.is_object() || !r.scores.contains("scores") || !r.scores["scores"].is_object())
    fail("{}: expected an object with \"scores\" (the file `tsumugi eval` writes)", file.string());
  return r;
}

std::string render_eval_report(const std::vector<EvalRun>& runs_in) {
  std::vector<EvalRun> runs = runs_in;
  std::map<std::string, int> name_count;
  for (const auto& r : runs) ++name_count[r.name];
  for (auto& r : runs)
    if (name_count[r.name] > 1) r.name = r.dir;

  // Every score key, grouped by category (keys without one come last).
  std::map<std::string, std::string> cat_of;
  std::set<std::string> keys, cats;
  for (const auto& r : runs) {
    for (const auto& [k, c] : key_categories(r.scores)) cat_of[k] = c;
    for (const auto& [k, v] : r.scores["scores"].items()) keys.insert(k);
    if (r.scores.contains("categories"))
      for (const auto& [c, v] : r.scores["categories"].items())
        if (c != "AVG") cats.insert(c);
  }
  std::string h = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>tsumugi eval report</title><style>";
  h += kStyle;
  h += "</style></head><body>\n<h1>Evaluation report</h1>\n";
  h += "<p class=\"meta\">Scores as llm-jp-eval computes them (0–1; BLEU 0–100; perplexity and bits lower is better). ";
  h += "Categories are llm-jp-eval's jaster groups; AVG is the mean of the categories present.</p>\n";
  h += "<div class=\"legend\">";
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const json& d = runs[i].scores;
    std::string model = d.value("model", "");
    if (d.contains("adapter")) model += " + " + d.value("adapter", "");
    h += fmt::format("<span class=\"item\"><span class=\"sw\" style=\"background:{}\"></span>{} <span class=\"meta\">({}; {}-shot, prompt {})</span></span>",
                     color_of(i), esc(runs[i].name), esc(model), d.value("num_few_shots", 0), esc(d.value("prompt_style", "")));
  }
  h += "</div>\n";

  // Table.
  h += "<h2>Scores</h2>\n<table class=\"scores\"><tr><th>score</th>";
  for (const auto& r : runs) h += "<th>" + esc(r.name) + "</th>";
  h += "</tr>\n";
  auto row = [&](const std::string& label, const std::function<std::optional<double>(const EvalRun&)>& get, bool cat_row,
                 bool lower_better) {
    std::vector<std::optional<double>> vs;
    for (const auto& r : runs) vs.push_back(get(r));
    std::optional<double> best;
    for (auto& v : vs)
      if (v && (!best || (lower_better ? *v < *best : *v > *best))) best = v;
    h += std::string("<tr") + (cat_row ? " class=\"cat\"" : "") + "><td class=\"name\">" + esc(label) + "</td>";
    for (auto& v : vs)
      h += std::string("<td") + (runs.size() > 1 && v && best && *v == *best ? " class=\"best\"" : "") + ">" +
           (v ? fmt_score(*v) : "–") + "</td>";
    h += "</tr>\n";
  };
  auto cat_value = [](const std::string& c) {
    return [c](const EvalRun& r) -> std::optional<double> {
      return r.scores.contains("categories") ? number_at(r.scores["categories"], c) : std::nullopt;
    };
  };
  auto key_value = [](const std::string& k) {
    return [k](const EvalRun& r) -> std::optional<double> { return number_at(r.scores["scores"], k); };
  };
  row("AVG", cat_value("AVG"), true, false);
  for (const auto& c : cats) {
    row(c, cat_value(c), true, false);
    for (const auto& k : keys)
      if (cat_of.count(k) && cat_of[k] == c) row("  " + k, key_value(k), false, false);
  }
  for (const auto& k : keys) {
    if (cat_of.count(k)) continue;
    const bool lower = k.size() > 11 && (k.find("_perplexity") != std::string::npos || k.find("_bits_per_") != std::string::npos);
    row(k, key_value(k), false, lower);
  }
  h += "</table>\n";

  // Charts.
  h += "<h2>Charts</h2>\n<div class=\"charts\">\n";
  if (!cats.empty()) {
    std::vector<std::string> labels(cats.begin(), cats.end());
    labels.push_back("AVG");
    h += bar_chart("Categories", labels, runs, [](const EvalRun& r, const std::string& c) {
      return r.scores.contains("categories") ? number_at(r.scores["categories"], c) : std::nullopt;
    });
  }
  for (const auto& c : cats) {
    std::vector<std::string> labels;
    for (const auto& k : keys)
      if (cat_of.count(k) && cat_of[k] == c) labels.push_back(k);
    h += bar_chart(c, labels, runs, [](const EvalRun& r, const std::string& k) { return number_at(r.scores["scores"], k); });
  }
  h += "</div>\n</body></html>\n";
  return h;
}

void write_eval_report(const std::vector<std::string>& runs, const std::string& out_html) {
  if (runs.empty()) fail("no run directories given");
  std::vector<EvalRun> rs;
  for (const auto& r : runs) rs.push_back(read_eval_run(r));
  write_file_atomic(out_html, render_eval_report(rs));
}

}  // namespace tsumugi::eval
