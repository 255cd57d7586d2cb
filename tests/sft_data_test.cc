// Instruction data for `tsumugi sft`: the template rendered byte for byte for each record shape,
// the loss mask at token level (response tokens and the EOD after each response, nothing else),
// packing/padding/truncation, the seeded epoch order, and errors naming the file and line.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <set>

#include "sft/data.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"
#include "train/run_config.h"
#include "util/error.h"

using namespace tsumugi;
using tsumugi::testing::run_command;
using tsumugi::testing::TempDir;
using tsumugi::testing::write_bytes;

namespace {

const std::string kSys = "以下は、タスクを説明する指示です。要求を適切に満たす応答を書きなさい。";
const std::string kSysInput =
    "以下は、タスクを説明する指示と、文脈のある入力の組み合わせです。要求を適切に満たす応答を書きなさい。";

sft::Rendered render(const std::string& json) {
  return sft::render_record(nlohmann::json::parse(json), sft::Template{}, "f.jsonl:1");
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// A small unigram tokenizer trained by the tsumugi binary on the bundled instruction data, with
// <EOD> as a control symbol (as the demo tokenizer has).
class SftTokens : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    std::string text;
    int n = 0;
    for (const auto& line : tsumugi::testing::read_lines(std::string(TSUMUGI_SOURCE_DIR) + "/data/sft/train.jsonl")) {
      text += line + "\n";
      if (++n == 300) break;
    }
    write_bytes(dir_->file("in.txt"), text);
    std::string out;
    int st = run_command(std::string(TSUMUGI_BINARY) + " tokenizer train --input " + dir_->file("in.txt") +
                             " --vocab-size 1200 --model-type unigram --byte-fallback true --character-coverage 0.995"
                             " --control-symbols '<EOD>' -o " + dir_->file("tok") + " 2>&1",
                         out);
    ASSERT_EQ(st, 0) << out;
    tok_ = new tokenizer::Tokenizer(tokenizer::Tokenizer::load(dir_->file("tok.model")));
    eod_ = tok_->piece_to_id("<EOD>");
  }
  static void TearDownTestSuite() {
    delete tok_;
    delete dir_;
  }
  // The text of the target tokens in [begin, end) of an example, which must all be targets.
  static std::string decode_targets(const sft::Example& ex, std::size_t begin, std::size_t end) {
    std::vector<int32_t> ids(ex.tokens.begin() + begin, ex.tokens.begin() + end);
    return tok_->decode(ids);
  }
  // Spans of consecutive target tokens: [begin, end) each.
  static std::vector<std::pair<std::size_t, std::size_t>> target_runs(const sft::Example& ex) {
    std::vector<std::pair<std::size_t, std::size_t>> runs;
    for (std::size_t i = 0; i < ex.tokens.size(); ++i) {
      if (!ex.is_target[i]) continue;
      if (runs.empty() || runs.back().second != i) runs.emplace_back(i, i + 1);
      else runs.back().second = i + 1;
    }
    return runs;
  }
  static TempDir* dir_;
  static tokenizer::Tokenizer* tok_;
  static int32_t eod_;
};
TempDir* SftTokens::dir_ = nullptr;
tokenizer::Tokenizer* SftTokens::tok_ = nullptr;
int32_t SftTokens::eod_ = -1;

}  // namespace

TEST(SftTemplate, AlpacaWithoutInputIsTheLlmJpPrompt) {
  auto r = render(R"({"instruction": "コマンド ls は何をしますか？", "output": "ls - ディレクトリの内容をリスト表示する"})");
  const std::string prompt = kSys + "\n\n### 指示:\nコマンド ls は何をしますか？\n\n### 応答:\n";
  EXPECT_EQ(r.text, prompt + "ls - ディレクトリの内容をリスト表示する");
  ASSERT_EQ(r.responses.size(), 1u);
  EXPECT_EQ(r.responses[0], std::make_pair(prompt.size(), r.text.size()));
  // an empty input is the same as none
  EXPECT_EQ(render(R"({"instruction": "コマンド ls は何をしますか？", "input": "", "output": "x"})").text, prompt + "x");
}

TEST(SftTemplate, AlpacaWithInputUsesTheInputHeaderAndSection) {
  auto r = render(R"({"instruction": "要約しなさい。", "input": "本文です。", "output": "要約"})");
  EXPECT_EQ(r.text, kSysInput + "\n\n### 指示:\n要約しなさい。\n\n### 入力:\n本文です。\n\n### 応答:\n要約");
  EXPECT_EQ(r.text.substr(r.responses[0].first), "要約");
}

TEST(SftTemplate, MessagesRenderTurnsWithDefaultOrGivenSystem) {
  auto r = render(R"({"messages": [{"role": "user", "content": "u1"}, {"role": "assistant", "content": "a1"},
                                   {"role": "user", "content": "u2"}, {"role": "assistant", "content": "a2"}]})");
  EXPECT_EQ(r.text, kSys + "\n\n### 指示:\nu1\n\n### 応答:\na1\n\n### 指示:\nu2\n\n### 応答:\na2");
  ASSERT_EQ(r.responses.size(), 2u);
  EXPECT_EQ(r.text.substr(r.responses[0].first, r.responses[0].second - r.responses[0].first), "a1");
  EXPECT_EQ(r.text.substr(r.responses[1].first, r.responses[1].second - r.responses[1].first), "a2");
  auto s = render(R"({"messages": [{"role": "system", "content": "あなたは助手です。"},
                                   {"role": "user", "content": "u1"}, {"role": "assistant", "content": "a1"}]})");
  EXPECT_EQ(s.text, "あなたは助手です。\n\n### 指示:\nu1\n\n### 応答:\na1");
}

TEST(SftTemplate, TextRecordsSplitAtTheResponseMarker) {
  auto r = render(R"({"text": "前置き\n\n### 指示:\nq1\n\n### 応答:\nr1\n\n### 指示:\nq2\n\n### 応答:\nr2"})");
  ASSERT_EQ(r.responses.size(), 2u);
  EXPECT_EQ(r.text.substr(r.responses[0].first, r.responses[0].second - r.responses[0].first), "r1");
  EXPECT_EQ(r.text.substr(r.responses[1].first), "r2");
}

TEST(SftTemplate, CustomTemplateAndPlaceholdersInValuesAreKept) {
  sft::Template t;
  t.prompt = "Q: {instruction}\nA: ";
  t.response_marker = "A: ";
  auto r = sft::render_record(nlohmann::json::parse(R"({"instruction": "say {input}", "output": "ok"})"), t, "x");
  EXPECT_EQ(r.text, "Q: say {input}\nA: ok");
}

TEST(SftTemplate, BadRecordsNameFileLineAndField) {
  EXPECT_EQ(error_of([] { render(R"({"instruction": "q"})"); }), "f.jsonl:1: field 'output' is missing");
  EXPECT_EQ(error_of([] { render(R"({"instruction": 3, "output": "a"})"); }),
            "f.jsonl:1: field 'instruction' must be a string (got number)");
  EXPECT_EQ(error_of([] { render(R"({"prompt": "q"})"); }),
            "f.jsonl:1: no 'instruction'/'output', 'text' or 'messages' field");
  EXPECT_EQ(error_of([] { render(R"({"text": "no marker here"})"); }),
            "f.jsonl:1: field 'text' has no response marker \"### 応答:\\n\" (template.response_marker)");
  EXPECT_NE(error_of([] { render(R"({"messages": [{"role": "user", "content": "q"}]})"); })
                .find("messages[0]: the last message must be the assistant's"),
            std::string::npos);
  EXPECT_NE(error_of([] { render(R"({"messages": [{"role": "tool", "content": "q"}]})"); })
                .find("messages[0] has role 'tool'"),
            std::string::npos);
  EXPECT_EQ(error_of([] { render(R"({"messages": [{"role": "user"}, {"role": "assistant", "content": "a"}]})"); }),
            "f.jsonl:1: messages[0]: field 'content' is missing");
}

TEST(SftTemplate, TemplateWithoutResponseMarkerIsAConfigError) {
  TempDir d;
  write_bytes(d.file("c.toml"), "model = 'ckpt'\n[data]\ntrain = ['t.jsonl']\n[template]\nprompt = '{instruction}\\n答え:'\n");
  std::string e = error_of([&] { train::load_run_config(d.file("c.toml"), {}, train::RunKind::Sft); });
  EXPECT_NE(e.find(d.file("c.toml") + ": template.prompt does not end with the response marker"), std::string::npos) << e;
  e = error_of([&] {
    train::load_run_config(d.file("c.toml"), {"template.prompt={instruction} A: ", "template.response_marker=A: ",
                                              "template.prompt_with_input={instruction}{input}"},
                           train::RunKind::Sft);
  });
  EXPECT_NE(e.find("template.prompt_with_input does not end with the response marker"), std::string::npos) << e;
  // model.* shape keys belong to pretraining: the checkpoint has the shape
  e = error_of([&] { train::load_run_config(d.file("c.toml"), {"model.n_layer=2"}, train::RunKind::Sft); });
  EXPECT_NE(e.find("unknown key 'model.n_layer' (the model's shape comes from the checkpoint"), std::string::npos) << e;
}

TEST_F(SftTokens, AlpacaMaskCoversExactlyTheResponseAndEod) {
  sft::Rendered r = render(R"({"instruction": "コマンド ls は何をしますか？", "output": "ls - ディレクトリの内容をリスト表示する"})");
  sft::Example ex = sft::tokenize(r, *tok_, eod_);
  std::vector<int32_t> prompt_ids, full_ids;
  tok_->encode(r.text.substr(0, r.responses[0].first), prompt_ids);
  tok_->encode(r.text, full_ids);
  ASSERT_EQ(ex.tokens.size(), full_ids.size() + 1);
  EXPECT_EQ(ex.tokens.back(), eod_);
  auto runs = target_runs(ex);
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].second, ex.tokens.size());  // through the EOD
  // every token before the response is prompt (no loss); the response decodes to the output
  EXPECT_EQ(std::vector<int32_t>(ex.tokens.begin(), ex.tokens.begin() + runs[0].first),
            std::vector<int32_t>(full_ids.begin(), full_ids.begin() + runs[0].first));
  EXPECT_GE(runs[0].first + 1, prompt_ids.size());
  EXPECT_EQ(decode_targets(ex, runs[0].first, runs[0].second - 1), "ls - ディレクトリの内容をリスト表示する");
}

TEST_F(SftTokens, MessagesMaskEachAssistantTurnEachFollowedByEod) {
  sft::Rendered r = render(R"({"messages": [{"role": "user", "content": "ls とは何ですか？"},
      {"role": "assistant", "content": "ls - ディレクトリの内容をリスト表示する"},
      {"role": "user", "content": "マニュアルの何章に載っていますか？"}, {"role": "assistant", "content": "1 章 (コマンド) です。"}]})");
  sft::Example ex = sft::tokenize(r, *tok_, eod_);
  auto runs = target_runs(ex);
  ASSERT_EQ(runs.size(), 2u);
  for (const auto& [b, e] : runs) EXPECT_EQ(ex.tokens[e - 1], eod_);
  EXPECT_EQ(decode_targets(ex, runs[0].first, runs[0].second - 1), "ls - ディレクトリの内容をリスト表示する");
  EXPECT_EQ(decode_targets(ex, runs[1].first, runs[1].second - 1), "1 章 (コマンド) です。");
  // the second user turn sits between the two runs, untrained
  std::string between = decode_targets(ex, runs[0].second, runs[1].first);
  EXPECT_NE(between.find("マニュアルの何章に載っていますか？"), std::string::npos) << between;
  EXPECT_NE(between.find("### 指示:"), std::string::npos) << between;
  int eods = 0;
  for (int32_t t : ex.tokens) eods += t == eod_;
  EXPECT_EQ(eods, 2);
}

TEST_F(SftTokens, TextAndInputShapesMaskTheirResponses) {
  sft::Example t = sft::tokenize(
      render(R"({"text": "以下は指示です。\n\n### 指示:\nindent はマニュアルの何章にありますか？\n\n### 応答:\nindent は 1 章 (コマンド) にあります。"})"),
      *tok_, eod_);
  auto runs = target_runs(t);
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(decode_targets(t, runs[0].first, runs[0].second - 1), "indent は 1 章 (コマンド) にあります。");
  sft::Example in = sft::tokenize(
      render(R"({"instruction": "名前を答えてください。", "input": "ファイルをコピーする。", "output": "cp"})"), *tok_, eod_);
  runs = target_runs(in);
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(decode_targets(in, runs[0].first, runs[0].second - 1), "cp");
  EXPECT_EQ(runs[0].second, in.tokens.size());
}

TEST_F(SftTokens, PackedTargetsAreNextTokensWhereTrainedElseMinusOne) {
  std::vector<sft::Example> exs;
  for (const char* out : {"ls - list", "cp - copy files", "mv - move (rename) files"})
    exs.push_back(sft::tokenize(render(std::string(R"({"instruction": "q", "output": ")") + out + "\"}"), *tok_, eod_));
  std::size_t total = 0;
  for (const auto& e : exs) total += e.tokens.size();
  sft::PackOptions po;
  po.seq_len = static_cast<int>(total);  // everything fits in one sequence of total + 1 tokens
  po.pad = eod_;
  sft::LoadStats st;
  sft::Sequences s = sft::pack(exs, po, &st);
  ASSERT_EQ(s.count(), 1u);
  std::vector<int32_t> stream;
  std::vector<uint8_t> is_target;
  for (const auto& e : exs) {
    stream.insert(stream.end(), e.tokens.begin(), e.tokens.end());
    is_target.insert(is_target.end(), e.is_target.begin(), e.is_target.end());
  }
  for (std::size_t i = 0; i < total; ++i) {
    EXPECT_EQ(s.inputs[i], stream[i]);
    EXPECT_EQ(s.targets[i], i + 1 < total && is_target[i + 1] ? stream[i + 1] : -1) << i;
  }
  // padding: one example a sequence, rest of it EOD inputs with no targets
  po.packing = false;
  sft::Sequences p = sft::pack(exs, po, &st);
  ASSERT_EQ(p.count(), 3u);
  const std::size_t n0 = exs[0].tokens.size();
  for (std::size_t i = n0; i < total; ++i) {
    EXPECT_EQ(p.inputs[i], eod_);
    EXPECT_EQ(p.targets[i], -1);
  }
  // too long: truncated (counted) or dropped (counted)
  po.packing = true;
  po.seq_len = static_cast<int>(exs[2].tokens.size()) - 3;
  sft::LoadStats t1, t2;
  sft::Sequences tr = sft::pack(exs, po, &t1);
  EXPECT_EQ(t1.truncated, 1u);
  EXPECT_EQ(t1.dropped, 0u);
  po.drop_overflow = true;
  sft::pack(exs, po, &t2);
  EXPECT_EQ(t2.dropped, 1u);
  EXPECT_EQ(t2.truncated, 0u);
}

TEST_F(SftTokens, LoadingErrorsNameTheFileAndLine) {
  TempDir d;
  write_bytes(d.file("ok.jsonl"), R"({"instruction": "q", "output": "a"})" "\n\n" R"({"instruction": "q2"})" "\n");
  EXPECT_EQ(error_of([&] { sft::load_examples({d.file("ok.jsonl")}, sft::Template{}, *tok_, eod_, nullptr); }),
            d.file("ok.jsonl") + ":3: field 'output' is missing");
  write_bytes(d.file("empty.jsonl"), "");
  EXPECT_EQ(error_of([&] { sft::load_examples({d.file("empty.jsonl")}, sft::Template{}, *tok_, eod_, nullptr); }),
            d.file("empty.jsonl") + ": no records (the file is empty)");
  write_bytes(d.file("bad.jsonl"), R"({"instruction": "q", "output": "a"})" "\n{oops\n");
  std::string e = error_of([&] { sft::load_examples({d.file("bad.jsonl")}, sft::Template{}, *tok_, eod_, nullptr); });
  EXPECT_EQ(e.rfind(d.file("bad.jsonl") + ":2: invalid JSON", 0), 0u) << e;
}

TEST_F(SftTokens, EpochOrderIsASeededPermutation) {
  std::vector<sft::Example> exs;
  for (int i = 0; i < 10; ++i)
    exs.push_back(sft::tokenize(render(R"({"instruction": "q", "output": "a)" + std::to_string(i) + "\"}"), *tok_, eod_));
  sft::PackOptions po;
  po.seq_len = 96;
  po.packing = false;
  sft::Sequences s = sft::pack(exs, po, nullptr);
  ASSERT_EQ(s.count(), 10u);
  sft::SftBatches a(s, {}, 7), b(s, {}, 7), c(s, {}, 8);
  std::vector<int32_t> in(96), tg(96), in2(96), tg2(96);
  std::set<std::vector<int32_t>> first_epoch;
  bool differs = false;
  for (uint64_t k = 0; k < 20; ++k) {
    a.train_sequence(k, in.data(), tg.data());
    b.train_sequence(k, in2.data(), tg2.data());
    EXPECT_EQ(in, in2);
    c.train_sequence(k, in2.data(), tg2.data());
    differs |= in != in2;
    if (k < 10) first_epoch.insert(in);
  }
  EXPECT_TRUE(differs);
  EXPECT_EQ(first_epoch.size(), 10u);  // each example once per epoch
}
