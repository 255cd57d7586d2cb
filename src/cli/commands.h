#pragma once
// Each subcommand file registers its CLI11 options and the action to run once parsed.
#include <CLI/CLI.hpp>

#include <functional>

namespace tsumugi::cli {

void register_corpus(CLI::App& app);
void register_tokenizer(CLI::App& app);
void register_tokenizer_train(CLI::App& tokenizer_cmd);
void register_tokenize(CLI::App& app);
void register_tokenizer_export(CLI::App& tokenizer_cmd);
void register_report(CLI::App& app);
void register_pretrain(CLI::App& app);
void register_generate(CLI::App& app);
void register_index(CLI::App& app);
void register_export(CLI::App& app);
void register_import(CLI::App& app);
void register_serving(CLI::App& app);  // serve and chat
void register_eval(CLI::App& app);
void register_sft(CLI::App& app);

// Sets what runs after parsing; the action returns the process exit code.
void set_action(std::function<int()> action);
// Runs the chosen action, printing errors as `tsumugi: error: ...`.
int run_selected();

}  // namespace tsumugi::cli
