// Chat templates: the LLM-jp instruction format byte for byte (the SFT data uses the same bytes),
// the plain template, template files and their errors.
#include <gtest/gtest.h>

#include "serve/chat_template.h"
#include "test_util.h"
#include "util/error.h"

using tsumugi::Error;
using tsumugi::serve::ChatMessage;
using tsumugi::serve::ChatTemplate;
using tsumugi::testing::TempDir;
using tsumugi::testing::write_bytes;

namespace {

const std::string kDefaultSystem = "以下は、タスクを説明する指示です。要求を適切に満たす応答を書きなさい。";

TEST(ServeChatTemplate, LlmJpOneTurnWithDefaultSystem) {
  const auto t = ChatTemplate::llm_jp();
  EXPECT_EQ(t.render({{"user", "日本の首都は？"}}), kDefaultSystem + "\n\n### 指示:\n日本の首都は？\n\n### 応答:\n");
}

TEST(ServeChatTemplate, LlmJpTwoTurns) {
  const auto t = ChatTemplate::llm_jp();
  EXPECT_EQ(t.render({{"user", "a"}, {"assistant", "b"}, {"user", "c"}}),
            kDefaultSystem + "\n\n### 指示:\na\n\n### 応答:\nb\n\n### 指示:\nc\n\n### 応答:\n");
}

TEST(ServeChatTemplate, LlmJpThreeTurnsWithSystem) {
  const auto t = ChatTemplate::llm_jp();
  EXPECT_EQ(t.render({{"system", "あなたは親切です。"},
                      {"user", "一"},
                      {"assistant", "二"},
                      {"user", "三"},
                      {"assistant", "四"},
                      {"user", "五\n六"}}),
            "あなたは親切です。\n\n### 指示:\n一\n\n### 応答:\n二\n\n### 指示:\n三\n\n### 応答:\n四\n\n"
            "### 指示:\n五\n六\n\n### 応答:\n");
}

TEST(ServeChatTemplate, LlmJpOneTurnWithSystemAndStops) {
  const auto t = ChatTemplate::llm_jp();
  EXPECT_EQ(t.render({{"system", "S"}, {"user", "U"}}), "S\n\n### 指示:\nU\n\n### 応答:\n");
  EXPECT_EQ(t.stop(), std::vector<std::string>{"\n\n### 指示:"});
  EXPECT_EQ(ChatTemplate::load("llm-jp").render({{"user", "U"}}), t.render({{"user", "U"}}));
}

TEST(ServeChatTemplate, PlainJoinsMessagesWithNewlines) {
  const auto t = ChatTemplate::load("plain");
  EXPECT_EQ(t.render({{"user", "吾輩は猫である。"}}), "吾輩は猫である。");
  EXPECT_EQ(t.render({{"system", "s"}, {"user", "a"}, {"assistant", "b"}, {"user", "c"}}), "s\na\nb\nc");
  EXPECT_TRUE(t.stop().empty());
}

TEST(ServeChatTemplate, RejectsBadConversations) {
  const auto t = ChatTemplate::llm_jp();
  EXPECT_THROW(t.render({}), Error);
  EXPECT_THROW(t.render({{"system", "only a system message"}}), Error);
  try {
    t.render({{"user", "a"}, {"system", "late"}});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("messages[1]"), std::string::npos) << e.what();
  }
  try {
    t.render({{"user", "a"}, {"tool", "x"}});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("messages[1].role"), std::string::npos) << e.what();
  }
}

TEST(ServeChatTemplate, FileTemplate) {
  TempDir dir;
  const std::string path = dir.file("t.json");
  write_bytes(path, R"({"system": "<<SYS>>{content}<</SYS>>\n", "default_system": "be brief",
                         "user": "[INST] {content} [/INST]", "assistant": " {content} {{x}}", "stop": ["[INST]"]})");
  const auto t = ChatTemplate::load(path);
  EXPECT_EQ(t.render({{"user", "hi"}, {"assistant", "yo"}, {"user", "again"}}),
            "<<SYS>>be brief<</SYS>>\n[INST] hi [/INST] yo {x}[INST] again [/INST]");
  EXPECT_EQ(t.stop(), std::vector<std::string>{"[INST]"});
}

TEST(ServeChatTemplate, FileTemplateErrorsNameTheFileAndField) {
  TempDir dir;
  auto error_of = [&](const std::string& text) {
    const std::string path = dir.file("bad.json");
    write_bytes(path, text);
    try {
      ChatTemplate::load(path);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  auto has = [](const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; };
  std::string e = error_of("{\"user\": \"{content\"}");
  EXPECT_TRUE(has(e, "bad.json") && has(e, "'user'")) << e;
  e = error_of("{\"user\": \"{name}\"}");
  EXPECT_TRUE(has(e, "'user'") && has(e, "byte 0")) << e;
  e = error_of("{\"assistant\": \"{content}\"}");
  EXPECT_TRUE(has(e, "'user' is required")) << e;
  e = error_of("{\"user\": \"{content}\", \"roles\": 1}");
  EXPECT_TRUE(has(e, "unknown field 'roles'")) << e;
  e = error_of("{\"user\": \"{content}\", \"stop\": \"x\"}");
  EXPECT_TRUE(has(e, "'stop'") && has(e, "array")) << e;
  e = error_of("{\"user\": ");
  EXPECT_TRUE(has(e, "bad.json") && has(e, "not valid JSON")) << e;
  EXPECT_THROW(ChatTemplate::load("no-such-template"), Error);
}

}  // namespace
