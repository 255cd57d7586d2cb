#pragma once
// The run report: one self-contained HTML page (inline SVG charts, a few lines of inline JS
// for hover read-outs; no network, no external files) built from run directories, the local
// equivalent of an experiment tracker's run page.
//
// A run directory holds `metrics.jsonl`, one JSON object per logged step:
//   {"step": 100, "loss": 3.21, "lr": 3e-4, "grad_norm": 0.8, "tokens_per_s": 51234.5,
//    "mfu": 0.41, "mem_bytes": 61203283968, "elapsed_s": 812.4}
// with "val_loss" on evaluation lines (which may carry only step and val_loss). Unknown
// fields are ignored; a field that is null counts as absent. A last line that is not
// valid JSON is a line the trainer is still writing and is skipped; a bad line anywhere else
// is an error naming the file and line. When steps go back (a run resumed from an earlier
// checkpoint appends to the same file), the later lines replace the earlier ones from that
// step on, which is what the resumed run's curve is.
//
// If the directory also holds `config.json`, the report's run table shows the model
// family, layers, hidden size and parameter count found in it (at the top level or under
// "model").
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace tsumugi::train {

// The metrics.jsonl fields the report reads.
inline constexpr const char* kMetricFields[] = {"loss",   "val_loss",  "lr",         "grad_norm",
                                                "tokens_per_s", "mfu", "mem_bytes", "elapsed_s"};

struct RunData {
  std::string name;  // the directory's name (its path when two runs share a name)
  std::string dir;
  // field → (step, value) in increasing step order.
  std::map<std::string, std::vector<std::pair<int64_t, double>>> series;
  int64_t last_step = -1;
  bool torn_last_line = false;  // the last line was incomplete and skipped
  // From config.json, in display order: ("family", "llama"), ("layers", "24"), ...
  std::vector<std::pair<std::string, std::string>> config;
};

// Reads RUN_DIR/metrics.jsonl (and config.json when present). `run_dir` may also name the
// metrics file itself. Throws tsumugi::Error (InputError with file and line for bad lines).
RunData read_run(const std::string& run_dir);

// The report page for `runs`; `live` adds a 30-second refresh so an open page follows a
// running job.
std::string render_run_report(const std::vector<RunData>& runs, bool live);

// Reads every run directory and writes the report to `out_html` atomically.
void write_run_report(const std::vector<std::string>& run_dirs, const std::string& out_html, bool live);

}  // namespace tsumugi::train
