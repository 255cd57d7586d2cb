#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "corpus/jsonl.h"

using namespace tsumugi::corpus;

TEST(Jsonl, CarriesOtherFieldsInOrderAndRewritesText) {
  DocumentParser p("text", "id");
  Document d;
  std::string err;
  ASSERT_TRUE(p.parse(R"({"id": "x1", "meta": {"url": "http://a", "n": [1, 2]}, "text": "元の\n文", "z": null})", d, err))
      << err;
  EXPECT_EQ(d.text, "元の\n文");
  EXPECT_EQ(d.id, "x1");
  d.text = "新しい \"引用\" \\ \t\x01";
  std::string out;
  write_document(out, d, "text");
  auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["text"], "新しい \"引用\" \\ \t\x01");
  EXPECT_EQ(j["meta"]["url"], "http://a");
  EXPECT_EQ(j["meta"]["n"][1], 2);
  EXPECT_TRUE(j["z"].is_null());
  // Field order is preserved: id, meta, text, z.
  EXPECT_LT(out.find("\"id\""), out.find("\"meta\""));
  EXPECT_LT(out.find("\"meta\""), out.find("\"text\""));
  EXPECT_LT(out.find("\"text\""), out.find("\"z\""));
}

TEST(Jsonl, ConfigurableTextFieldAndNumericId) {
  DocumentParser p("content", "doc_id");
  Document d;
  std::string err;
  ASSERT_TRUE(p.parse(R"({"doc_id": 42, "content": "abc", "text": "not me"})", d, err)) << err;
  EXPECT_EQ(d.text, "abc");
  EXPECT_EQ(d.id, "42");
  std::string out;
  write_document_with(out, d, "content", "reject", R"({"filter":"f"})");
  auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["text"], "not me");
  EXPECT_EQ(j["reject"]["filter"], "f");
}

TEST(Jsonl, ReportsEachKindOfBadRecord) {
  DocumentParser p("text", "id");
  Document d;
  std::string err;
  EXPECT_FALSE(p.parse("{\"text\": \"a\"", d, err));
  EXPECT_NE(err.find("malformed JSON"), std::string::npos) << err;
  EXPECT_FALSE(p.parse("[1,2]", d, err));
  EXPECT_EQ(err, "not a JSON object");
  EXPECT_FALSE(p.parse(R"({"other": "a"})", d, err));
  EXPECT_EQ(err, "missing field 'text'");
  EXPECT_FALSE(p.parse(R"({"text": ["a"]})", d, err));
  EXPECT_EQ(err, "field 'text' is not a string");
  EXPECT_FALSE(p.parse("{\"text\": \"\xff\xfe\"}", d, err));
  EXPECT_EQ(err, "invalid UTF-8");
  EXPECT_FALSE(p.parse(R"({"text": "a"} trailing)", d, err));
  // CRLF line endings are accepted.
  EXPECT_TRUE(p.parse("{\"text\": \"a\\r\\nb\"}\r", d, err)) << err;
  EXPECT_EQ(d.text, "a\r\nb");
}

TEST(Jsonl, EscapesControlCharactersAsJson) {
  std::string out;
  append_json_string(out, std::string("a\0b\x1f\"", 5));
  EXPECT_EQ(out, "\"a\\u0000b\\u001f\\\"\"");
}
