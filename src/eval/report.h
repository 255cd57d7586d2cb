// The evaluation report: one self-contained HTML page (inline CSS and SVG, no script, no
// network) from one or more eval run directories (each with the scores.json `tsumugi eval`
// writes): a table of every score with one column per run, the category averages as a bar
// chart, and one bar chart per category with each of its dataset scores, runs side by side.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace tsumugi::eval {

struct EvalRun {
  std::string name;  // the directory's name (its path when two runs share a name)
  std::string dir;
  nlohmann::json scores;  // the scores.json document
};

// Reads RUN_DIR/scores.json (`run` may also name the file). Errors name the file.
EvalRun read_eval_run(const std::string& run);
std::string render_eval_report(const std::vector<EvalRun>& runs);
// Reads every run and writes the page to `out_html` atomically.
void write_eval_report(const std::vector<std::string>& runs, const std::string& out_html);

}  // namespace tsumugi::eval
