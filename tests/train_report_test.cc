// The HTML run report: metrics.jsonl parsing (bad lines, torn last line, resumed runs), and a
// page checked with Python's html.parser: balanced tags, both runs' series in every chart,
// the embedded data equal to the metrics, nothing loaded from outside the file.
#include "train/report.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "test_util.h"
#include "util/error.h"
#include "util/io.h"

namespace tsumugi::train {
namespace {

using tsumugi::testing::run_command;
using tsumugi::testing::TempDir;
using tsumugi::testing::write_bytes;

const std::string kBin = TSUMUGI_BINARY;

struct Expected {
  std::map<std::string, std::vector<std::pair<int64_t, double>>> series;
};

// A synthetic run: `steps` train lines, val_loss every 10 steps on a line of its own.
Expected make_run(const std::string& dir, int steps, double offset, const std::string& tail = "") {
  std::filesystem::create_directories(dir);
  Expected e;
  std::string text;
  for (int s = 1; s <= steps; ++s) {
    const double loss = 10.0 / (1.0 + 0.1 * s) + offset, lr = 3e-4 * std::min(1.0, s / 10.0), gn = 1.0 / s + 0.25,
                 tps = 50000.0 + 100.0 * s + offset * 1000, mfu = 0.38 + 0.001 * s, mem = double(int64_t(1) << 34), el = 1.5 * s;
    text += fmt::format(
        R"({{"step": {}, "loss": {}, "lr": {}, "grad_norm": {}, "tokens_per_s": {}, "mfu": {}, "mem_bytes": {}, "elapsed_s": {}, "tokens": {}, "note": "x"}})"
        "\n",
        s, loss, lr, gn, tps, mfu, int64_t(mem), el, s * 4096);
    e.series["loss"].emplace_back(s, loss);
    e.series["lr"].emplace_back(s, lr);
    e.series["grad_norm"].emplace_back(s, gn);
    e.series["tokens_per_s"].emplace_back(s, tps);
    e.series["mfu"].emplace_back(s, mfu);
    e.series["mem_bytes"].emplace_back(s, mem);
    e.series["elapsed_s"].emplace_back(s, el);
    if (s % 10 == 0) {
      const double vl = 10.5 / (1.0 + 0.1 * s) + offset;
      text += fmt::format("{{\"step\": {}, \"val_loss\": {}}}\n", s, vl);
      e.series["val_loss"].emplace_back(s, vl);
    }
  }
  write_bytes(dir + "/metrics.jsonl", text + tail);
  return e;
}

// Parses the page with html.parser; prints JSON with unbalanced-tag errors, the series in
// each chart, the run table's rows, the embedded data and any external reference.
constexpr const char* kHtmlCheck = R"PY(
import json, sys
from html.parser import HTMLParser
VOID = {"meta", "link", "br", "hr", "img", "input", "area", "base", "col", "embed", "source", "track", "wbr"}
class Check(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.errors, self.charts, self.rows, self.external = [], [], {}, [], []
        self.chart = self.row = self.cell = None
        self.in_data, self.data, self.refresh, self.doctype = False, "", None, None
    def handle_decl(self, decl):
        self.doctype = decl
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for k in ("src", "href", "xlink:href"):
            if k in a:
                self.external.append(a[k])
        if tag == "link":
            self.external.append("link")
        if tag == "meta" and a.get("http-equiv") == "refresh":
            self.refresh = a.get("content")
        if tag in VOID:
            return
        self.stack.append(tag)
        if tag == "svg" and "data-chart" in a:
            self.chart = a["data-chart"]
            self.charts[self.chart] = []
        if tag == "g" and a.get("class") == "series":
            self.charts[self.chart].append([a["data-run"], a["data-field"], 0])
        if tag in ("polyline", "circle") and self.chart and self.charts[self.chart]:
            n = len(a["points"].split()) if tag == "polyline" else 1
            self.charts[self.chart][-1][2] = max(self.charts[self.chart][-1][2], n)
        if tag == "script" and a.get("id") == "report-data":
            self.in_data = True
        if tag == "tr" and "data-run" in a:
            self.row = [a["data-run"]]
            self.rows.append(self.row)
        if tag == "td" and self.row is not None:
            self.cell = ""
    def handle_endtag(self, tag):
        if tag in VOID:
            self.errors.append("end tag for void element <%s> at %s" % (tag, self.getpos()))
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append("</%s> at %s closes <%s>" % (tag, self.getpos(), self.stack[-1] if self.stack else None))
            if tag in self.stack:
                while self.stack.pop() != tag:
                    pass
        else:
            self.stack.pop()
        if tag == "script":
            self.in_data = False
        if tag == "svg":
            self.chart = None
        if tag == "td" and self.cell is not None:
            self.row.append(self.cell.strip())
            self.cell = None
        if tag == "tr":
            self.row = None
    def handle_data(self, d):
        if self.in_data:
            self.data += d
        if self.cell is not None:
            self.cell += d
c = Check()
c.feed(open(sys.argv[1], encoding="utf-8").read())
c.close()
print(json.dumps({"doctype": c.doctype, "errors": c.errors, "unclosed": c.stack, "charts": c.charts, "rows": c.rows,
                  "external": c.external, "refresh": c.refresh, "data": json.loads(c.data)}))
)PY";

bool have_python() {
  std::string out;
  return run_command("python3 -c 'import html.parser'", out) == 0;
}

nlohmann::json check_html(const TempDir& dir, const std::string& html_path) {
  write_bytes(dir.file("check.py"), kHtmlCheck);
  std::string out;
  EXPECT_EQ(run_command("python3 " + dir.file("check.py") + " " + html_path, out), 0) << out;
  try {
    return nlohmann::json::parse(out);
  } catch (const std::exception&) {
    ADD_FAILURE() << "checker output is not JSON: " << out;
    return {};
  }
}

TEST(Report, TwoRunsOverlaidInAWellFormedSelfContainedPage) {
  TempDir dir;
  const std::string a = dir.file("runs/lr3e-4"), b = dir.file("runs/lr6e-4");
  auto ea = make_run(a, 40, 0.0);
  // Run b is still being written: its last line is torn.
  auto eb = make_run(b, 25, 0.3, R"({"step": 26, "loss": 2.)");
  write_bytes(a + "/config.json",
              R"({"model": {"family": "llama", "num_layers": 4, "hidden_size": 256, "params": 12345678}, "lr": 3e-4})");
  const std::string out = dir.file("report.html");
  write_run_report({a, b + "/"}, out, false);
  const std::string html = read_file(out);
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_EQ(html.find("http-equiv=\"refresh\""), std::string::npos);
  EXPECT_EQ(html.find("http://"), std::string::npos);
  EXPECT_EQ(html.find("https://"), std::string::npos);
  EXPECT_NE(html.find("data-run=\"lr3e-4\""), std::string::npos);
  EXPECT_NE(html.find("data-run=\"lr6e-4\""), std::string::npos);

  if (!have_python()) GTEST_SKIP() << "python3 is needed for the HTML structure check";
  auto got = check_html(dir, out);
  EXPECT_EQ(got["doctype"], "DOCTYPE html");
  EXPECT_EQ(got["errors"], nlohmann::json::array()) << got["errors"].dump();
  EXPECT_EQ(got["unclosed"], nlohmann::json::array()) << got["unclosed"].dump();
  EXPECT_EQ(got["external"], nlohmann::json::array()) << got["external"].dump();
  EXPECT_TRUE(got["refresh"].is_null());

  // Every chart shows both runs; the loss chart also both validation curves.
  const std::map<std::string, std::vector<std::string>> chart_fields = {
      {"loss", {"loss", "val_loss"}}, {"lr", {"lr"}},   {"grad_norm", {"grad_norm"}}, {"throughput", {"tokens_per_s"}},
      {"mfu", {"mfu"}},               {"memory", {"mem_bytes"}}};
  ASSERT_EQ(got["charts"].size(), chart_fields.size()) << got["charts"].dump();
  for (const auto& [chart, fields] : chart_fields) {
    SCOPED_TRACE(chart);
    std::set<std::pair<std::string, std::string>> want, have;
    for (const auto& f : fields)
      for (const char* run : {"lr3e-4", "lr6e-4"}) want.insert({run, f});
    for (const auto& s : got["charts"][chart]) {
      have.insert({s[0].get<std::string>(), s[1].get<std::string>()});
      EXPECT_GT(s[2].get<int>(), 1) << s.dump();  // drawn with its points
    }
    EXPECT_EQ(have, want);
  }
  // The embedded data (what the hover read-out shows) equals the metrics; a torn line adds nothing.
  std::map<std::string, const Expected*> by_run{{"lr3e-4", &ea}, {"lr6e-4", &eb}};
  const std::map<std::string, double> scale{{"mfu", 100.0}, {"mem_bytes", 1.0 / double(1ull << 30)}};
  int checked = 0;
  for (const auto& chart : got["data"]["charts"])
    for (const auto& s : chart["series"]) {
      const auto& want = by_run.at(s["run"].get<std::string>())->series.at(s["field"].get<std::string>());
      const auto& pts = s["points"];
      ASSERT_EQ(pts.size(), want.size()) << s["run"] << " " << s["field"];
      const double k = scale.count(s["field"]) ? scale.at(s["field"]) : 1.0;
      for (size_t i = 0; i < want.size(); ++i) {
        EXPECT_EQ(pts[i][0].get<int64_t>(), want[i].first);
        EXPECT_DOUBLE_EQ(pts[i][1].get<double>(), want[i].second * k);
      }
      ++checked;
    }
  EXPECT_EQ(checked, 14);

  // The run table: config summary for a, none for b, last step and loss for both.
  ASSERT_EQ(got["rows"].size(), 2u);
  const auto& ra = got["rows"][0];
  const auto& rb = got["rows"][1];
  EXPECT_EQ(ra[0], "lr3e-4");
  EXPECT_EQ(ra[2], "llama");
  EXPECT_EQ(ra[3], "4");
  EXPECT_EQ(ra[4], "256");
  EXPECT_EQ(ra[5], "12.3M");
  EXPECT_EQ(ra[6], "40");
  EXPECT_EQ(ra[7], fmt::format("{:.4f}", ea.series["loss"].back().second));
  EXPECT_EQ(ra[8], fmt::format("{:.4f}", ea.series["val_loss"].back().second));
  EXPECT_EQ(rb[0], "lr6e-4");
  EXPECT_NE(rb[1].get<std::string>().find("(live)"), std::string::npos) << rb.dump();
  EXPECT_EQ(rb[2], "–");
  EXPECT_EQ(rb[6], "25");

  // Live mode adds the refresh.
  write_run_report({a}, out, true);
  EXPECT_EQ(check_html(dir, out)["refresh"], "30");
}

TEST(Report, BadLineMidFileNamesFileAndLine) {
  TempDir dir;
  const std::string run = dir.file("run");
  std::filesystem::create_directories(run);
  const std::string metrics = run + "/metrics.jsonl";
  auto expect_error = [&](const std::string& text, uint64_t line, const std::string& needle) {
    write_bytes(metrics, text);
    try {
      write_run_report({run}, dir.file("r.html"), false);
      ADD_FAILURE() << "no error for: " << text;
    } catch (const InputError& e) {
      EXPECT_EQ(e.file(), metrics);
      EXPECT_EQ(e.line(), line) << e.what();
      EXPECT_NE(std::string(e.what()).find(fmt::format("{}:{}: ", metrics, line)), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
    EXPECT_FALSE(std::filesystem::exists(dir.file("r.html")));
  };
  expect_error("{\"step\": 1, \"loss\": 3}\n{\"step\": 2, \"loss\": 3\n{\"step\": 3, \"loss\": 2}\n", 2, "not valid JSON");
  // Blank lines count toward line numbers but are not records.
  expect_error("{\"step\": 1}\n\n\ngarbage\n{\"step\": 3}", 4, "not valid JSON");
  // A torn line followed by a complete one is corruption, not a run in progress.
  expect_error("{\"step\": 1}\n{\"step\": 2, \"lo\n{\"step\": 3}\n", 2, "not valid JSON");
  expect_error("{\"step\": 1}\n[1, 2]\n", 2, "expected a JSON object, found array");
  expect_error("{\"step\": 1}\n{\"loss\": 2.5}\n", 2, "missing \"step\"");
  expect_error("{\"step\": 1.5, \"loss\": 2.5}\n", 1, "\"step\" is number, expected an integer");
  expect_error("{\"step\": 1}\n{\"step\": 2}\n{\"step\": 3, \"loss\": \"2.5\"}\n", 3, "\"loss\" is string, expected a number");

  // Missing directory, missing metrics file, and a broken config.json are named too.
  try {
    write_run_report({dir.file("nope")}, dir.file("r.html"), false);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'" + dir.file("nope") + "' does not exist"), std::string::npos) << e.what();
  }
  std::filesystem::create_directories(dir.file("empty_run"));
  try {
    write_run_report({dir.file("empty_run")}, dir.file("r.html"), false);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no metrics.jsonl"), std::string::npos) << e.what();
  }
  write_bytes(metrics, "{\"step\": 1, \"loss\": 2}\n");
  write_bytes(run + "/config.json", "{\"model\": ");
  try {
    write_run_report({run}, dir.file("r.html"), false);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(run + "/config.json: not valid JSON"), std::string::npos) << e.what();
  }
}

TEST(Report, TornLastLineIsSkipped) {
  TempDir dir;
  const std::string run = dir.file("run");
  for (const std::string tail : {R"({"step": 4, "lo)", "{\"step\": 4, \"loss\": 1.\n\n", "{"}) {
    SCOPED_TRACE(tail);
    make_run(run, 3, 0.0, tail);
    RunData r = read_run(run);
    EXPECT_TRUE(r.torn_last_line);
    EXPECT_EQ(r.last_step, 3);
    ASSERT_EQ(r.series["loss"].size(), 3u);
    EXPECT_NO_THROW(write_run_report({run}, dir.file("r.html"), true));
  }
  make_run(run, 3, 0.0);
  EXPECT_FALSE(read_run(run).torn_last_line);
  // The metrics file itself may be named instead of its directory.
  EXPECT_EQ(read_run(run + "/metrics.jsonl").name, "run");
}

TEST(Report, ResumedRunReplacesSupersededSteps) {
  TempDir dir;
  const std::string run = dir.file("run");
  std::filesystem::create_directories(run);
  std::string text;
  for (int s = 1; s <= 10; ++s) text += fmt::format("{{\"step\": {}, \"loss\": {}}}\n", s, 100 + s);
  text += "{\"step\": 10, \"val_loss\": 5}\n";
  // Resumed from the step-6 checkpoint: steps 7.. are logged again; nulls are skipped.
  for (int s = 7; s <= 8; ++s) text += fmt::format("{{\"step\": {}, \"loss\": {}, \"lr\": null}}\n", s, 200 + s);
  write_bytes(run + "/metrics.jsonl", text);
  RunData r = read_run(run);
  std::vector<std::pair<int64_t, double>> want;
  for (int s = 1; s <= 6; ++s) want.emplace_back(s, 100 + s);
  want.emplace_back(7, 207);
  want.emplace_back(8, 208);
  EXPECT_EQ(r.series["loss"], want);
  EXPECT_EQ(r.series["val_loss"].size(), 1u);  // not yet re-evaluated: the old point stays
  EXPECT_EQ(r.series.count("lr"), 0u);
  EXPECT_EQ(r.last_step, 8);
}

TEST(Report, ConfigSummaryReadsTrainerAndHuggingFaceConfigs) {
  TempDir dir;
  const std::string run = dir.file("run");
  make_run(run, 2, 0.0);
  using Rows = std::vector<std::pair<std::string, std::string>>;
  // What `tsumugi pretrain` writes: its run config, model keys nested, parameter count on top.
  write_bytes(run + "/config.json",
              R"({"model": {"family": "gpt2", "n_layer": 12, "d_model": 768, "n_head": 12}, "parameters": 124439808, "train": {"steps": 10}})");
  EXPECT_EQ(read_run(run).config, (Rows{{"family", "gpt2"}, {"layers", "12"}, {"hidden", "768"}, {"params", "124M"}}));
  // A Hugging Face config.json.
  write_bytes(run + "/config.json", R"({"model_type": "llama", "num_hidden_layers": 22, "hidden_size": 2048})");
  EXPECT_EQ(read_run(run).config, (Rows{{"family", "llama"}, {"layers", "22"}, {"hidden", "2048"}}));
  write_bytes(run + "/config.json", "[]");
  EXPECT_TRUE(read_run(run).config.empty());
}

TEST(Report, LongRunsAreDownsampledKeepingSpikes) {
  TempDir dir;
  const std::string run = dir.file("long");
  std::filesystem::create_directories(run);
  std::string text;
  for (int s = 1; s <= 200000; ++s)
    text += fmt::format("{{\"step\": {}, \"loss\": {}, \"lr\": 0.0003}}\n", s, s == 123457 ? 50.0 : 3.0 + (s % 7) * 0.01);
  write_bytes(run + "/metrics.jsonl", text);
  const std::string out = dir.file("r.html");
  write_run_report({run}, out, false);
  const std::string html = read_file(out);
  EXPECT_LT(html.size(), 600u * 1024) << "a long run should not make a huge page";
  if (!have_python()) GTEST_SKIP() << "python3 is needed for the HTML structure check";
  auto got = check_html(dir, out);
  EXPECT_EQ(got["errors"], nlohmann::json::array());
  for (const auto& c : got["data"]["charts"])
    if (c["id"] == "loss") {
      const auto& pts = c["series"][0]["points"];
      EXPECT_LT(pts.size(), 2000u);
      double mx = 0;
      for (const auto& p : pts) mx = std::max(mx, p[1].get<double>());
      EXPECT_EQ(mx, 50.0);  // the spike survives
      EXPECT_EQ(pts.back()[0], 200000);
      EXPECT_EQ(pts.front()[0], 1);
    }
}

TEST(Report, NamesAreEscaped) {
  TempDir dir;
  const std::string run = dir.file("a<b&\"c'<script>x");
  make_run(run, 12, 0.0);
  const std::string out = dir.file("r.html");
  write_run_report({run}, out, false);
  const std::string html = read_file(out);
  EXPECT_EQ(html.find("a<b"), std::string::npos);
  EXPECT_EQ(html.find("<script>x"), std::string::npos);
  if (!have_python()) GTEST_SKIP() << "python3 is needed for the HTML structure check";
  auto got = check_html(dir, out);
  EXPECT_EQ(got["errors"], nlohmann::json::array()) << got["errors"].dump();
  EXPECT_EQ(got["unclosed"], nlohmann::json::array());
  EXPECT_EQ(got["rows"][0][0], "a<b&\"c'<script>x");
  EXPECT_EQ(got["data"]["runs"][0]["name"], "a<b&\"c'<script>x");
}

TEST(Report, Cli) {
  TempDir dir;
  const std::string a = dir.file("run-a"), b = dir.file("run-b");
  make_run(a, 20, 0.0);
  make_run(b, 20, 0.5);
  std::string out;
  ASSERT_EQ(run_command(kBin + " report " + a, out), 0) << out;
  EXPECT_TRUE(std::filesystem::exists(a + "/report.html"));
  EXPECT_NE(run_command(kBin + " report " + a + " " + b, out), 0);
  EXPECT_NE(out.find("name the output file with -o"), std::string::npos) << out;
  ASSERT_EQ(run_command(kBin + " report " + a + " " + b + " -o " + dir.file("both.html") + " --live", out), 0) << out;
  const std::string html = read_file(dir.file("both.html"));
  EXPECT_NE(html.find("data-run=\"run-b\""), std::string::npos);
  EXPECT_NE(html.find("http-equiv=\"refresh\" content=\"30\""), std::string::npos);
  write_bytes(b + "/metrics.jsonl", "{\"step\": 1}\nnot json\n{\"step\": 3}\n");
  EXPECT_NE(run_command(kBin + " report " + b, out), 0);
  EXPECT_NE(out.find(b + "/metrics.jsonl:2: not valid JSON"), std::string::npos) << out;
  ASSERT_EQ(run_command(kBin + " report --help", out), 0);
  EXPECT_NE(out.find("metrics.jsonl"), std::string::npos);
  EXPECT_NE(out.find("Examples:"), std::string::npos);
}

}  // namespace
}  // namespace tsumugi::train
