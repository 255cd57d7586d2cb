#include "train/report.h"

#include <algorithm>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "util/html.h"
#include "util/error.h"
#include "util/io.h"
#include "util/log.h"

namespace tsumugi::train {

namespace fs = std::filesystem;
using Series = std::vector<std::pair<int64_t, double>>;

namespace {

// ---------------------------------------------------------------------------------------------
// Reading runs

void append_point(Series& s, int64_t step, double v) {
  // A resumed run restarts from its checkpoint's step: its lines supersede the old ones there.
  while (!s.empty() && s.back().first >= step) s.pop_back();
  s.emplace_back(step, v);
}

bool blank(std::string_view s) { return s.find_first_not_of(" \t\r") == std::string_view::npos; }

// nlohmann's messages start with "[json.exception.parse_error.101] "; the rest says where.
std::string json_message(const std::exception& e) {
  std::string m = e.what();
  if (auto p = m.find("] "); m.rfind("[json.exception", 0) == 0 && p != std::string::npos) m = m.substr(p + 2);
  return m;
}

std::string human_count(double v) {
  const double a = std::fabs(v);
  if (a >= 1e12) return fmt::format("{:.3g}T", v / 1e12);
  if (a >= 1e9) return fmt::format("{:.3g}B", v / 1e9);
  if (a >= 1e6) return fmt::format("{:.3g}M", v / 1e6);
  if (a >= 1e4) return fmt::format("{:.3g}k", v / 1e3);
  return fmt::format("{:.4g}", v);
}

std::string config_value(const nlohmann::json& v, bool count) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  if (v.is_number_integer()) return count ? human_count(v.get<double>()) : std::to_string(v.get<int64_t>());
  if (v.is_number()) return count ? human_count(v.get<double>()) : fmt::format("{:.4g}", v.get<double>());
  return "";
}

// The model's shape from config.json, wherever the trainer's schema puts it: top level or
// a "model" object, under the names common configs use.
std::vector<std::pair<std::string, std::string>> summarize_config(const nlohmann::json& c) {
  std::vector<const nlohmann::json*> scopes;
  if (c.is_object()) {
    scopes.push_back(&c);
    for (const char* k : {"model", "model_config", "arch", "config"})
      if (auto it = c.find(k); it != c.end() && it->is_object()) scopes.push_back(&*it);
  }
  struct Field {
    const char* label;
    std::vector<const char*> keys;
    bool count;
  };
  const Field fields[] = {
      {"family", {"family", "model_family", "architecture", "model_type", "arch"}, false},
      {"layers", {"num_layers", "n_layers", "num_hidden_layers", "layers", "n_layer"}, false},
      {"hidden", {"hidden_size", "hidden", "d_model", "n_embd", "dim"}, false},
      {"params", {"params", "num_params", "n_params", "parameters", "param_count"}, true},
  };
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& f : fields) {
    std::string value;
    for (const auto* s : scopes) {
      for (const char* k : f.keys)
        if (auto it = s->find(k); it != s->end() && (value = config_value(*it, f.count)).size()) break;
      if (!value.empty()) break;
    }
    if (!value.empty()) out.emplace_back(f.label, value);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Rendering helpers

std::string esc(std::string_view s) { return html::escape(s); }
const char* color_of(std::size_t run) { return html::series_color(run); }

// Ticks at 1, 2 or 5 × 10^k, about `target` of them, inside [lo, hi].
std::vector<double> nice_ticks(double lo, double hi, int target, double min_step, double& step) {
  const double raw = (hi - lo) / target;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double norm = raw / mag;
  step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
  step = std::max(step, min_step);
  std::vector<double> t;
  for (double v = std::ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) t.push_back(std::fabs(v) < step * 1e-9 ? 0 : v);
  return t;
}

// A tick label with just the digits its spacing needs: 0.05 → "0.05", 20000 → "20k", 3e-5 → "3.0e-05".
std::string tick_label(double v, double step) {
  if (v == 0) return "0";
  const int k = int(std::floor(std::log10(step) + 1e-9));
  const double a = std::fabs(v);
  if (a >= 1e4 && k >= 0) {
    const double unit = a >= 1e12 ? 1e12 : a >= 1e9 ? 1e9 : a >= 1e6 ? 1e6 : 1e3;
    const char* suffix = unit == 1e12 ? "T" : unit == 1e9 ? "G" : unit == 1e6 ? "M" : "k";
    return fmt::format("{:.{}f}{}", v / unit, std::max(0, int(std::log10(unit)) - k), suffix);
  }
  if (k >= -3) return fmt::format("{:.{}f}", v, std::max(0, -k));
  const int e = int(std::floor(std::log10(a)));
  return fmt::format("{:.{}e}", v, std::max(1, e - k));
}

// Keeps at most ~2 points per horizontal pixel: the lowest and highest of each column (so
// spikes stay visible) plus the series' ends.
Series downsample(const Series& s, double x0, double x1, int columns) {
  if (s.size() <= size_t(2 * columns) || x1 <= x0) return s;
  Series out;
  size_t i = 0;
  while (i < s.size()) {
    const int col = int((double(s[i].first) - x0) / (x1 - x0) * (columns - 1));
    size_t j = i, lo = i, hi = i;
    while (j < s.size() && int((double(s[j].first) - x0) / (x1 - x0) * (columns - 1)) == col) {
      if (s[j].second < s[lo].second) lo = j;
      if (s[j].second > s[hi].second) hi = j;
      ++j;
    }
    std::set<size_t> keep{lo, hi};
    if (i == 0) keep.insert(0);
    if (j == s.size()) keep.insert(j - 1);
    for (size_t k : keep) out.push_back(s[k]);
    i = j;
  }
  return out;
}

struct ChartDef {
  const char* id;
  const char* title;
  std::vector<const char*> fields;
  double scale;  // applied to the values shown
  const char* unit;
  bool always;  // drawn (empty) even when no run has the field
};

const std::vector<ChartDef>& chart_defs() {
  static const std::vector<ChartDef> defs = {
      {"loss", "Loss (train, validation)", {"loss", "val_loss"}, 1.0, "loss", true},
      {"lr", "Learning rate", {"lr"}, 1.0, "lr", true},
      {"grad_norm", "Gradient norm", {"grad_norm"}, 1.0, "norm", true},
      {"throughput", "Throughput", {"tokens_per_s"}, 1.0, "tokens/s", true},
      {"mfu", "Model FLOPs utilization", {"mfu"}, 100.0, "%", false},
      {"memory", "Device memory", {"mem_bytes"}, 1.0 / double(1ull << 30), "GiB", false},
  };
  return defs;
}

constexpr int kW = 640, kH = 300, kLeft = 66, kRight = 16, kTop = 14, kBottom = 42;
constexpr int kPlotW = kW - kLeft - kRight, kPlotH = kH - kTop - kBottom;

struct Line {
  size_t run;
  std::string field;
  Series pts;  // scaled, downsampled
};

// One chart: its SVG and its entry in the page's data (for the hover read-out).
std::string render_chart(const ChartDef& def, const std::vector<RunData>& runs, nlohmann::json& data) {
  std::vector<Line> lines;
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  for (size_t r = 0; r < runs.size(); ++r)
    for (const char* f : def.fields) {
      auto it = runs[r].series.find(f);
      if (it == runs[r].series.end() || it->second.empty()) continue;
      Line l{r, f, it->second};
      for (auto& [step, v] : l.pts) {
        v *= def.scale;
        x0 = std::min(x0, double(step));
        x1 = std::max(x1, double(step));
        y0 = std::min(y0, v);
        y1 = std::max(y1, v);
      }
      lines.push_back(std::move(l));
    }
  std::string svg = fmt::format(
      "<figure class=\"chart\" id=\"chart-{0}\"><figcaption>{1}</figcaption>\n"
      "<svg viewBox=\"0 0 {2} {3}\" data-chart=\"{0}\" role=\"img\" aria-label=\"{1}\">\n"
      "<rect class=\"frame\" x=\"{4}\" y=\"{5}\" width=\"{6}\" height=\"{7}\"/>\n",
      def.id, esc(def.title), kW, kH, kLeft, kTop, kPlotW, kPlotH);
  if (lines.empty()) {
    svg += fmt::format("<text class=\"empty\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">no data yet</text>\n</svg></figure>\n",
                       kLeft + kPlotW / 2, kTop + kPlotH / 2);
    return svg;
  }
  // Room around single points and flat lines.
  if (x1 == x0) x0 -= 1, x1 += 1;
  if (y1 == y0) {
    const double pad = y0 == 0 ? 1 : std::fabs(y0) * 0.1;
    y0 -= pad, y1 += pad;
  } else {
    const double pad = (y1 - y0) * 0.05;
    y0 -= pad, y1 += pad;
  }
  auto px = [&](double x) { return kLeft + (x - x0) / (x1 - x0) * kPlotW; };
  auto py = [&](double y) { return kTop + (y1 - y) / (y1 - y0) * kPlotH; };

  double ystep, xstep;
  for (double t : nice_ticks(y0, y1, 5, 0, ystep))
    svg += fmt::format(
        "<line class=\"grid\" x1=\"{0}\" x2=\"{1}\" y1=\"{2:.1f}\" y2=\"{2:.1f}\"/>"
        "<text class=\"tick\" x=\"{3}\" y=\"{4:.1f}\" text-anchor=\"end\">{5}</text>\n",
        kLeft, kLeft + kPlotW, py(t), kLeft - 6, py(t) + 4, esc(tick_label(t, ystep)));
  for (double t : nice_ticks(x0, x1, 6, 1, xstep))
    svg += fmt::format(
        "<line class=\"grid\" x1=\"{0:.1f}\" x2=\"{0:.1f}\" y1=\"{1}\" y2=\"{2}\"/>"
        "<text class=\"tick\" x=\"{0:.1f}\" y=\"{3}\" text-anchor=\"middle\">{4}</text>\n",
        px(t), kTop, kTop + kPlotH, kTop + kPlotH + 16, esc(tick_label(t, xstep)));
  svg += fmt::format("<text class=\"axis\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">step</text>\n", kLeft + kPlotW / 2, kH - 6);
  svg += fmt::format("<text class=\"axis\" transform=\"translate(14 {}) rotate(-90)\" text-anchor=\"middle\">{}</text>\n",
                     kTop + kPlotH / 2, esc(def.unit));

  nlohmann::json chart = {{"id", def.id},
                          {"width", kW},
                          {"box", {kLeft, kTop, kPlotW, kPlotH}},
                          {"x", {x0, x1}},
                          {"series", nlohmann::json::array()}};
  for (auto& l : lines) {
    l.pts = downsample(l.pts, x0, x1, kPlotW);
    const bool val = l.field == "val_loss";
    const char* color = color_of(l.run);
    svg += fmt::format("<g class=\"series\" data-run=\"{}\" data-field=\"{}\" stroke=\"{}\" fill=\"{}\">", esc(runs[l.run].name),
                       l.field, color, color);
    if (l.pts.size() > 1) {
      svg += fmt::format("<polyline fill=\"none\" stroke-width=\"{}\"{} points=\"", val ? 1.8 : 1.4,
                         val ? " stroke-dasharray=\"6 3\"" : "");
      for (size_t i = 0; i < l.pts.size(); ++i)
        svg += fmt::format("{}{:.1f},{:.1f}", i ? " " : "", px(double(l.pts[i].first)), py(l.pts[i].second));
      svg += "\"/>";
    }
    // Markers where points are few enough to tell apart (evaluations, short runs).
    if (l.pts.size() == 1 || (val && l.pts.size() <= 200))
      for (const auto& [s, v] : l.pts) svg += fmt::format("<circle r=\"2.6\" cx=\"{:.1f}\" cy=\"{:.1f}\"/>", px(double(s)), py(v));
    svg += "</g>\n";
    chart["series"].push_back(
        {{"run", runs[l.run].name}, {"field", l.field}, {"color", color}, {"dashed", val}, {"points", l.pts}});
  }
  svg += fmt::format("<line class=\"cursor\" x1=\"0\" x2=\"0\" y1=\"{}\" y2=\"{}\" visibility=\"hidden\"/>\n</svg></figure>\n",
                     kTop, kTop + kPlotH);
  data["charts"].push_back(std::move(chart));
  return svg;
}

std::optional<double> last_value(const RunData& r, const char* field) {
  auto it = r.series.find(field);
  if (it == r.series.end() || it->second.empty()) return std::nullopt;
  return it->second.back().second;
}

std::string duration(double s) {
  const int64_t t = int64_t(s);
  return fmt::format("{}:{:02d}:{:02d}", t / 3600, t / 60 % 60, t % 60);
}

std::string run_table(const std::vector<RunData>& runs) {
  std::string h =
      "<table class=\"runs\">\n<thead><tr><th>run</th><th>family</th><th>layers</th><th>hidden</th><th>params</th>"
      "<th>step</th><th>loss</th><th>val loss</th><th>tokens/s</th><th>MFU</th><th>memory</th><th>elapsed</th></tr></thead>\n<tbody>\n";
  auto cell = [](std::optional<std::string> s) { return "<td>" + (s ? esc(*s) : std::string("–")) + "</td>"; };
  for (size_t r = 0; r < runs.size(); ++r) {
    const auto& run = runs[r];
    auto cfg = [&](const char* k) -> std::optional<std::string> {
      for (const auto& [label, v] : run.config)
        if (label == k) return v;
      return std::nullopt;
    };
    auto num = [&](const char* f, auto format) -> std::optional<std::string> {
      if (auto v = last_value(run, f)) return format(*v);
      return std::nullopt;
    };
    h += fmt::format("<tr data-run=\"{}\"><td class=\"name\" title=\"{}\"><span class=\"sw\" style=\"background:{}\"></span>{}{}</td>",
                     esc(run.name), esc(run.dir), color_of(r), esc(run.name),
                     run.torn_last_line ? " <span class=\"note\" title=\"the last line of metrics.jsonl is incomplete (still being written) and was skipped\">(live)</span>" : "");
    h += cell(cfg("family")) + cell(cfg("layers")) + cell(cfg("hidden")) + cell(cfg("params"));
    h += cell(run.last_step >= 0 ? std::optional<std::string>(std::to_string(run.last_step)) : std::nullopt);
    h += cell(num("loss", [](double v) { return fmt::format("{:.4f}", v); }));
    h += cell(num("val_loss", [](double v) { return fmt::format("{:.4f}", v); }));
    h += cell(num("tokens_per_s", [](double v) { return human_count(v); }));
    h += cell(num("mfu", [](double v) { return fmt::format("{:.1f}%", v * 100); }));
    h += cell(num("mem_bytes", [](double v) { return fmt::format("{:.1f} GiB", v / double(1ull << 30)); }));
    h += cell(num("elapsed_s", [](double v) { return duration(v); }));
    h += "</tr>\n";
  }
  return h + "</tbody>\n</table>\n";
}

constexpr const char* kStyle = R"CSS(
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", "Hiragino Sans", "Noto Sans JP", sans-serif; margin: 24px; color: #222; background: #fafafa; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 24px 0 8px; }
.meta { color: #666; margin: 0; }
table.runs { border-collapse: collapse; background: #fff; }
table.runs th, table.runs td { border: 1px solid #ddd; padding: 4px 8px; text-align: right; white-space: nowrap; }
table.runs th:first-child, table.runs td.name { text-align: left; }
.sw { display: inline-block; width: 12px; height: 12px; border-radius: 2px; margin-right: 6px; vertical-align: -1px; }
.note { color: #888; font-size: 12px; }
.legend { margin: 0 0 8px; } .legend span.item { margin-right: 16px; white-space: nowrap; }
.legend svg { vertical-align: middle; margin-right: 4px; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(480px, 1fr)); gap: 16px; }
figure.chart { margin: 0; background: #fff; border: 1px solid #ddd; border-radius: 4px; padding: 8px; }
figure.chart figcaption { font-weight: 600; margin-bottom: 4px; }
figure.chart svg { width: 100%; height: auto; display: block; }
svg .frame { fill: none; stroke: #bbb; } svg .grid { stroke: #eee; } svg .cursor { stroke: #888; stroke-dasharray: 2 2; }
svg text { font-size: 11px; fill: #555; } svg .axis { font-size: 12px; fill: #333; } svg .empty { font-size: 14px; fill: #999; }
.tip { position: absolute; background: rgba(255,255,255,.96); border: 1px solid #ccc; border-radius: 4px; padding: 6px 8px; font-size: 12px; pointer-events: none; box-shadow: 0 1px 4px rgba(0,0,0,.15); }
.tip .sw { width: 10px; height: 3px; vertical-align: middle; }
)CSS";

// Hover read-out: the value of every series nearest the pointer's step.
constexpr const char* kScript = R"JS(
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var tip = document.getElementById("tip");
  function fmt(v) {
    var a = Math.abs(v);
    if (a !== 0 && (a >= 1e6 || a < 1e-3)) return v.toExponential(3);
    return String(Number(v.toPrecision(5)));
  }
  function nearest(pts, x) {
    var lo = 0, hi = pts.length - 1;
    while (lo < hi) { var mid = (lo + hi) >> 1; if (pts[mid][0] < x) lo = mid + 1; else hi = mid; }
    if (lo > 0 && x - pts[lo - 1][0] <= pts[lo][0] - x) lo--;
    return pts[lo];
  }
  data.charts.forEach(function (c) {
    var svg = document.querySelector('svg[data-chart="' + c.id + '"]');
    if (!svg) return;
    var cursor = svg.querySelector(".cursor");
    function hide() { tip.hidden = true; cursor.setAttribute("visibility", "hidden"); }
    svg.addEventListener("mouseleave", hide);
    svg.addEventListener("mousemove", function (ev) {
      var r = svg.getBoundingClientRect();
      var px = (ev.clientX - r.left) * c.width / r.width;
      if (px < c.box[0] || px > c.box[0] + c.box[2]) { hide(); return; }
      var step = c.x[0] + (px - c.box[0]) / c.box[2] * (c.x[1] - c.x[0]);
      tip.textContent = "";
      c.series.forEach(function (s) {
        var p = nearest(s.points, step);
        var row = document.createElement("div");
        var sw = document.createElement("span");
        sw.className = "sw";
        sw.style.background = s.color;
        if (s.dashed) sw.style.opacity = "0.6";
        row.appendChild(sw);
        row.appendChild(document.createTextNode(s.run + " " + s.field + " @ " + p[0] + ": " + fmt(p[1])));
        tip.appendChild(row);
      });
      cursor.setAttribute("x1", px);
      cursor.setAttribute("x2", px);
      cursor.setAttribute("visibility", "visible");
      tip.hidden = false;
      var x = ev.pageX + 14;
      if (x + tip.offsetWidth > window.scrollX + document.documentElement.clientWidth) x = ev.pageX - tip.offsetWidth - 14;
      tip.style.left = x + "px";
      tip.style.top = (ev.pageY + 14) + "px";
    });
  });
})();
)JS";

}  // namespace

RunData read_run(const std::string& run_dir) {
  std::error_code ec;
  fs::path dir(run_dir), metrics;
  if (fs::is_regular_file(dir, ec)) {
    metrics = dir;
    dir = dir.parent_path();
    if (dir.empty()) dir = ".";
  } else if (fs::is_directory(dir, ec)) {
    metrics = dir / "metrics.jsonl";
    if (!fs::exists(metrics, ec)) fail("{}: no metrics.jsonl in this run directory (is it a training run's --output?)", run_dir);
  } else {
    fail("run directory '{}' does not exist", run_dir);
  }
  RunData r;
  r.dir = dir.string();
  fs::path abs = fs::absolute(dir, ec).lexically_normal();
  r.name = abs.has_filename() ? abs.filename().string() : abs.parent_path().filename().string();
  if (r.name.empty()) r.name = r.dir;

  const std::string mpath = metrics.string();
  LineReader lines(mpath);
  std::string_view line;
  // A line that fails to parse is an error only once another line follows it: the last
  // line may be a record the trainer is still writing.
  std::optional<std::pair<uint64_t, std::string>> unparsed;
  while (lines.next(line)) {
    if (blank(line)) continue;
    if (unparsed) throw InputError(mpath, unparsed->first, unparsed->second);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      unparsed.emplace(lines.line_number(), "not valid JSON: " + json_message(e));
      continue;
    }
    const uint64_t ln = lines.line_number();
    if (!j.is_object()) throw InputError(mpath, ln, fmt::format("expected a JSON object, found {}", j.type_name()));
    auto st = j.find("step");
    if (st == j.end() || !st->is_number_integer())
      throw InputError(mpath, ln, st == j.end() ? "missing \"step\"" : fmt::format("\"step\" is {}, expected an integer", st->type_name()));
    const int64_t step = st->get<int64_t>();
    for (const char* f : kMetricFields) {
      auto it = j.find(f);
      if (it == j.end() || it->is_null()) continue;  // null: how nlohmann writes NaN/inf
      if (!it->is_number()) throw InputError(mpath, ln, fmt::format("\"{}\" is {}, expected a number", f, it->type_name()));
      const double v = it->get<double>();
      if (std::isfinite(v)) append_point(r.series[f], step, v);
    }
    r.last_step = step;
  }
  if (unparsed) {
    r.torn_last_line = true;
    log::debug("{}:{}: skipping the incomplete last line", mpath, unparsed->first);
  }

  const fs::path cfg = dir / "config.json";
  if (fs::is_regular_file(cfg, ec)) {
    nlohmann::json c;
    try {
      c = nlohmann::json::parse(read_file(cfg.string()));
    } catch (const nlohmann::json::exception& e) {
      fail("{}: not valid JSON: {}", cfg.string(), json_message(e));
    }
    r.config = summarize_config(c);
  }
  return r;
}

std::string render_run_report(const std::vector<RunData>& runs_in, bool live) {
  // Two runs with the same directory name (runs/a/x, runs/b/x) are told apart by their paths.
  std::vector<RunData> runs = runs_in;
  std::map<std::string, int> name_count;
  for (const auto& r : runs) ++name_count[r.name];
  for (auto& r : runs)
    if (name_count[r.name] > 1) r.name = r.dir;

  std::string names;
  for (const auto& r : runs) names += (names.empty() ? "" : ", ") + r.name;
  char when[64];
  std::time_t now = std::time(nullptr);
  std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S %Z", std::localtime(&now));

  std::string h = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  if (live) h += "<meta http-equiv=\"refresh\" content=\"30\">\n";
  h += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
  h += fmt::format("<title>tsumugi report: {}</title>\n<style>{}</style>\n</head>\n<body>\n", esc(names), kStyle);
  h += fmt::format("<header><h1>Training report</h1><p class=\"meta\">{} run{} · generated {}{}</p></header>\n", runs.size(),
                   runs.size() == 1 ? "" : "s", esc(when), live ? " · live: this page reloads every 30 s" : "");
  h += "<section>\n<h2>Runs</h2>\n" + run_table(runs) + "</section>\n";

  h += "<section>\n<h2>Charts</h2>\n<div class=\"legend\">";
  for (size_t r = 0; r < runs.size(); ++r)
    h += fmt::format("<span class=\"item\"><span class=\"sw\" style=\"background:{}\"></span>{}</span>", color_of(r), esc(runs[r].name));
  h += "<span class=\"item\"><svg width=\"28\" height=\"8\"><line x1=\"0\" x2=\"28\" y1=\"4\" y2=\"4\" stroke=\"#555\" stroke-width=\"1.5\"/></svg>train</span>"
       "<span class=\"item\"><svg width=\"28\" height=\"8\"><line x1=\"0\" x2=\"28\" y1=\"4\" y2=\"4\" stroke=\"#555\" stroke-width=\"1.8\" stroke-dasharray=\"6 3\"/></svg>validation</span>";
  h += "</div>\n<div class=\"charts\">\n";
  nlohmann::json data = {{"runs", nlohmann::json::array()}, {"charts", nlohmann::json::array()}};
  for (const auto& r : runs) data["runs"].push_back({{"name", r.name}, {"dir", r.dir}, {"last_step", r.last_step}});
  for (const auto& def : chart_defs()) {
    bool any = def.always;
    for (const auto& r : runs)
      for (const char* f : def.fields)
        if (auto it = r.series.find(f); it != r.series.end() && !it->second.empty()) any = true;
    if (any) h += render_chart(def, runs, data);
  }
  h += "</div>\n</section>\n<div id=\"tip\" class=\"tip\" hidden></div>\n";

  // In a <script> element only "</script" and "<!--" could end or confuse it; escaping every
  // '<' (which JSON allows only inside strings) rules both out.
  std::string json = data.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), safe;
  for (char ch : json) safe += ch == '<' ? std::string("\\u003c") : std::string(1, ch);
  h += "<script type=\"application/json\" id=\"report-data\">" + safe + "</script>\n";
  h += std::string("<script>") + kScript + "</script>\n</body>\n</html>\n";
  return h;
}

void write_run_report(const std::vector<std::string>& run_dirs, const std::string& out_html, bool live) {
  if (run_dirs.empty()) fail("a report needs at least one run directory");
  std::vector<RunData> runs;
  for (const auto& d : run_dirs) runs.push_back(read_run(d));
  write_file_atomic(out_html, render_run_report(runs, live));
}

}  // namespace tsumugi::train
