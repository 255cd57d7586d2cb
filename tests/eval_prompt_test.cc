// Prompt construction byte for byte as llm-jp-eval builds it (strings written from its format),
// and the dataset reader's errors for bad files.
#include <gtest/gtest.h>

#include "eval/dataset.h"
#include "eval/harness.h"
#include "eval/prompt.h"
#include "test_util.h"
#include "util/error.h"

using namespace tsumugi;
using namespace tsumugi::eval;
using tsumugi::testing::TempDir;
using tsumugi::testing::write_bytes;

namespace {

const char* kJnliLike = R"({
  "instruction": "前提と仮説の関係をentailment、contradiction、neutralの中から回答してください。",
  "output_length": 3,
  "metrics": ["exact_match"],
  "few_shots": [
    {"input": "前提：男性がギターを弾いている。\n仮説：男性が楽器を演奏している。", "output": "entailment"},
    {"input": "前提：犬が走っている。\n仮説：犬が寝ている。", "output": "contradiction"},
    {"input": "x {y} z", "output": "neutral"}
  ],
  "samples": [
    {"input": "前提：猫が座っている。\n仮説：動物がいる。", "output": "entailment"}
  ]
})";

Dataset load(const TempDir& dir, const std::string& name, const std::string& body) {
  write_bytes(dir.file(name), body);
  return read_dataset(dir.file(name));
}

std::string error_of(const TempDir& dir, const std::string& name, const std::string& body) {
  try {
    load(dir, name, body);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST(EvalPrompt, V13FewShotPromptIsByteExact) {
  TempDir dir;
  const Dataset d = load(dir, "jnli.json", kJnliLike);
  EXPECT_EQ(d.name, "jnli");
  const std::string expected =
      "以下は、タスクを説明する指示と、文脈のある入力の組み合わせです。要求を適切に満たす応答を書きなさい。\n\n"
      "### 指示:\n前提と仮説の関係をentailment、contradiction、neutralの中から回答してください。\n\n"
      "### 入力:\n前提：男性がギターを弾いている。\n仮説：男性が楽器を演奏している。\n\n"
      "### 応答:\nentailment\n\n"
      "### 入力:\n前提：犬が走っている。\n仮説：犬が寝ている。\n\n"
      "### 応答:\ncontradiction\n\n"
      "### 入力:\n前提：猫が座っている。\n仮説：動物がいる。\n\n"
      "### 応答:\n";
  EXPECT_EQ(build_prompt(prompt_format("v1.3"), d, d.samples[0].input, 2), expected);
}

TEST(EvalPrompt, V13WithoutFewShotsAndWithBracesKeptLiterally) {
  TempDir dir;
  const Dataset d = load(dir, "jnli.json", kJnliLike);
  EXPECT_EQ(build_prompt(prompt_format("v1.3"), d, "入力 {a}", 0),
            "以下は、タスクを説明する指示と、文脈のある入力の組み合わせです。要求を適切に満たす応答を書きなさい。\n\n"
            "### 指示:\n前提と仮説の関係をentailment、contradiction、neutralの中から回答してください。\n\n"
            "### 入力:\n入力 {a}\n\n### 応答:\n");
  const std::string three = build_prompt(prompt_format("v1.3"), d, "q", 3);
  EXPECT_NE(three.find("\n\n### 入力:\nx {y} z\n\n### 応答:\nneutral\n\n### 入力:\nq\n\n### 応答:\n"), std::string::npos);
}

TEST(EvalPrompt, V10LayoutWithFullWidthColonsAndKaito) {
  TempDir dir;
  const Dataset d = load(dir, "jnli.json", kJnliLike);
  const std::string head =
      "以下はタスクを説明する指示と、追加の背景情報を提供する入力の組み合わせです。要求を適切に満たす回答を書いてください。\n"
      "### 指示：\n前提と仮説の関係をentailment、contradiction、neutralの中から回答してください。\n";
  EXPECT_EQ(build_prompt(prompt_format("v1.0"), d, "Q", 2),
            head +
                "\n### 入力：\n前提：男性がギターを弾いている。\n仮説：男性が楽器を演奏している。\n### 回答：\nentailment\n"
                "\n### 入力：\n前提：犬が走っている。\n仮説：犬が寝ている。\n### 回答：\ncontradiction"
                "\n### 入力：\nQ\n### 回答：\n");
  EXPECT_EQ(build_prompt(prompt_format("v1.0"), d, "Q", 0), head + "\n### 入力：\nQ\n### 回答：\n");
}

TEST(EvalPrompt, MarkersAndHeaderAreConfigurable) {
  TempDir dir;
  const Dataset d = load(dir, "jnli.json", kJnliLike);
  PromptFormat f = prompt_format("v1.3");
  f.header = "H";
  f.instruction_marker = "### 指示";
  f.input_marker = "### 入力：";
  f.response_marker = "### 回答：";
  EXPECT_EQ(build_prompt(f, d, "Q", 1),
            "H\n\n### 指示\n前提と仮説の関係をentailment、contradiction、neutralの中から回答してください。\n\n"
            "### 入力：\n前提：男性がギターを弾いている。\n仮説：男性が楽器を演奏している。\n\n### 回答：\nentailment\n\n"
            "### 入力：\nQ\n\n### 回答：\n");
  EXPECT_THROW(prompt_format("v9"), Error);
}

TEST(EvalPrompt, TooFewFewShotsIsAnErrorNamingTheFile) {
  TempDir dir;
  const Dataset d = load(dir, "jnli.json", kJnliLike);
  try {
    build_prompt(prompt_format("v1.3"), d, "q", 4);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("jnli.json: 4 few-shot examples asked for, the dataset has 3"), std::string::npos)
        << e.what();
  }
}

TEST(EvalDatasetErrors, NameTheFileAndTheItem) {
  TempDir dir;
  auto has = [](const std::string& msg, const std::string& part) {
    return msg.find(part) != std::string::npos ? ::testing::AssertionSuccess()
                                               : ::testing::AssertionFailure() << "'" << msg << "' lacks '" << part << "'";
  };
  const std::string base_head = R"("instruction": "i", "output_length": 3, )";
  std::string e = error_of(dir, "a.json", R"({"output_length": 3, "metrics": ["exact_match"], "samples": [{"input": "x", "output": "y"}]})");
  EXPECT_TRUE(has(e, "a.json: top level: missing field \"instruction\""));
  e = error_of(dir, "b.json", "{" + base_head + R"("metrics": ["exact_match"], "samples": [{"input": "x", "output": "y"}, {"input": "x"}]})");
  EXPECT_TRUE(has(e, "b.json: samples[1]: missing field \"output\""));
  e = error_of(dir, "c.json", "{" + base_head + R"("metrics": ["exact_match", "rouge9"], "samples": [{"input": "x", "output": "y"}]})");
  EXPECT_TRUE(has(e, "c.json: metrics[1]: unknown metric 'rouge9'"));
  e = error_of(dir, "d.json", "{" + base_head + R"("metrics": ["char_f1"], "samples": []})");
  EXPECT_TRUE(has(e, "d.json: samples: the list is empty"));
  e = error_of(dir, "e.json", "{" + base_head + R"("metrics": ["char_f1"], "few_shots": [{"input": 1, "output": "y"}], "samples": [{"input": "x", "output": "y"}]})");
  EXPECT_TRUE(has(e, "e.json: few_shots[0].input: expected a string, found number"));
  e = error_of(dir, "f.json", R"({"instruction": "i", "output_length": "3", "metrics": ["char_f1"], "samples": [{"input": "x", "output": "y"}]})");
  EXPECT_TRUE(has(e, "f.json: output_length: expected an integer, found string"));
  e = error_of(dir, "g.json", "{" + base_head + R"("metrics": ["acc"], "samples": [{"input": "x", "output": "y"}]})");
  EXPECT_TRUE(has(e, "g.json: samples[0]: metric acc/acc_norm needs \"choices\""));
  e = error_of(dir, "h.json", "{" + base_head + R"("metrics": ["acc"], "samples": [{"input": "x", "output": "y", "choices": ["a", "b"]}]})");
  EXPECT_TRUE(has(e, "h.json: samples[0]: output 'y' is not one of its choices"));
  e = error_of(dir, "i.json", "{\"instruction\": ");
  EXPECT_TRUE(has(e, "i.json: not valid JSON"));
  e = error_of(dir, "j.json", "[1, 2]");
  EXPECT_TRUE(has(e, "j.json: expected a JSON object"));
  e = error_of(dir, "k.json", "{" + base_head + R"("metrics": [], "samples": [{"input": "x", "output": "y"}]})");
  EXPECT_TRUE(has(e, "k.json: metrics: the list is empty"));

  write_bytes(dir.file("t.jsonl"), "{\"text\": \"ok\"}\n{\"txt\": \"no\"}\n");
  try {
    read_text_jsonl(dir.file("t.jsonl"));
    FAIL() << "no error";
  } catch (const Error& ex) {
    EXPECT_TRUE(has(ex.what(), "t.jsonl:2: missing field \"text\""));
  }
}

TEST(EvalCategories, JasterGroupsAndAverage) {
  EXPECT_EQ(jaster_category("jnli_exact_match"), "NLI");
  EXPECT_EQ(jaster_category("niilc_char_f1"), "QA");
  EXPECT_EQ(jaster_category("jsquad_char_f1"), "RC");
  EXPECT_EQ(jaster_category("chabsa_set_f1"), "EL");
  EXPECT_EQ(jaster_category("jnli_char_f1"), "");
  auto c = category_scores({{"jnli_exact_match", 0.5}, {"janli_exact_match", 0.7}, {"jsquad_char_f1", 0.9},
                            {"man_name_ja_exact_match", 0.1}, {"jsts_pearson", 0.3}},
                           {{"man_name_ja_exact_match", "MAN"}});
  EXPECT_DOUBLE_EQ(c["NLI"], 0.6);
  EXPECT_DOUBLE_EQ(c["RC"], 0.9);
  EXPECT_DOUBLE_EQ(c["MAN"], 0.1);
  EXPECT_DOUBLE_EQ(c["AVG"], (0.6 + 0.9 + 0.1) / 3);
  EXPECT_EQ(c.count("STS"), 0u);
}
