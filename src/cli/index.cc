// `tsumugi index`, `tsumugi search count|docs|next|prob`, `tsumugi trace` and
// `tsumugi corpus dedup-exact`: the suffix-array index over the training corpus.
#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>

#include "cli/commands.h"
#include "index/dedup_exact.h"
#include "index/http_api.h"
#include "index/suffix_index.h"
#include "util/error.h"
#include "util/io.h"
#include "util/log.h"
#include "util/progress.h"

namespace tsumugi::cli {

namespace {

struct IndexArgs {
  std::vector<std::string> text, shards, meta_fields = {"id", "source"};
  std::string output, tokenizer, field = "text";
  uint64_t shard_tokens = 100'000'000;
  int64_t vocab_size = 0;
  bool bytes = false, force = false, progress = false, no_progress = false;
};

struct SearchArgs {
  std::string index, query, batch;
  bool ids = false, json = false, no_verify = false;
  uint64_t offset = 0, limit = 10, seed = 0, context = 20, top = 20;
};

struct TraceArgs {
  std::string index, text, file;
  size_t min_tokens = 8, docs = 3, context = 20;
  bool json = false, no_verify = false;
};

index::Index open_index(const std::string& dir, bool no_verify) {
  return index::Index::open(dir, no_verify ? index::Index::Verify::sizes : index::Index::Verify::full);
}

// One line for a terminal: newlines shown as ⏎ so a snippet stays on its row.
std::string one_line(std::string s) {
  std::string out;
  for (char c : s) {
    if (c == '\n') out += "\xE2\x8F\x8E";
    else if (c == '\t' || c == '\r') out += ' ';
    else out += c;
  }
  return out;
}

std::string metadata_label(const nlohmann::json& meta) {
  if (meta.is_object()) {
    if (meta.contains("id")) return meta["id"].is_string() ? meta["id"].get<std::string>() : meta["id"].dump();
    if (meta.contains("shard")) return fmt::format("{}#{}", meta["shard"].get<std::string>(), meta.value("document", 0));
  }
  return meta.dump();
}

void print_hits(const nlohmann::json& hits) {
  // Bold match between the snippet's sides, when stdout is a terminal.
  bool tty = isatty(fileno(stdout));
  for (const auto& h : hits) {
    std::printf("doc %llu  %s  (token %llu of %llu)\n", (unsigned long long)h["doc"].get<uint64_t>(),
                metadata_label(h["metadata"]).c_str(), (unsigned long long)h["position"].get<uint64_t>(),
                (unsigned long long)h["doc_tokens"].get<uint64_t>());
    std::string m = one_line(h["match"].get<std::string>());
    std::printf("  …%s%s%s%s%s…\n", one_line(h["before"].get<std::string>()).c_str(), tty ? "\x1b[1;31m" : "[[",
                m.c_str(), tty ? "\x1b[0m" : "]]", one_line(h["after"].get<std::string>()).c_str());
  }
}

void print_json(const nlohmann::json& j) { std::printf("%s\n", index::dump_json(j, 2).c_str()); }

// Runs answer(query) for one QUERY, or for each line of --batch with its latency.
int run_queries(const SearchArgs& a, const std::function<nlohmann::json(const std::string&)>& answer,
                const std::function<void(const nlohmann::json&)>& print) {
  if (a.batch.empty()) {
    if (a.query.empty()) fail("empty query: give QUERY or --batch FILE");
    auto j = answer(a.query);
    if (a.json) print_json(j);
    else print(j);
    return 0;
  }
  LineReader lines(a.batch);
  std::string_view line;
  int bad = 0;
  while (lines.next(line)) {
    std::string q(line);
    nlohmann::json j;
    auto t0 = std::chrono::steady_clock::now();
    try {
      j = answer(q);
    } catch (const Error& e) {
      j = {{"query", q}, {"error", fmt::format("{}:{}: {}", a.batch, lines.line_number(), e.what())}};
      ++bad;
    }
    j["micros"] = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%s\n", index::dump_json(j).c_str());
  }
  return bad ? 1 : 0;
}

void add_search_options(CLI::App* cmd, const std::shared_ptr<SearchArgs>& a) {
  cmd->add_option("--index", a->index, "Index directory (from tsumugi index)")->required();
  auto* q = cmd->add_option("query", a->query, "Text to look for (or token ids with --ids)");
  auto* b = cmd->add_option("--batch", a->batch,
                            "Answer every line of this file ('-': stdin) as a query, one JSON line each with the "
                            "time it took (\"micros\"), opening the index once");
  q->excludes(b);
  cmd->add_flag("--ids", a->ids, "QUERY is space-separated token ids, not text");
  cmd->add_flag("--json", a->json, "Print JSON (the same as the HTTP API's /v1/search/... answers)");
  cmd->add_flag("--no-verify", a->no_verify, "Check file sizes only, not checksums, when opening the index");
}

}  // namespace

void register_index(CLI::App& app) {
  // ---- tsumugi index
  auto a = std::make_shared<IndexArgs>();
  auto* cmd = app.add_subcommand("index", "Build a suffix-array index over a corpus for search and trace");
  cmd->description(
      "Build a token-level suffix-array index (infini-gram's design) over JSONL text or over token\n"
      "shards from `tsumugi tokenize`, for `tsumugi search`, `tsumugi trace` and exact-substring\n"
      "dedup. Text is tokenized with --tokenizer (without the dummy prefix, as queries are), or\n"
      "indexed as UTF-8 bytes with --bytes (counts then equal grep's). The corpus is cut into\n"
      "shards of at most --shard-tokens tokens, each sorted in memory (about 5 x W bytes a token\n"
      "while sorting, W the token width: 1 for bytes, 2 for vocabularies under 65,535, else 4);\n"
      "queries add up over shards. On disk: W + P bytes a token (P: pointer bytes, 4 up to 4G\n"
      "positions a shard), plus each document's metadata. The index appears only when complete;\n"
      "unreadable JSONL records are counted and listed in INDEXDIR/errors.jsonl.");
  auto* text = cmd->add_option("--text", a->text, "JSONL(.gz/.zst) files or globs to index");
  auto* shards = cmd->add_option("--shards", a->shards, "Megatron token shard prefixes (PREFIX.bin/.idx)");
  text->excludes(shards);
  cmd->add_option("-o,--output", a->output, "Index directory to write")->required();
  cmd->add_option("--tokenizer", a->tokenizer,
                  "SentencePiece model: tokenizes --text, and queries (with --shards: the model they were "
                  "tokenized with)");
  cmd->add_flag("--bytes", a->bytes, "Index --text as UTF-8 bytes instead of tokens");
  cmd->add_option("--field", a->field, "JSON field holding the text")->capture_default_str();
  cmd->add_option("--meta", a->meta_fields, "JSON fields kept as each document's metadata (text input)")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--shard-tokens", a->shard_tokens, "Most tokens in one index shard")->capture_default_str();
  cmd->add_option("--vocab-size", a->vocab_size, "Vocabulary of --shards without --tokenizer (0: largest id + 1)")
      ->capture_default_str();
  cmd->add_flag("--force", a->force, "Replace INDEXDIR if it exists");
  cmd->add_flag("--progress", a->progress, "Show progress even when stderr is not a terminal");
  cmd->add_flag("--no-progress", a->no_progress, "Never show progress");
  cmd->footer(
      "Examples:\n"
      "  tsumugi index --text clean/kept-*.jsonl.zst --tokenizer tok.model -o idx/corpus\n"
      "  tsumugi index --shards data/ja_wiki data/en_wiki --tokenizer tok.model -o idx/wiki --shard-tokens 500000000\n"
      "  tsumugi index --text docs.jsonl --bytes -o idx/bytes --meta id,url\n"
      "Then: tsumugi search count --index idx/corpus '言語モデル'");
  cmd->callback([a, text, shards] {
    set_action([a, text, shards] {
      if (text->count() == 0 && shards->count() == 0) fail("give --text JSONL... or --shards PREFIX...");
      index::BuildOptions o;
      o.text_inputs = a->text;
      o.shard_prefixes = a->shards;
      o.output = a->output;
      o.tokenizer_path = a->tokenizer;
      o.bytes = a->bytes;
      o.text_field = a->field;
      o.meta_fields = a->meta_fields;
      o.shard_tokens = a->shard_tokens;
      o.vocab_size = a->vocab_size;
      o.force = a->force;
      o.progress = a->progress ? 1 : a->no_progress ? 0 : -1;
      auto st = index::build_index(o);
      log::info("index: {} documents, {} tokens, {} shard(s), {} ({:.2f} bytes/token) in {} ({:.0f} tokens/s){}",
                st.documents, st.tokens, st.shards, human_bytes(double(st.index_bytes)),
                double(st.index_bytes) / double(std::max<uint64_t>(st.tokens, 1)), human_duration(st.seconds),
                double(st.tokens) / std::max(st.seconds, 1e-9),
                st.bad_records ? fmt::format("; {} unreadable records in errors.jsonl", st.bad_records) : "");
      if (st.empty_documents) log::info("index: {} empty documents skipped", st.empty_documents);
      return 0;
    });
  });

  // ---- tsumugi search
  auto* search = app.add_subcommand("search", "Query an index: counts, documents, next tokens, probabilities");
  search->description(
      "Query a suffix-array index built by `tsumugi index`. A text query is tokenized with the\n"
      "index's tokenizer; a count is of that token sequence (a token-level count: occurrences\n"
      "where the corpus was tokenized into exactly these tokens, which can be fewer than the\n"
      "string's byte-level occurrences; a --bytes index counts bytes, as grep does).\n"
      "`a AND b OR c` (count, docs) is a CNF over documents: those containing a, and b or c.");
  search->require_subcommand(1);
  search->footer(
      "Examples:\n"
      "  tsumugi search count --index idx 'プロセスを終了'\n"
      "  tsumugi search count --index idx 'signal AND handler OR callback'\n"
      "  tsumugi search docs --index idx --limit 5 'exit status'\n"
      "  tsumugi search next --index idx --json 'the calling'\n"
      "  tsumugi search prob --index idx --ids '312 88 1045'");

  auto ca = std::make_shared<SearchArgs>();
  auto* count = search->add_subcommand("count", "Print how many times QUERY occurs (AND/OR: how many documents)");
  add_search_options(count, ca);
  count->footer("Example: tsumugi search count --index idx 'exit status'   # prints e.g. 42");
  count->callback([ca] {
    set_action([ca] {
      auto idx = open_index(ca->index, ca->no_verify);
      return run_queries(
          *ca, [&](const std::string& q) { return index::count_json(idx, q, ca->ids); },
          [](const nlohmann::json& j) {
            std::printf("%llu\n", (unsigned long long)(j.contains("count") ? j["count"] : j["documents"]).get<uint64_t>());
          });
    });
  });

  auto da = std::make_shared<SearchArgs>();
  auto* docs = search->add_subcommand("docs", "Show documents containing QUERY with the match in context");
  add_search_options(docs, da);
  docs->add_option("--offset", da->offset, "Skip this many documents (paging)")->capture_default_str();
  docs->add_option("--limit", da->limit, "Documents to show")->capture_default_str();
  docs->add_option("--seed", da->seed, "Sampling seed when there are too many occurrences to list")
      ->capture_default_str();
  docs->add_option("--context", da->context, "Snippet tokens on each side of the match")->capture_default_str();
  docs->footer("Example: tsumugi search docs --index idx --limit 3 --offset 3 '終了ステータス'");
  docs->callback([da] {
    set_action([da] {
      auto idx = open_index(da->index, da->no_verify);
      index::Index::DocsOptions o;
      o.offset = da->offset;
      o.limit = da->limit;
      o.seed = da->seed;
      o.context_tokens = da->context;
      return run_queries(
          *da, [&](const std::string& q) { return index::docs_json(idx, q, da->ids, o); },
          [&](const nlohmann::json& j) {
      if (j["sampled"].get<bool>())
        std::printf("%llu occurrences; a sample of documents (seed %llu):\n",
                    (unsigned long long)j["occurrences"].get<uint64_t>(), (unsigned long long)da->seed);
      else
        std::printf("%llu documents (%llu occurrences); showing %zu from %llu:\n",
                    (unsigned long long)j["documents"].get<uint64_t>(),
                    (unsigned long long)j["occurrences"].get<uint64_t>(), j["hits"].size(),
                    (unsigned long long)da->offset);
      print_hits(j["hits"]);
          });
    });
  });

  auto na = std::make_shared<SearchArgs>();
  auto* next = search->add_subcommand("next", "Show the distribution of the token after QUERY");
  add_search_options(next, na);
  next->add_option("--top", na->top, "Most frequent next tokens to show")->capture_default_str();
  next->footer("Example: tsumugi search next --index idx --top 10 'the calling'");
  next->callback([na] {
    set_action([na] {
      auto idx = open_index(na->index, na->no_verify);
      auto answer = [&](const std::string& q) { return index::next_json(idx, q, na->ids, na->top); };
      if (!na->batch.empty()) return run_queries(*na, answer, {});
      auto j = answer(na->query);
      if (na->json) {
        print_json(j);
        return 0;
      }
      std::printf("%llu occurrences, %llu at a document end\n", (unsigned long long)j["count"].get<uint64_t>(),
                  (unsigned long long)j["at_doc_end"].get<uint64_t>());
      for (const auto& t : j["next"])
        std::printf("%10llu  %.6f  %6d  %s\n", (unsigned long long)t["count"].get<uint64_t>(), t["prob"].get<double>(),
                    t["token"].get<int>(), one_line(index::dump_json(t["text"])).c_str());
      return 0;
    });
  });

  auto pa = std::make_shared<SearchArgs>();
  auto* prob = search->add_subcommand("prob", "P(last token | the tokens before it): n-gram and ∞-gram");
  add_search_options(prob, pa);
  prob->footer(
      "Prints the n-gram probability count(QUERY) / count(QUERY without its last token, followed by\n"
      "a token) and the ∞-gram probability, which conditions on the longest suffix of the prefix\n"
      "that occurs in the corpus.\n"
      "Example: tsumugi search prob --index idx 'terminates the calling process'");
  prob->callback([pa] {
    set_action([pa] {
      auto idx = open_index(pa->index, pa->no_verify);
      auto answer = [&](const std::string& q) { return index::prob_json(idx, q, pa->ids); };
      if (!pa->batch.empty()) return run_queries(*pa, answer, {});
      auto j = answer(pa->query);
      if (pa->json) {
        print_json(j);
        return 0;
      }
      const auto& ng = j["ngram"];
      const auto& ig = j["infgram"];
      std::printf("n-gram: %llu / %llu = %.6g\n", (unsigned long long)ng["full_count"].get<uint64_t>(),
                  (unsigned long long)ng["prefix_count"].get<uint64_t>(), ng["prob"].get<double>());
      std::printf("∞-gram: %llu / %llu = %.6g  (longest occurring suffix: %zu tokens %s)\n",
                  (unsigned long long)ig["full_count"].get<uint64_t>(),
                  (unsigned long long)ig["suffix_count"].get<uint64_t>(), ig["prob"].get<double>(),
                  ig["suffix_tokens"].get<size_t>(), one_line(index::dump_json(ig["suffix"])).c_str());
      return 0;
    });
  });

  // ---- tsumugi trace
  auto ta = std::make_shared<TraceArgs>();
  auto* trace = app.add_subcommand("trace", "Find the spans of a text that occur in the indexed corpus");
  trace->description(
      "Provenance of a text (e.g. a model's output): the maximal spans of at least --min-tokens\n"
      "tokens that occur verbatim in the indexed corpus, with how often and in which documents.");
  trace->add_option("--index", ta->index, "Index directory (from tsumugi index)")->required();
  auto* tt = trace->add_option("--text", ta->text, "The text to trace");
  auto* tf = trace->add_option("--file", ta->file, "Read the text to trace from this file ('-': stdin)");
  tt->excludes(tf);
  trace->add_option("--min-tokens", ta->min_tokens, "Shortest span to report, in tokens")->capture_default_str();
  trace->add_option("--docs", ta->docs, "Documents to show per span")->capture_default_str();
  trace->add_option("--context", ta->context, "Snippet tokens on each side")->capture_default_str();
  trace->add_flag("--json", ta->json, "Print JSON (as the HTTP API's /v1/search/trace)");
  trace->add_flag("--no-verify", ta->no_verify, "Check file sizes only, not checksums, when opening the index");
  trace->footer(
      "Examples:\n"
      "  tsumugi generate --model ckpt 'プロセスを' > out.txt && tsumugi trace --index idx --file out.txt\n"
      "  tsumugi trace --index idx --min-tokens 12 --json --text 'the calling process is terminated immediately'");
  trace->callback([ta, tt, tf] {
    set_action([ta, tt, tf] {
      if (tt->count() == 0 && tf->count() == 0) fail("give --text TEXT or --file F");
      std::string text = ta->text;
      if (tf->count()) {
        text.clear();
        auto src = open_source(ta->file);
        char buf[1 << 16];
        for (size_t n; (n = src->read(buf, sizeof buf)) > 0;) text.append(buf, n);
      }
      auto idx = open_index(ta->index, ta->no_verify);
      auto j = index::trace_json(idx, text, ta->min_tokens, ta->docs, ta->context);
      if (ta->json) {
        print_json(j);
        return 0;
      }
      std::printf("%zu tokens; %zu span(s) of >= %zu tokens found in the corpus\n", j["tokens"].size(),
                  j["spans"].size(), ta->min_tokens);
      std::printf("%7s %7s %10s  %s\n", "start", "tokens", "count", "span");
      for (const auto& s : j["spans"]) {
        std::printf("%7zu %7zu %10llu  %s\n", s["start"].get<size_t>(), s["length"].get<size_t>(),
                    (unsigned long long)s["count"].get<uint64_t>(), one_line(s["text"].get<std::string>()).c_str());
        for (const auto& h : s["docs"])
          std::printf("%27s  doc %llu %s\n", "", (unsigned long long)h["doc"].get<uint64_t>(),
                      metadata_label(h["metadata"]).c_str());
      }
      return 0;
    });
  });

  // ---- tsumugi corpus dedup-exact
  CLI::App* corpus = nullptr;
  try {
    corpus = app.get_subcommand("corpus");
  } catch (const CLI::OptionNotFound&) {
    corpus = app.add_subcommand("corpus", "Corpus tools");
  }
  auto xa = std::make_shared<index::DedupExactOptions>();
  auto* dd = corpus->add_subcommand("dedup-exact", "Remove repeated spans of N+ tokens (Lee et al.) using an index");
  dd->description(
      "Exact-substring deduplication (Lee et al. 2022) over a `tsumugi index` index: every span of\n"
      "at least --min-tokens tokens that occurs more than once is kept at its first occurrence\n"
      "(corpus order) and cut from every later one. Writes JSONL in corpus order: each document's\n"
      "metadata fields plus \"text\" rebuilt from its kept tokens (a SentencePiece index gives the\n"
      "tokenizer's normalized text; a --bytes index, the original bytes). Documents left empty are\n"
      "dropped unless --keep-empty.");
  dd->add_option("--index", xa->index_dir, "Index directory (from tsumugi index --text)")->required();
  dd->add_option("-o,--output", xa->output, "Output JSONL (.gz/.zst compress)")->required();
  dd->add_option("--min-tokens", xa->min_tokens, "Shortest repeated span to remove, in tokens")->capture_default_str();
  dd->add_flag("--keep-empty", xa->keep_empty, "Write documents that lose all their text, with empty text");
  dd->footer(
      "Examples:\n"
      "  tsumugi index --text clean/*.jsonl.zst --tokenizer tok.model -o idx && \\\n"
      "    tsumugi corpus dedup-exact --index idx --min-tokens 50 -o dedup.jsonl.zst\n"
      "  tsumugi index --text docs.jsonl --bytes -o bidx && tsumugi corpus dedup-exact --index bidx --min-tokens 100 -o out.jsonl");
  dd->callback([xa] {
    set_action([xa] {
      auto st = index::dedup_exact(*xa);
      log::info("dedup-exact: {} documents, {} changed, {} emptied{}; {} of {} tokens removed ({:.2f}%) in {} spans",
                st.documents, st.changed, st.emptied, xa->keep_empty ? " (kept)" : " (dropped)", st.removed_tokens,
                st.tokens, 100.0 * double(st.removed_tokens) / double(std::max<uint64_t>(st.tokens, 1)),
                st.removed_spans);
      return 0;
    });
  });
}

}  // namespace tsumugi::cli
