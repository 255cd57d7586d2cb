// Micro-benchmarks of the corpus hot paths on the bundled Japanese corpus, in memory:
// each preset's filter chain (bytes/s, one thread) and MinHash key computation.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "corpus/dedup.h"
#include "corpus/jsonl.h"
#include "corpus/pipeline.h"
#include "corpus/profile.h"
#include "util/io.h"

using namespace tsumugi;
using namespace tsumugi::corpus;

namespace {
const std::vector<std::string>& texts() {
  static std::vector<std::string> t = [] {
    std::vector<std::string> out;
    LineReader r(std::string(TSUMUGI_SOURCE_DIR) + "/data/corpus/ja.jsonl.gz");
    DocumentParser p("text", "id");
    Document d;
    std::string err;
    std::string_view line;
    while (r.next(line))
      if (p.parse(line, d, err)) out.push_back(d.text);
    return out;
  }();
  return t;
}

void BM_Preset(benchmark::State& state, const std::string& preset) {
  Pipeline pipe(load_preset(preset));
  std::vector<FilterStats> stats(pipe.size());
  std::string reason;
  Document d;
  size_t bytes = 0;
  for (auto _ : state) {
    for (auto& t : texts()) {
      d.text = t;
      benchmark::DoNotOptimize(pipe.run(d, reason, stats));
      bytes += t.size();
    }
  }
  state.SetBytesProcessed(int64_t(bytes));
}

void BM_MinHashKeys(benchmark::State& state) {
  DedupOptions opt;
  opt.mode = DedupMode::minhash;
  DedupKeyer k(opt);
  std::vector<uint64_t> keys;
  size_t docs = 0, bytes = 0;
  for (auto _ : state) {
    for (auto& t : texts()) {
      keys.clear();
      k.keys(t, keys);
      ++docs;
      bytes += t.size();
    }
  }
  state.SetBytesProcessed(int64_t(bytes));
  state.counters["docs/s"] = benchmark::Counter(double(docs), benchmark::Counter::kIsRate);
}
}  // namespace

BENCHMARK_CAPTURE(BM_Preset, llm_jp_v1_ja, std::string("llm-jp-v1-ja"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Preset, swallow_ja, std::string("swallow-ja"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Preset, en, std::string("en"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Preset, code, std::string("code"))->Unit(benchmark::kMillisecond);
BENCHMARK(BM_MinHashKeys)->Unit(benchmark::kMillisecond);
