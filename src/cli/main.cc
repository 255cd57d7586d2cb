// tsumugi: one program, one subcommand per stage of building a Japanese–English LLM.
#include <CLI/CLI.hpp>

#include <cstdio>

#include "cli/commands.h"
#include "util/error.h"
#include "util/log.h"

int main(int argc, char** argv) {
  CLI::App app{
      "tsumugi — build Japanese–English language models end to end: clean a corpus, train a tokenizer,\n"
      "pretrain, tune, evaluate, search the training data and serve the result.",
      "tsumugi"};
  app.set_version_flag("--version", std::string("tsumugi ") + TSUMUGI_VERSION);
  app.require_subcommand(1);
  bool quiet = false, verbose = false;
  app.add_flag("-q,--quiet", quiet, "Only print warnings and errors");
  app.add_flag("-v,--verbose", verbose, "Print debug messages");
  app.footer("Run `tsumugi COMMAND --help` for the options of a command.");

  tsumugi::cli::register_corpus(app);
  tsumugi::cli::register_tokenizer(app);
  tsumugi::cli::register_tokenize(app);
  tsumugi::cli::register_pretrain(app);
  tsumugi::cli::register_generate(app);
  tsumugi::cli::register_export(app);
  tsumugi::cli::register_import(app);
  tsumugi::cli::register_serving(app);
  tsumugi::cli::register_eval(app);
  tsumugi::cli::register_sft(app);
  tsumugi::cli::register_report(app);
  tsumugi::cli::register_index(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (quiet) tsumugi::log::set_level(tsumugi::log::Level::warn);
  if (verbose) tsumugi::log::set_level(tsumugi::log::Level::debug);
  return tsumugi::cli::run_selected();
}
