#pragma once
// Training and held-out text for tokenizer tests: the lines of the bundled corpus's `text`
// fields, the first ~train_bytes to a training file and the next non-empty lines held out.
#include <nlohmann/json.hpp>

#include <sstream>
#include <string>
#include <vector>

#include "../test_util.h"

namespace tsumugi::testing {

struct Split {
  std::string train, heldout;              // file paths
  std::vector<std::string> heldout_lines;  // the held-out lines themselves
};

inline Split split_corpus(const TempDir& dir, const std::string& lang, size_t train_bytes, size_t heldout) {
  Split s{dir.file(lang + "_train.txt"), dir.file(lang + "_heldout.txt"), {}};
  std::string train, ho;
  for (const auto& line : read_lines(std::string(TSUMUGI_SOURCE_DIR) + "/data/corpus/" + lang + ".jsonl.gz")) {
    std::stringstream ss(nlohmann::json::parse(line)["text"].get<std::string>());
    std::string l;
    while (std::getline(ss, l)) {
      if (train.size() < train_bytes) {
        train += l + "\n";
      } else if (!l.empty() && s.heldout_lines.size() < heldout) {
        s.heldout_lines.push_back(l);
        ho += l + "\n";
      }
    }
    if (s.heldout_lines.size() >= heldout) break;
  }
  write_bytes(s.train, train);
  write_bytes(s.heldout, ho);
  return s;
}

}  // namespace tsumugi::testing
