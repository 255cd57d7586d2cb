// `tsumugi tokenize`: JSONL documents → a Megatron-LM indexed dataset (PREFIX.bin + PREFIX.idx).
#include <fmt/format.h>

#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "data/tokenize_job.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/interrupt.h"
#include "util/log.h"

namespace tsumugi::cli {

namespace {

struct TokenizeArgs {
  std::string model, prefix, text_field = "text", eod_token;
  std::vector<std::string> inputs;
  unsigned threads = 0;
  bool no_eod = false, progress = false, no_progress = false, quiet_summary = false;
};

// The EOD id: --eod-token PIECE if given; else the model's <EOD> piece (LLM-jp's tokenizers
// have one); else its </s> (eos). --no-eod appends nothing.
int32_t resolve_eod(const tokenizer::Tokenizer& tok, const TokenizeArgs& a) {
  if (a.no_eod) return -1;
  auto has_piece = [&](std::string_view piece, int32_t& id) {
    id = tok.piece_to_id(piece);
    return id >= 0 && id != tok.unk_id();
  };
  int32_t id = -1;
  if (!a.eod_token.empty()) {
    if (!has_piece(a.eod_token, id))
      fail("--eod-token '{}' is not a piece of {} (it maps to the unknown token)", a.eod_token, a.model);
    log::info("EOD token: {} (id {})", a.eod_token, id);
    return id;
  }
  if (has_piece("<EOD>", id)) {
    log::info("EOD token: <EOD> (id {})", id);
    return id;
  }
  if (tok.eos_id() >= 0) {
    log::info("EOD token: the model's eos (id {}); it has no <EOD> piece", tok.eos_id());
    return tok.eos_id();
  }
  fail("{} has no <EOD> piece and no eos token: name one with --eod-token PIECE, or pass --no-eod", a.model);
}

}  // namespace

void register_tokenize(CLI::App& app) {
  auto a = std::make_shared<TokenizeArgs>();
  auto* cmd = app.add_subcommand("tokenize", "Tokenize JSONL documents into a Megatron-LM indexed dataset (.bin/.idx)");
  cmd->description(
      "Tokenize JSONL documents (one JSON object per line; .jsonl, .jsonl.gz or .jsonl.zst) with a\n"
      "SentencePiece model into a Megatron-LM indexed dataset: PREFIX.bin (tokens) and PREFIX.idx\n"
      "(MMIDIDX index, version 1), readable by Megatron-LM's IndexedDataset and by tsumugi training.\n"
      "Each document is one sequence with the EOD token appended, in input order (the files are\n"
      "byte-identical for any -j). Tokens are uint16 when the vocabulary has fewer than 65,500\n"
      "pieces, else int32. Documents that encode to no tokens are skipped and counted (Megatron's\n"
      "preprocess_data.py writes no sequence for them either); unreadable records go to\n"
      "PREFIX.errors.jsonl with file and line.\n"
      "Both output files appear only when the run completes.");
  cmd->add_option("inputs", a->inputs, "Input files or globs ('-' or none: stdin)");
  cmd->add_option("-m,--model", a->model, "SentencePiece model file (.model)")->required();
  cmd->add_option("-o,--output,--output-prefix", a->prefix, "Output prefix: writes PREFIX.bin and PREFIX.idx")->required();
  cmd->add_option("--text-field", a->text_field, "JSON field holding the text")->capture_default_str();
  auto* eod = cmd->add_option("--eod-token", a->eod_token,
                              "Piece appended after each document (default: <EOD> if the model has it, else its eos)");
  cmd->add_flag("--no-eod", a->no_eod, "Append no end-of-document token")->excludes(eod);
  cmd->add_option("-j,--threads", a->threads, "Worker threads (0: all cores)")->capture_default_str();
  cmd->add_flag("--progress", a->progress, "Show progress even when stderr is not a terminal");
  cmd->add_flag("--no-progress", a->no_progress, "Never show progress");
  cmd->add_flag("--no-summary", a->quiet_summary, "Do not print the summary on stderr");
  cmd->footer(
      "Examples:\n"
      "  tsumugi tokenize --model llm-jp-tokenizer.model -o data/ja_wiki clean/kept-*.jsonl.zst\n"
      "  zcat dump.jsonl.gz | tsumugi tokenize -m spm.model --text-field content -o out/dump -j 16\n"
      "Megatron-LM: --data-path data/ja_wiki (the prefix, without .bin/.idx)");
  cmd->callback([a] {
    set_action([a] {
      install_interrupt_handler();
      auto tok = tokenizer::Tokenizer::load(a->model);
      data::TokenizeOptions opt;
      opt.inputs = a->inputs;
      opt.prefix = a->prefix;
      opt.text_field = a->text_field;
      opt.threads = a->threads;
      opt.progress = a->progress ? 1 : a->no_progress ? 0 : -1;
      opt.vocab_size = tok.vocab_size();
      opt.eod_id = resolve_eod(tok, *a);
      const auto& t = tok;
      auto stats = data::run_tokenize(opt, [&t](std::string_view text, std::vector<int32_t>& ids) { t.encode(text, ids); });
      if (!a->quiet_summary && log::level() <= log::Level::info)
        std::fputs(data::format_tokenize_summary(stats).c_str(), stderr);
      return 0;
    });
  });
}

}  // namespace tsumugi::cli
