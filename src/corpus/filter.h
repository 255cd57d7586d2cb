#pragma once
// A filter is one small rule with its parameters: it either keeps a document (possibly
// rewriting its text, e.g. dropping lines) or rejects it with a reason. Filters are
// immutable after construction and called from many threads at once.
#include <nlohmann/json.hpp>

#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "corpus/document.h"

namespace tsumugi::corpus {

class Filter {
 public:
  explicit Filter(std::string name) : name_(std::move(name)) {}
  virtual ~Filter() = default;
  const std::string& name() const { return name_; }
  // Returns true to keep the document. On false, `reason` says why (e.g. "hiragana ratio 0.05 < 0.2").
  virtual bool apply(Document& doc, std::string& reason) const = 0;

 private:
  std::string name_;
};

// Filter parameters from a profile entry, with defaults supplied by the filter and a
// check that no unknown (misspelled) parameter was given.
class Params {
 public:
  Params(std::string filter_type, nlohmann::json j);
  double number(const std::string& key, double def);
  int64_t integer(const std::string& key, int64_t def);
  bool boolean(const std::string& key, bool def);
  std::string string(const std::string& key, const std::string& def);
  std::vector<std::string> strings(const std::string& key, const std::vector<std::string>& def);
  bool has(const std::string& key) const;
  // Throws if the entry had keys no getter asked for.
  void check_all_used() const;
  const std::string& type() const { return type_; }

 private:
  const nlohmann::json* get(const std::string& key);
  std::string type_;
  nlohmann::json j_;
  std::set<std::string> used_;
};

struct FilterSpec {
  std::string type;
  std::string summary;  // one line for `tsumugi corpus filters`
  std::function<std::unique_ptr<Filter>(const std::string& name, Params& p)> make;
};

// Every filter type the project knows, in a stable order.
const std::vector<FilterSpec>& filter_specs();
// Builds a filter from a profile entry {"type": ..., "name"?: ..., params...}.
std::unique_ptr<Filter> make_filter(const nlohmann::json& entry);

}  // namespace tsumugi::corpus
