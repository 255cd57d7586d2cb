// `tsumugi generate` end to end: ids and text output, stop strings, --bench's JSON line, errors.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <sstream>

#include "infer/engine.h"
#include "infer/fixtures.h"

namespace tsumugi {
namespace {

using testing::TempDir;

const std::string kBin = TSUMUGI_BINARY;

struct CliModel {
  TempDir dir;
  std::string model;
  CliModel() {
    const std::string tok = testing::make_tokenizer(dir, 320);
    model = dir.file("m");
    testing::write_checkpoint(model, testing::tiny_llama(384), testing::random_weights(testing::tiny_llama(384), 31), tok);
  }
};

CliModel& cm() {
  static CliModel m;
  return m;
}

int gen(const std::string& args, std::string& out) {
  return testing::run_command(kBin + " generate --model " + cm().model + " " + args + " 2>&1", out);
}

TEST(InferCli, IdsEqualTheLibrarysGreedyTokens) {
  std::string out;
  ASSERT_EQ(gen("--prompt-ids '5 17 300' --max-tokens 9 --ignore-eos --output-format ids --dtype f16 --threads 1", out), 0) << out;
  infer::LoadOptions o;
  o.dtype = "f16";
  infer::Sampling s;
  s.temperature = 0;
  s.max_tokens = 9;
  s.ignore_eos = true;
  const auto want = infer::Engine::load(cm().model, o)->complete({5, 17, 300}, s).tokens;
  std::istringstream in(out);
  std::vector<int32_t> got;
  int32_t id;
  while (in >> id) got.push_back(id);
  EXPECT_EQ(got, want) << out;
}

TEST(InferCli, TextStopsBeforeTheStopString) {
  std::string free_run, out;
  ASSERT_EQ(gen("--prompt 'the cat' --max-tokens 30 --ignore-eos", free_run), 0) << free_run;
  ASSERT_GT(free_run.size(), 20u);
  const std::string body = free_run.substr(7, free_run.size() - 8);  // after the prompt, before '\n'
  const std::string stop = body.substr(body.size() / 2, 2);
  ASSERT_EQ(gen("--prompt 'the cat' --max-tokens 30 --ignore-eos --stop '" + stop + "' --stop zzzz", out), 0) << out;
  EXPECT_EQ(out, "the cat" + body.substr(0, body.find(stop)) + "\n");
}

TEST(InferCli, BenchPrintsOneJsonLine) {
  std::string out;
  ASSERT_EQ(gen("--bench --bench-prompt 12 --max-tokens 5 --dtype q8_0 --threads 1 --bench-repeat 1", out), 0) << out;
  const auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["dtype"], "q8_0");
  EXPECT_EQ(j["threads"], 1);
  EXPECT_EQ(j["prompt_tokens"], 12);
  EXPECT_EQ(j["decode_tokens"], 5);
  EXPECT_GT(j["prompt_tokens_per_s"].get<double>(), 0);
  EXPECT_GT(j["decode_tokens_per_s"].get<double>(), 0);
  EXPECT_GT(j["weights_bytes"].get<uint64_t>(), 0u);
}

TEST(InferCli, HelpAndErrors) {
  std::string out;
  ASSERT_EQ(testing::run_command(kBin + " generate --help", out), 0);
  for (const char* flag : {"--top-p", "--min-p", "--repetition-penalty", "--stop", "--dtype", "--threads", "--adapter",
                           "--ignore-eos", "--bench", "--bench-prompt", "--backend", "Examples:"})
    EXPECT_NE(out.find(flag), std::string::npos) << flag;
  EXPECT_NE(gen("--prompt-ids '1 2' --dtype q3", out), 0);
  EXPECT_NE(out.find("q3"), std::string::npos) << out;
  EXPECT_NE(gen("--max-tokens 3", out), 0);
  EXPECT_NE(out.find("--prompt"), std::string::npos) << out;
  EXPECT_NE(gen("--prompt-ids '1 2' --top-p 0", out), 0);
  EXPECT_NE(out.find("top_p"), std::string::npos) << out;
}

}  // namespace
}  // namespace tsumugi
