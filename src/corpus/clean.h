#pragma once
// `tsumugi corpus clean` as a library call: stream JSONL inputs through a filter
// pipeline on a thread pool, deduplicate globally (also across MPI ranks), and write
// kept shards, a rejects file, an errors file and stats.json into an output directory.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "corpus/dedup.h"
#include "corpus/profile.h"
#include "util/comm.h"

namespace tsumugi::corpus {

struct CleanOptions {
  std::vector<std::string> inputs;  // files, globs, or "-" for stdin
  std::string outdir;
  Profile profile;
  std::string text_field = "text";
  std::string id_field = "id";
  DedupOptions dedup;
  unsigned threads = 0;                      // 0: all hardware threads
  uint64_t shard_bytes = 256ull << 20;       // uncompressed bytes per kept shard
  std::string output_ext = ".jsonl.zst";     // kept shards: .jsonl, .jsonl.gz or .jsonl.zst
  std::string rejects_ext = ".jsonl.zst";    // rejects file
  bool write_rejects = true;
  int progress = -1;                         // -1: when stderr is a terminal
  size_t batch_bytes = 2u << 20;
};

// Runs the job on this rank; every rank of `comm` must call it with the same options.
// Returns the merged stats (also written to OUTDIR/stats.json by rank 0).
nlohmann::json run_clean(const CleanOptions& opt, Communicator& comm);

// The readable per-filter table printed at the end of a run.
std::string format_stats_table(const nlohmann::json& stats);

}  // namespace tsumugi::corpus
