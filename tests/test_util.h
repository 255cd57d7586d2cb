#pragma once
// Shared helpers for tests: scratch directories and whole-file reads.
#include <filesystem>
#include <string>
#include <vector>

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

}  // namespace tsumugi::testing
