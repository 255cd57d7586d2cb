#pragma once
// Parsing one JSONL line into a Document and writing documents back as JSON.
#include <simdjson.h>

#include <optional>
#include <string>
#include <string_view>

#include "corpus/document.h"

namespace tsumugi::corpus {

// Appends s as a JSON string literal (quotes included). s must be valid UTF-8.
void append_json_string(std::string& out, std::string_view s);

class DocumentParser {
 public:
  DocumentParser(std::string text_field, std::string id_field);
  // Fills doc from a JSON line; on failure returns false and sets error to a reason
  // (malformed JSON, not an object, missing/non-string text field, invalid UTF-8).
  bool parse(std::string_view line, Document& doc, std::string& error);

 private:
  std::string text_field_, id_field_;
  simdjson::dom::parser parser_;
  std::string buf_;
};

// `{...}` with the (possibly rewritten) text in its original position.
void write_document(std::string& out, const Document& doc, std::string_view text_field);
// Same, with one more field appended: `"key": <raw_json>`.
void write_document_with(std::string& out, const Document& doc, std::string_view text_field, std::string_view key,
                         std::string_view raw_json);

}  // namespace tsumugi::corpus
