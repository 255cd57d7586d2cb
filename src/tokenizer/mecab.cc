#include "tokenizer/mecab.h"

#include <dlfcn.h>
#include <mecab.h>

#include <algorithm>
#include <cctype>
#include <mutex>
#include <type_traits>

#include "util/error.h"

namespace tsumugi::tokenizer {

// The libmecab functions used, resolved once per process.
struct MecabSplitter::Api {
  decltype(&mecab_model_new2) model_new2;
  decltype(&mecab_model_destroy) model_destroy;
  decltype(&mecab_model_new_tagger) model_new_tagger;
  decltype(&mecab_model_new_lattice) model_new_lattice;
  decltype(&mecab_model_dictionary_info) model_dictionary_info;
  decltype(&mecab_destroy) destroy;
  decltype(&mecab_strerror) strerror;
  decltype(&mecab_parse_lattice) parse_lattice;
  decltype(&mecab_lattice_destroy) lattice_destroy;
  decltype(&mecab_lattice_set_sentence2) lattice_set_sentence2;
  decltype(&mecab_lattice_get_bos_node) lattice_get_bos_node;
  decltype(&mecab_lattice_strerror) lattice_strerror;
};

namespace {

constexpr const char* kInstall =
    "MeCab pre-splitting needs libmecab and a dictionary: apt-get install mecab mecab-ipadic-utf8";

const MecabSplitter::Api& load_api() {
  static std::once_flag once;
  static MecabSplitter::Api api;
  static std::string error;
  std::call_once(once, [] {
    // Never unloaded: the process may hold taggers until exit.
    void* lib = dlopen("libmecab.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
      const char* why = dlerror();
      error = std::string("cannot load libmecab.so.2 (") + (why ? why : "unknown error") + "). " + kInstall;
      return;
    }
    auto sym = [&](auto& fn, const char* name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(lib, name));
      if (!fn && error.empty()) error = std::string("libmecab.so.2 lacks ") + name + " (MeCab 0.996 or newer needed)";
    };
    sym(api.model_new2, "mecab_model_new2");
    sym(api.model_destroy, "mecab_model_destroy");
    sym(api.model_new_tagger, "mecab_model_new_tagger");
    sym(api.model_new_lattice, "mecab_model_new_lattice");
    sym(api.model_dictionary_info, "mecab_model_dictionary_info");
    sym(api.destroy, "mecab_destroy");
    sym(api.strerror, "mecab_strerror");
    sym(api.parse_lattice, "mecab_parse_lattice");
    sym(api.lattice_destroy, "mecab_lattice_destroy");
    sym(api.lattice_set_sentence2, "mecab_lattice_set_sentence2");
    sym(api.lattice_get_bos_node, "mecab_lattice_get_bos_node");
    sym(api.lattice_strerror, "mecab_lattice_strerror");
  });
  if (!error.empty()) throw Error(error);
  return api;
}

// MeCab keeps node lengths in 16 bits, so longer texts are segmented in windows of at most this
// many bytes, cut at a character boundary (the cut is a word boundary too).
constexpr size_t kWindow = 32768;

}  // namespace

MecabSplitter::MecabSplitter(const std::string& args) : api_(&load_api()), args_(args) {
  model_ = api_->model_new2(args.c_str());
  if (!model_) {
    const char* why = api_->strerror(nullptr);
    fail("MeCab could not start with options '{}': {}. {}", args, why && *why ? why : "unknown error", kInstall);
  }
  const mecab_dictionary_info_t* info = api_->model_dictionary_info(static_cast<mecab_model_t*>(model_));
  if (info && info->charset) {
    std::string cs = info->charset;
    for (auto& c : cs) c = char(std::tolower(uint8_t(c)));
    if (cs != "utf-8" && cs != "utf8") {
      api_->model_destroy(static_cast<mecab_model_t*>(model_));
      fail("the MeCab dictionary {} is encoded in {}, but training text is UTF-8: install mecab-ipadic-utf8 (or "
           "pass a UTF-8 dictionary with -d in --mecab-args)",
           info->filename ? info->filename : "?", info->charset);
    }
  }
}

MecabSplitter::~MecabSplitter() {
  if (model_) api_->model_destroy(static_cast<mecab_model_t*>(model_));
}

std::string MecabSplitter::dictionary() const {
  const mecab_dictionary_info_t* info = api_->model_dictionary_info(static_cast<mecab_model_t*>(model_));
  if (!info) return "?";
  return std::string(info->filename ? info->filename : "?") + " (" + (info->charset ? info->charset : "?") + ")";
}

MecabSplitter::Session::Session(const MecabSplitter& s) : splitter_(s) {
  auto* model = static_cast<mecab_model_t*>(s.model_);
  tagger_ = s.api_->model_new_tagger(model);
  lattice_ = s.api_->model_new_lattice(model);
  if (!tagger_ || !lattice_) {
    if (tagger_) s.api_->destroy(static_cast<mecab_t*>(tagger_));
    if (lattice_) s.api_->lattice_destroy(static_cast<mecab_lattice_t*>(lattice_));
    fail("MeCab could not create a tagger: {}", s.api_->strerror(nullptr));
  }
}

MecabSplitter::Session::~Session() {
  splitter_.api_->lattice_destroy(static_cast<mecab_lattice_t*>(lattice_));
  splitter_.api_->destroy(static_cast<mecab_t*>(tagger_));
}

void MecabSplitter::Session::word_starts(std::string_view text, std::vector<size_t>& starts) {
  const Api& api = *splitter_.api_;
  auto* tagger = static_cast<mecab_t*>(tagger_);
  auto* lattice = static_cast<mecab_lattice_t*>(lattice_);
  starts.clear();
  for (size_t begin = 0; begin < text.size();) {
    size_t end = std::min(text.size(), begin + kWindow);
    while (end < text.size() && end > begin && (uint8_t(text[end]) & 0xC0) == 0x80) --end;
    if (end == begin) end = std::min(text.size(), begin + kWindow);  // not UTF-8: cut anywhere
    if (begin > 0) starts.push_back(begin);
    const char* base = text.data() + begin;
    api.lattice_set_sentence2(lattice, base, end - begin);
    if (!api.parse_lattice(tagger, lattice)) {
      const char* why = api.lattice_strerror(lattice);
      fail("MeCab failed on a line: {}", why && *why ? why : "unknown error");
    }
    bool first = true;
    for (const mecab_node_t* n = api.lattice_get_bos_node(lattice); n; n = n->next) {
      if (n->stat != MECAB_NOR_NODE && n->stat != MECAB_UNK_NODE) continue;
      // rlength - length: the whitespace MeCab skipped before the word, which goes with it.
      const size_t at = size_t(n->surface - base) - size_t(n->rlength - n->length);
      if (!first && at > 0) starts.push_back(begin + at);
      first = false;
    }
    begin = end;
  }
}

}  // namespace tsumugi::tokenizer
