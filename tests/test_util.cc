#include "test_util.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cstdio>
#include <fstream>
#include <random>
#include <sys/wait.h>

#include "data/indexed_dataset.h"

namespace tsumugi::testing {

TempDir::TempDir() {
  std::random_device rd;
  path_ = std::filesystem::temp_directory_path() /
          ("tsumugi-test-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
  std::filesystem::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
}

std::vector<std::string> read_lines(const std::string& path) {
  std::vector<std::string> lines;
  LineReader r(path);
  std::string_view l;
  while (r.next(l)) lines.emplace_back(l);
  return lines;
}

std::vector<std::string> read_lines_with_prefix(const std::string& dir, const std::string& prefix) {
  std::vector<std::string> names;
  for (auto& e : std::filesystem::directory_iterator(dir)) {
    auto n = e.path().filename().string();
    if (n.rfind(prefix, 0) == 0) names.push_back(e.path().string());
  }
  std::sort(names.begin(), names.end());
  std::vector<std::string> out;
  for (auto& n : names)
    for (auto& l : read_lines(n)) out.push_back(l);
  return out;
}

int run_command(const std::string& cmd, std::string& output) {
  output.clear();
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return -1;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) output.append(buf.data(), n);
  int status = ::pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

bool python_has(const std::string& python, const std::string& modules) {
  std::string out;
  return run_command(python + " -c 'import importlib.util, sys; "
                              "sys.exit(not all(importlib.util.find_spec(m) for m in sys.argv[1:]))' " + modules,
                     out) == 0;
}

const std::string& tsumugi_binary() {
  static const std::string bin = TSUMUGI_BINARY;
  return bin;
}

std::string run_tsumugi(const std::string& args, int* status, const std::string& env) {
  std::string out;
  const int st = run_command((env.empty() ? "" : env + " ") + tsumugi_binary() + " " + args, out);
  if (status) *status = st;
  else EXPECT_EQ(st, 0) << "tsumugi " << args << "\n" << out;
  return out;
}

std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::vector<nlohmann::json> out;
  for (const auto& l : read_lines(path)) out.push_back(nlohmann::json::parse(l));
  return out;
}

std::vector<nlohmann::json> run_metrics(const std::string& run_dir) { return read_jsonl(run_dir + "/metrics.jsonl"); }

model::ModelConfig tiny_model(model::Family f, int n_layer) {
  model::ModelConfig c;
  c.family = f;
  c.n_layer = n_layer;
  c.n_head = 4;
  c.n_kv_head = f == model::Family::LLaMA ? 2 : 4;
  c.d_model = 16;
  c.d_ff = f == model::Family::LLaMA ? 24 : 64;
  c.vocab_size = 32;
  c.max_seq = 16;
  c.tie_embeddings = f == model::Family::GPT2;
  return c;
}

void write_stride_documents(const std::string& prefix, int docs) {
  data::IndexedDatasetWriter w(prefix, data::DType::uint16);
  std::mt19937 rng(11);
  for (int d = 0; d < docs; ++d) {
    std::vector<int32_t> t;
    const int start = rng() % 200, len = 20 + rng() % 60;
    for (int i = 0; i < len; ++i) t.push_back(8 + (start + i * 5) % 240);
    t.push_back(7);
    w.add_document(t);
  }
  w.finish();
}

}  // namespace tsumugi::testing
