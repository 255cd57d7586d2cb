#include "corpus/jsonl.h"

#include <fmt/format.h>

namespace tsumugi::corpus {

void append_json_string(std::string& out, std::string_view s) {
  static const char* hex = "0123456789abcdef";
  out.reserve(out.size() + s.size() + 2);
  out += '"';
  size_t run = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out.append(s.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        out += "\\u00";
        out += hex[c >> 4];
        out += hex[c & 15];
    }
  }
  out.append(s.data() + run, s.size() - run);
  out += '"';
}

DocumentParser::DocumentParser(std::string text_field, std::string id_field)
    : text_field_(std::move(text_field)), id_field_(std::move(id_field)) {}

bool DocumentParser::parse(std::string_view line, Document& doc, std::string& error) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  // simdjson needs SIMDJSON_PADDING readable bytes past the end.
  buf_.assign(line);
  buf_.resize(line.size() + simdjson::SIMDJSON_PADDING);
  simdjson::dom::element root;
  auto err = parser_.parse(buf_.data(), line.size(), false).get(root);
  if (err) {
    error = err == simdjson::UTF8_ERROR ? "invalid UTF-8" : fmt::format("malformed JSON: {}", simdjson::error_message(err));
    return false;
  }
  simdjson::dom::object obj;
  if (root.get_object().get(obj)) {
    error = "not a JSON object";
    return false;
  }
  doc.fields_before.clear();
  doc.fields_after.clear();
  doc.id.clear();
  bool have_text = false;
  for (auto field : obj) {
    if (field.key == text_field_) {
      std::string_view t;
      if (field.value.get_string().get(t)) {
        error = fmt::format("field '{}' is not a string", text_field_);
        return false;
      }
      doc.text.assign(t);
      have_text = true;
      continue;
    }
    std::string& dst = have_text ? doc.fields_after : doc.fields_before;
    if (have_text) dst += ',';
    append_json_string(dst, field.key);
    dst += ':';
    dst += simdjson::minify(field.value);
    if (!have_text) dst += ',';
    if (field.key == id_field_) {
      std::string_view s;
      if (!field.value.get_string().get(s)) doc.id.assign(s);
      else doc.id = simdjson::minify(field.value);
    }
  }
  if (!have_text) {
    error = fmt::format("missing field '{}'", text_field_);
    return false;
  }
  return true;
}

void write_document(std::string& out, const Document& doc, std::string_view text_field) {
  out += '{';
  out += doc.fields_before;
  append_json_string(out, text_field);
  out += ':';
  append_json_string(out, doc.text);
  out += doc.fields_after;
  out += '}';
}

void write_document_with(std::string& out, const Document& doc, std::string_view text_field, std::string_view key,
                         std::string_view raw_json) {
  write_document(out, doc, text_field);
  out.pop_back();
  out += ',';
  append_json_string(out, key);
  out += ':';
  out += raw_json;
  out += '}';
}

}  // namespace tsumugi::corpus
