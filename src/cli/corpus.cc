#include "cli/commands.h"

namespace tsumugi::cli {

void register_corpus(CLI::App& app) {
  auto* corpus = app.add_subcommand("corpus", "Clean, filter and deduplicate JSONL text corpora");
  corpus->require_subcommand(1);
}

}  // namespace tsumugi::cli
