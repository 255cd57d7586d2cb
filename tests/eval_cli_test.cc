// `tsumugi eval` end to end on a tiny random model made here: scores.json, samples.jsonl and
// report.html; generation, multiple-choice and perplexity numbers checked against direct
// Engine::complete / token_logprobs computations; `eval report` over two runs; bad input.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <map>
#include <filesystem>
#include <numeric>
#include <random>

#include "eval/harness.h"
#include "eval/metrics.h"
#include "eval/prompt.h"
#include "infer/engine.h"
#include "model/config.h"
#include "test_util.h"
#include "train/checkpoint.h"
#include "util/io.h"

using namespace tsumugi;
using nlohmann::json;
using tsumugi::testing::read_lines;
using tsumugi::testing::run_command;
using tsumugi::testing::run_tsumugi;
using tsumugi::testing::tsumugi_binary;
using tsumugi::testing::TempDir;
using tsumugi::testing::write_bytes;
namespace fs = std::filesystem;

namespace {

// Small, so that the reference decoder (which recomputes the window for every token) stays fast.
constexpr int kContext = 64;

class EvalCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    setenv("OMP_NUM_THREADS", "1", 0);
    dir_ = new TempDir();
    // A small tokenizer trained on text like the datasets'.
    // The prompt's header and markers are in it, so that prompts are short in tokens (the
    // reference decoder's cost grows with the square of the length).
    std::string text;
    for (int i = 0; i < 20; ++i)
      text += eval::prompt_format("v1.3").header + "\n### 指示:\n### 入力:\n### 応答:\n" + eval::prompt_format("v1.0").header +
              "\n### 指示：\n### 入力：\n### 回答：\n説明が表すコマンドを答えてください。コマンドを選んでください。類似度を0から5で答えてください。\n"
              "ファイルを移動する。パターンに一致する行を表示する。\n";
    for (int i = 0; i < 60; ++i)
      text += "ls lists directory contents. cp copies files. ディレクトリの内容を一覧表示する。ファイルをコピーする。\n"
              "grep prints lines that match patterns. 前提と仮説の関係を回答してください。 entailment contradiction\n";
    write_bytes(dir_->file("tok.txt"), text);
    std::string out;
    ASSERT_EQ(run_command(tsumugi_binary() + " tokenizer train --input " + dir_->file("tok.txt") +
                              " --vocab-size 560 --model-type bpe --byte-fallback true -o " + dir_->file("tok") + " 2>&1",
                          out),
              0)
        << out;
    // A tiny GPT-2 with random weights (large enough that greedy answers vary).
    model::ModelConfig cfg = model::model_preset("gpt2-tiny");
    cfg.n_layer = 1;
    cfg.n_head = 2;
    cfg.n_kv_head = 2;
    cfg.d_model = 32;
    cfg.d_ff = 128;
    cfg.max_seq = kContext;
    cfg.vocab_size = model::pad_vocab(560);
    std::size_t n = 0;
    for (const auto& t : model::parameter_layout(cfg)) n = std::max<std::size_t>(n, t.offset + t.size);
    std::vector<float> w(n);
    std::mt19937 rng(1);
    std::normal_distribution<float> nd(0.0f, 0.3f);
    for (auto& x : w) x = nd(rng);
    train::save_checkpoint(dir_->file("model"), cfg, w, {}, {}, {}, dir_->file("tok.model"), -1, -1);

    write_bytes(dir_->file("qa.json"), R"({
      "instruction": "説明が表すコマンドを答えてください。", "output_length": 6, "metrics": ["exact_match", "char_f1", "set_f1"],
      "category": "MAN",
      "few_shots": [{"input": "ファイルをコピーする", "output": "cp"}, {"input": "パターンに一致する行を表示する", "output": "grep"}],
      "samples": [{"input": "ディレクトリの内容を一覧表示する", "output": "ls"}, {"input": "ファイルを移動する", "output": "mv"},
                  {"input": "lists directory contents", "output": "ｌｓ"}]})");
    write_bytes(dir_->file("mc.json"), R"({
      "instruction": "コマンドを選んでください。", "output_length": 4, "metrics": ["acc", "acc_norm"],
      "few_shots": [{"input": "copies files", "output": "cp"}],
      "samples": [{"input": "lists directory contents", "output": "ls", "choices": ["cp", "ls", "grep"]},
                  {"input": "prints matching lines", "output": "grep", "choices": ["grep", "entailment"]}]})");
    write_bytes(dir_->file("sts.json"), R"({
      "instruction": "類似度を0から5で答えてください。", "output_length": 3, "metrics": ["pearson", "spearman"],
      "few_shots": [{"input": "a / b", "output": "1.0"}],
      "samples": [{"input": "ls / cp", "output": "1.0"}, {"input": "cp / cp", "output": "5.0"}, {"input": "a / grep", "output": "0.4"}]})");
    std::string long_text;
    for (int i = 0; i < 12; ++i) long_text += "ls lists directory contents. ディレクトリの内容を一覧表示する。";
    write_bytes(dir_->file("held.jsonl"), json({{"text", "cp copies files."}}).dump() + "\n" +
                                              json({{"text", long_text}}).dump() + "\n");
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  // One thread: the model is tiny, and spinning OpenMP workers only cost time on a busy machine.
  static std::string run(const std::string& args, int* status = nullptr) {
    return run_tsumugi(args, status, "OMP_NUM_THREADS=1");
  }
  static TempDir* dir_;
};
TempDir* EvalCli::dir_ = nullptr;

}  // namespace

TEST_F(EvalCli, WritesScoresSamplesAndReportMatchingTheEngine) {
  const std::string out = dir_->file("run1");
  run("eval --model " + dir_->file("model") + " --dataset " + dir_->file("qa.json") + " " + dir_->file("mc.json") + " " +
      dir_->file("sts.json") + " " + dir_->file("held.jsonl") + " --num-few-shots 1 -o " + out);
  const json scores = json::parse(read_file(out + "/scores.json"));
  for (const char* k : {"qa_exact_match", "qa_char_f1", "qa_set_f1", "mc_acc", "mc_acc_norm", "sts_pearson",
                        "sts_spearman", "held_perplexity", "held_bits_per_char", "held_bits_per_byte"})
    EXPECT_TRUE(scores["scores"].contains(k)) << k << "\n" << scores.dump(2);
  EXPECT_TRUE(scores["categories"].contains("MAN"));
  EXPECT_TRUE(scores["categories"].contains("AVG"));

  const auto lines = read_lines(out + "/samples.jsonl");
  ASSERT_EQ(lines.size(), 3u + 2u + 3u + 2u);
  auto engine = infer::Engine::load(dir_->file("model"));
  const eval::PromptFormat fmt = eval::prompt_format("v1.3");
  std::vector<double> em, f1;
  for (const auto& l : lines) {
    const json row = json::parse(l);
    const std::string ds = row["dataset"];
    if (ds == "qa" || ds == "sts") {
      for (const char* k : {"prompt", "pred", "gold", "raw", "scores"}) ASSERT_TRUE(row.contains(k)) << k;
      // The prediction is what greedy decoding of the prompt gives, cut and normalized.
      std::vector<int32_t> ids = {engine->eos_id()};
      engine->tokenizer().encode(row["prompt"].get<std::string>(), ids);
      infer::Sampling s;
      s.temperature = 0;
      s.max_tokens = ds == "qa" ? 6 : 3;
      // A prompt longer than the context minus the budget keeps its end.
      const std::size_t keep = static_cast<std::size_t>(kContext - s.max_tokens);
      EXPECT_EQ(row.contains("prompt_truncated"), ids.size() > keep);
      if (ids.size() > keep) ids.erase(ids.begin(), ids.end() - static_cast<long>(keep));
      s.stop = {"\n\n"};
      const auto c = engine->complete(ids, s);
      EXPECT_EQ(row["raw"], c.text);
      EXPECT_EQ(row["pred"], eval::extract_answer(fmt, c.text));
      if (ds == "qa") {
        em.push_back(row["scores"]["exact_match"]);
        f1.push_back(row["scores"]["char_f1"]);
        EXPECT_EQ(row["scores"]["char_f1"].get<double>(), eval::char_f1(row["pred"].get<std::string>(), row["gold"].get<std::string>()));
      }
    } else if (ds == "mc") {
      // Each choice's score is the sum of its tokens' log-probabilities after the prompt.
      const auto choices = row["choices"].get<std::vector<std::string>>();
      const std::string prompt = row["prompt"];
      ASSERT_EQ(prompt.back(), '\n');
      std::vector<double> expect;
      for (const auto& ch : choices) {
        std::vector<int32_t> ctx = {engine->eos_id()}, whole = {engine->eos_id()};
        engine->tokenizer().encode(prompt.substr(0, prompt.size() - 1), ctx);
        engine->tokenizer().encode(prompt + ch, whole);
        if (whole.size() > static_cast<std::size_t>(kContext))  // a long prompt keeps its end
          whole.erase(whole.begin(), whole.end() - kContext);
        const auto lp = engine->token_logprobs(whole);
        const std::size_t cont = whole.size() - ctx.size();
        expect.push_back(std::accumulate(lp.end() - static_cast<long>(cont), lp.end(), 0.0));
      }
      const auto got = row["choice_logprobs"].get<std::vector<double>>();
      ASSERT_EQ(got.size(), expect.size());
      for (std::size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], expect[i], 1e-5);
      const auto best = std::max_element(expect.begin(), expect.end()) - expect.begin();
      EXPECT_EQ(row["scores"]["acc"].get<double>(), choices[best] == row["gold"] ? 1.0 : 0.0);
      EXPECT_EQ(row["pred"], choices[best]);
    }
  }
  EXPECT_NEAR(scores["scores"]["qa_exact_match"].get<double>(), std::accumulate(em.begin(), em.end(), 0.0) / 3, 1e-12);
  EXPECT_NEAR(scores["scores"]["qa_char_f1"].get<double>(), std::accumulate(f1.begin(), f1.end(), 0.0) / 3, 1e-12);

  // Perplexity: the short document directly; the long one spans several context windows.
  const std::string short_doc = "cp copies files.";
  std::vector<int32_t> ids = {engine->eos_id()};
  engine->tokenizer().encode(short_doc, ids);
  double nll = 0;
  for (double lp : engine->token_logprobs(ids)) nll -= lp;
  const json first = json::parse(lines[8]);
  EXPECT_EQ(first["dataset"], "held");
  EXPECT_NEAR(first["nll"].get<double>(), nll, 1e-9);
  EXPECT_EQ(first["tokens"].get<std::size_t>(), ids.size() - 1);
  const json second = json::parse(lines[9]);
  EXPECT_GT(second["tokens"].get<int>(), kContext);  // more than one window
  const json& ppl = scores["perplexity"]["held"];
  const double total_nll = nll + second["nll"].get<double>();
  const double tokens = static_cast<double>(ids.size() - 1) + second["tokens"].get<double>();
  EXPECT_NEAR(scores["scores"]["held_perplexity"].get<double>(), std::exp(total_nll / tokens), 1e-9);
  EXPECT_NEAR(scores["scores"]["held_bits_per_byte"].get<double>(),
              total_nll / std::log(2.0) / ppl["bytes"].get<double>(), 1e-12);
  EXPECT_LT(ppl["chars"].get<double>(), ppl["bytes"].get<double>());  // Japanese: fewer characters than bytes

  const std::string html = read_file(out + "/report.html");
  EXPECT_NE(html.find("<svg"), std::string::npos);
  EXPECT_NE(html.find("qa_char_f1"), std::string::npos);
  EXPECT_EQ(html.find("http"), std::string::npos);  // self-contained: nothing fetched
  EXPECT_EQ(html.find("<script src"), std::string::npos);
}

// Samples scored at once (--parallel, whose decoding steps the engine shares) give the same
// scores and the same samples.jsonl, in the same order, as one at a time.
TEST_F(EvalCli, ParallelSamplesScoreExactlyAsOneAtATime) {
  std::map<int, json> scores;
  std::map<int, std::vector<std::string>> rows;
  for (int parallel : {1, 4}) {
    const std::string out = dir_->file("par" + std::to_string(parallel));
    run("eval --model " + dir_->file("model") + " --dataset " + dir_->file("qa.json") + " " + dir_->file("mc.json") +
        " " + dir_->file("sts.json") + " " + dir_->file("held.jsonl") + " --num-few-shots 1 --parallel " +
        std::to_string(parallel) + " -o " + out);
    const json j = json::parse(read_file(out + "/scores.json"));
    scores[parallel] = {j["scores"], j["categories"], j["perplexity"]};
    rows[parallel] = read_lines(out + "/samples.jsonl");
  }
  EXPECT_EQ(scores[1], scores[4]);
  EXPECT_EQ(rows[1], rows[4]);
  int status = 0;
  const std::string err = run("eval --model " + dir_->file("model") + " --dataset " + dir_->file("qa.json") +
                                  " --parallel 0 -o " + dir_->file("par0"),
                              &status);
  EXPECT_NE(status, 0);
  EXPECT_NE(err.find("--parallel must be at least 1"), std::string::npos) << err;
}

TEST_F(EvalCli, ReportComparesRunsSideBySide) {
  const std::string a = dir_->file("cmp_a"), b = dir_->file("cmp_b");
  run("eval --model " + dir_->file("model") + " --dataset " + dir_->file("qa.json") + " --num-few-shots 0 -o " + a);
  run("eval --model " + dir_->file("model") + " --dataset " + dir_->file("qa.json") +
      " --num-few-shots 2 --prompt-style v1.0 --max-samples 2 -o " + b + " --compare " + a);
  EXPECT_EQ(read_lines(b + "/samples.jsonl").size(), 2u);
  const std::string html_b = read_file(b + "/report.html");
  EXPECT_NE(html_b.find(">cmp_a<"), std::string::npos);
  EXPECT_NE(html_b.find(">cmp_b<"), std::string::npos);
  run("eval report " + a + " " + b + " -o " + dir_->file("both.html"));
  const std::string html = read_file(dir_->file("both.html"));
  EXPECT_NE(html.find(">cmp_a<"), std::string::npos);
  EXPECT_NE(html.find(">cmp_b<"), std::string::npos);
  const json sb = json::parse(read_file(b + "/scores.json"));
  EXPECT_EQ(sb["prompt_style"], "v1.0");
  EXPECT_NE(json::parse(read_lines(b + "/samples.jsonl")[0])["prompt"].get<std::string>().find("### 回答：\n"), std::string::npos);
}

TEST_F(EvalCli, BadInputFailsNamingFileAndItem) {
  write_bytes(dir_->file("bad.json"), R"({"instruction": "i", "output_length": 3, "metrics": ["exact_match", "bleu_zz"],
    "samples": [{"input": "x", "output": "y"}]})");
  int st = 0;
  std::string out = run("eval --model " + dir_->file("model") + " --dataset " + dir_->file("bad.json") + " -o " +
                            dir_->file("bad_out"),
                        &st);
  EXPECT_NE(st, 0);
  EXPECT_NE(out.find("bad.json: metrics[1]: unknown metric 'bleu_zz'"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(dir_->file("bad_out") + "/scores.json"));
  out = run("eval --model " + dir_->file("model") + " --dataset " + dir_->file("qa.json") + " -o " + dir_->file("bad_out"), &st);
  EXPECT_NE(st, 0);
  EXPECT_NE(out.find("qa.json: 4 few-shot examples asked for, the dataset has 2"), std::string::npos) << out;
  out = run("eval --dataset " + dir_->file("qa.json") + " -o x", &st);
  EXPECT_NE(st, 0);
  EXPECT_NE(out.find("--model"), std::string::npos) << out;
  out = run("eval --help");
  EXPECT_NE(out.find("Examples:"), std::string::npos);
}
