#pragma once
// Shared helpers for tests: scratch directories, whole-file reads, running the tsumugi program.
#include <nlohmann/json_fwd.hpp>

#include <filesystem>
#include <string>
#include <vector>

#include "model/config.h"
#include "util/io.h"

namespace tsumugi::testing {

// A fresh directory under the system temp dir, removed when the object dies.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::filesystem::path& path() const { return path_; }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

void write_bytes(const std::string& path, const std::string& bytes);
// All lines of a (possibly compressed) file.
std::vector<std::string> read_lines(const std::string& path);
// Lines of every file in dir whose name starts with prefix, in name order.
std::vector<std::string> read_lines_with_prefix(const std::string& dir, const std::string& prefix);
// Runs a shell command, returning its exit status and filling output with stdout+stderr.
int run_command(const std::string& cmd, std::string& output);

// Whether `python` (a path) has every module in `modules` (space-separated) installed. The modules
// are looked up, not imported: importing torch or transformers costs seconds, and the oracle
// scripts that need them import them anyway.
bool python_has(const std::string& python, const std::string& modules);

// The tsumugi program built with these tests.
const std::string& tsumugi_binary();
// A model small enough for finite differences: 4 heads of 4 (LLaMA: 2 kv heads), width 16,
// vocabulary 32, context 16; GPT-2 tied, LLaMA untied.
model::ModelConfig tiny_model(model::Family f, int n_layer = 2);
// Runs `tsumugi ARGS` and returns stdout+stderr. With `status`, the exit status goes there;
// without, a non-zero exit fails the calling test, showing the arguments and the output.
// `env` is put in front of the command line ("OMP_NUM_THREADS=1").
std::string run_tsumugi(const std::string& args, int* status = nullptr, const std::string& env = "");
// Every line of a JSONL file (metrics.jsonl, samples.jsonl), parsed.
std::vector<nlohmann::json> read_jsonl(const std::string& path);
// The records of RUN_DIR/metrics.jsonl, which `pretrain` and `sft` runs write.
std::vector<nlohmann::json> run_metrics(const std::string& run_dir);
// A uint16 token dataset at PREFIX (.bin/.idx) of `docs` learnable documents (ids 8..247 in
// strides of 5 from a random start, 20-79 tokens, then end-of-document id 7), for training runs.
void write_stride_documents(const std::string& prefix, int docs);

}  // namespace tsumugi::testing
