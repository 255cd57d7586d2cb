// `tsumugi report`: run directories → one self-contained HTML page of training curves.
#include <memory>

#include "cli/commands.h"
#include "train/report.h"
#include "util/error.h"
#include "util/log.h"

namespace tsumugi::cli {

namespace {
struct ReportArgs {
  std::vector<std::string> runs;
  std::string output;
  bool live = false;
};
}  // namespace

void register_report(CLI::App& app) {
  auto a = std::make_shared<ReportArgs>();
  auto* cmd = app.add_subcommand("report", "Write an HTML report of training runs (loss, lr, grad norm, throughput)");
  cmd->description(
      "Write one self-contained HTML page (inline SVG charts; no network, no external files, so it\n"
      "can be copied off a cluster and opened anywhere) from the run directories that\n"
      "`tsumugi pretrain` writes. Each RUN_DIR must hold metrics.jsonl, one JSON object per logged\n"
      "step with `step` and any of loss, val_loss, lr, grad_norm, tokens_per_s, mfu (0-1),\n"
      "mem_bytes and elapsed_s; other fields are ignored. Several runs are overlaid on the same\n"
      "charts, one colour each, named by their directory, which makes the page a comparison of\n"
      "runs. A table at the top shows each run's model (family, layers, hidden, parameters, from\n"
      "RUN_DIR/config.json when present) and its latest step, loss and throughput.\n"
      "A run still being written is fine: an incomplete last line of metrics.jsonl is skipped.\n"
      "A bad line anywhere else is reported with its file and line number.");
  cmd->add_option("runs", a->runs, "Run directories (or their metrics.jsonl files)")->required();
  cmd->add_option("-o,--output", a->output, "Output HTML file (default with one run: RUN_DIR/report.html)");
  cmd->add_flag("--live", a->live, "Make the page reload itself every 30 s (for a report that is rewritten during a run)");
  cmd->footer(
      "Examples:\n"
      "  tsumugi report runs/llama-1b                       # writes runs/llama-1b/report.html\n"
      "  tsumugi report runs/lr3e-4 runs/lr6e-4 -o lr.html  # two runs overlaid\n"
      "Open the file in a browser; hover over a chart to read each run's value at a step.");
  cmd->callback([a] {
    set_action([a] {
      std::string out = a->output;
      if (out.empty()) {
        if (a->runs.size() != 1)
          fail("with {} runs, name the output file with -o (the default, RUN_DIR/report.html, is for one run)", a->runs.size());
        out = train::read_run(a->runs[0]).dir + "/report.html";
      }
      train::write_run_report(a->runs, out, a->live);
      log::info("wrote {}", out);
      return 0;
    });
  });
}

}  // namespace tsumugi::cli
