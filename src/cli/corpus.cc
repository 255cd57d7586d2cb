// `tsumugi corpus ...`: corpus cleaning and inspection of presets and filters.
#include <fmt/format.h>

#include <cstdio>

#include "cli/commands.h"
#include "corpus/clean.h"
#include "corpus/filter.h"
#include "corpus/profile.h"
#include "util/error.h"
#include "util/interrupt.h"
#include "util/log.h"
#include "util/resources.h"

namespace tsumugi::cli {

namespace {

uint64_t parse_size(const std::string& s) {
  if (s.empty()) fail("empty size");
  size_t pos = 0;
  double v = 0;
  try {
    v = std::stod(s, &pos);
  } catch (const std::exception&) {
    fail("cannot read size '{}' (use e.g. 256M or 1G)", s);
  }
  std::string unit = s.substr(pos);
  double mult = 1;
  if (unit == "" || unit == "B") mult = 1;
  else if (unit == "K" || unit == "KB" || unit == "KiB") mult = 1 << 10;
  else if (unit == "M" || unit == "MB" || unit == "MiB") mult = 1 << 20;
  else if (unit == "G" || unit == "GB" || unit == "GiB") mult = double(1ull << 30);
  else fail("cannot read size '{}' (use e.g. 256M or 1G)", s);
  if (v <= 0) fail("size must be positive: '{}'", s);
  return uint64_t(v * mult);
}

struct CleanArgs {
  std::string preset, profile, dedup = "none", shard_size = "256M", ext = ".jsonl.zst", rejects_ext = ".jsonl.zst";
  std::string outdir, text_field = "text", id_field = "id";
  std::vector<std::string> inputs;
  unsigned threads = 0;
  int ngram = 5, bands = 20, rows = 12;
  uint64_t seed = 1;
  bool no_rejects = false, progress = false, no_progress = false, quiet_table = false;
};

}  // namespace

void register_corpus(CLI::App& app) {
  auto* corpus = app.add_subcommand("corpus", "Clean, filter and deduplicate JSONL text corpora");
  corpus->require_subcommand(1);

  auto a = std::make_shared<CleanArgs>();
  auto* clean = corpus->add_subcommand("clean", "Filter and deduplicate JSONL documents into cleaned shards");
  clean->description(
      "Filter and deduplicate JSONL documents (one JSON object per line; .jsonl, .jsonl.gz or .jsonl.zst).\n"
      "Writes into OUTDIR: kept-NNNNN.jsonl.zst shards, rejects.jsonl.zst (each rejected document with the\n"
      "filter and reason), errors.jsonl (unparseable records with file and line), and stats.json.\n"
      "Run under `mpirun -np N` to split the inputs across ranks; deduplication stays global.");
  clean->add_option("inputs", a->inputs, "Input files or globs ('-' or none: stdin)");
  clean->add_option("-o,--output", a->outdir, "Output directory")->required();
  auto* preset = clean->add_option("--preset", a->preset,
                                   "Built-in filter chain: llm-jp-v1-ja (default), swallow-ja, en, code "
                                   "(`tsumugi corpus presets` lists them)");
  clean->add_option("--profile", a->profile, "Filter chain from a TOML or JSON profile file")->excludes(preset);
  clean->add_option("--dedup", a->dedup, "Deduplication: none, exact (normalized text hash), minhash (near-duplicates)")
      ->check(CLI::IsMember({"none", "exact", "minhash"}))
      ->capture_default_str();
  clean->add_option("--text-field", a->text_field, "JSON field holding the text; other fields are carried through")
      ->capture_default_str();
  clean->add_option("--id-field", a->id_field, "JSON field naming a document in rejects (else FILE:LINE)")
      ->capture_default_str();
  clean->add_option("-j,--threads", a->threads, "Worker threads per process (0: all cores)")->capture_default_str();
  clean->add_option("--shard-size", a->shard_size, "Uncompressed bytes per kept shard (e.g. 256M, 1G)")
      ->capture_default_str();
  clean->add_option("--output-ext", a->ext, "Kept shard format by extension: .jsonl, .jsonl.gz or .jsonl.zst")
      ->check(CLI::IsMember({".jsonl", ".jsonl.gz", ".jsonl.zst"}))
      ->capture_default_str();
  clean->add_option("--rejects-ext", a->rejects_ext, "Rejects file format by extension")
      ->check(CLI::IsMember({".jsonl", ".jsonl.gz", ".jsonl.zst"}))
      ->capture_default_str();
  clean->add_flag("--no-rejects", a->no_rejects, "Do not write rejected documents (counts still go to stats.json)");
  clean->add_option("--minhash-ngram", a->ngram, "MinHash shingle size in characters")->capture_default_str();
  clean->add_option("--minhash-bands", a->bands, "MinHash LSH bands")->capture_default_str();
  clean->add_option("--minhash-rows", a->rows, "MinHash rows per band (hashes = bands x rows)")->capture_default_str();
  clean->add_option("--seed", a->seed, "Seed of the MinHash hash family")->capture_default_str();
  clean->add_flag("--progress", a->progress, "Show progress even when stderr is not a terminal");
  clean->add_flag("--no-progress", a->no_progress, "Never show progress");
  clean->add_flag("--no-table", a->quiet_table, "Do not print the stats table on stderr");
  clean->footer(
      "Examples:\n"
      "  tsumugi corpus clean --preset llm-jp-v1-ja --dedup minhash -o clean/ crawl/*.jsonl.gz\n"
      "  zcat dump.jsonl.gz | tsumugi corpus clean --preset en -o clean-en/\n"
      "  mpirun -np 8 tsumugi corpus clean --profile my.toml --dedup minhash -o out/ 'shards/*.jsonl.zst'");
  clean->callback([a] {
    set_action([a] {
      install_interrupt_handler();
      corpus::CleanOptions opt;
      opt.inputs = a->inputs;
      opt.outdir = a->outdir;
      if (!a->profile.empty()) {
        opt.profile = corpus::load_profile_file(a->profile);
      } else {
        std::string name = a->preset.empty() ? "llm-jp-v1-ja" : a->preset;
        if (a->preset.empty()) log::info("no --preset or --profile given: using preset {}", name);
        opt.profile = corpus::load_preset(name);
      }
      opt.text_field = a->text_field;
      opt.id_field = a->id_field;
      opt.dedup.mode = corpus::parse_dedup_mode(a->dedup);
      opt.dedup.ngram = a->ngram;
      opt.dedup.bands = a->bands;
      opt.dedup.rows = a->rows;
      opt.dedup.seed = a->seed;
      opt.threads = a->threads;
      opt.shard_bytes = parse_size(a->shard_size);
      opt.output_ext = a->ext;
      opt.rejects_ext = a->rejects_ext;
      opt.write_rejects = !a->no_rejects;
      opt.progress = a->progress ? 1 : a->no_progress ? 0 : -1;
      auto comm = make_communicator();
      auto stats = corpus::run_clean(opt, *comm);
      if (comm->rank() == 0 && !a->quiet_table && log::level() <= log::Level::info)
        std::fputs(corpus::format_stats_table(stats).c_str(), stderr);
      return 0;
    });
  });

  auto show = std::make_shared<std::string>();
  auto* presets = corpus->add_subcommand("presets", "List the built-in filter presets, or print one as TOML");
  presets->add_option("--show", *show, "Print this preset's TOML (a starting point for --profile)");
  presets->callback([show] {
    set_action([show] {
      if (!show->empty()) {
        auto data = resources::find("presets/" + *show + ".toml");
        if (!data) corpus::load_preset(*show);  // throws the helpful message
        std::fwrite(data->data(), 1, data->size(), stdout);
        return 0;
      }
      for (auto& name : corpus::preset_names()) {
        auto p = corpus::load_preset(name);
        std::printf("%-16s %s (%zu filters)\n", name.c_str(), p.description.c_str(), p.filters.size());
      }
      return 0;
    });
  });

  auto* filters = corpus->add_subcommand("filters", "List the filter types a profile can use");
  filters->callback([] {
    set_action([] {
      for (auto& spec : corpus::filter_specs()) std::printf("%-22s %s\n", spec.type.c_str(), spec.summary.c_str());
      return 0;
    });
  });
}

}  // namespace tsumugi::cli
