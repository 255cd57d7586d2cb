#pragma once
// SentencePiece as the oracle for the tokenizer tests: trains models with Debian's spm_train
// (package `sentencepiece`, 0.1.97) and records what spm_encode / spm_decode print for the
// bundled corpus lines and for generated hard strings.
//
// Training and the spm runs cost seconds per model, and ctest runs every test in its own process
// (several at once), so results are cached in a stable directory keyed by the spm version, the
// training options and the input contents: the first process to need a model trains it under
// an exclusive file lock into a temporary directory and renames it into place; everyone else
// reuses it. $TSUMUGI_SPM_CACHE overrides the location (default: $TMPDIR/tsumugi-spm-oracle-UID).
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "../test_util.h"
#include "util/error.h"
#include "util/io.h"

namespace tsumugi::testing::spm {

namespace fs = std::filesystem;

// Optimized builds compare every corpus line. Unoptimized or sanitizer builds (make test's
// ASan+UBSan pass), which run the tokenizer tens of times slower, compare every 16th corpus
// line and all hard strings: they are there to check memory safety, not agreement.
#if defined(NDEBUG) && !defined(__SANITIZE_ADDRESS__)
inline constexpr size_t kCorpusStride = 1;
#else
inline constexpr size_t kCorpusStride = 16;
#endif

// One training setup. `args` go to spm_train as they are (shell-quoted). `all_corpora` false:
// compared on the Japanese corpus and the hard strings only (the extra model kinds, to keep
// the suite's first, uncached run short).
struct Config {
  std::string name;
  std::vector<std::string> args;
  bool all_corpora = true;
  std::vector<std::string> input_names() const {
    if (all_corpora) return {"ja", "en", "code", "hard"};
    return {"ja", "hard"};
  }
};

// The models the issue asks for: unigram with each normalization rule, byte fallback on and
// off, split_digits, user-defined and control symbols, whitespace options; BPE with nmt_nfkc
// and identity (and byte fallback + user symbols); word and char models for completeness.
inline const std::vector<Config>& configs() {
  static const std::vector<Config> kConfigs = {
      {"unigram_nmt_nfkc", {"--model_type=unigram"}},
      {"unigram_nfkc", {"--model_type=unigram", "--normalization_rule_name=nfkc"}},
      {"unigram_identity", {"--model_type=unigram", "--normalization_rule_name=identity"}},
      {"unigram_nmt_nfkc_cf", {"--model_type=unigram", "--normalization_rule_name=nmt_nfkc_cf"}, false},
      {"unigram_nmt_nfkc_byte_fallback", {"--model_type=unigram", "--byte_fallback=true"}},
      {"unigram_identity_byte_fallback",
       {"--model_type=unigram", "--normalization_rule_name=identity", "--byte_fallback=true"}},
      {"unigram_split_digits", {"--model_type=unigram", "--split_digits=true"}},
      {"unigram_user_control_symbols",
       {"--model_type=unigram", "--user_defined_symbols=<mask>,<sep>,https://,\xe2\x96\x81the,\xe3\x80\x82,12",
        "--control_symbols=<cls>,<eod>"}},
      {"unigram_keep_extra_whitespaces", {"--model_type=unigram", "--remove_extra_whitespaces=false"}},
      {"unigram_no_dummy_prefix", {"--model_type=unigram", "--add_dummy_prefix=false"}},
      {"unigram_whitespace_suffix", {"--model_type=unigram", "--treat_whitespace_as_suffix=true"}},
      {"bpe_nmt_nfkc", {"--model_type=bpe"}},
      {"bpe_identity", {"--model_type=bpe", "--normalization_rule_name=identity"}},
      {"bpe_byte_fallback_user_symbols",
       {"--model_type=bpe", "--byte_fallback=true", "--user_defined_symbols=<mask>,https://,\xe3\x80\x82"}},
      {"word_nmt_nfkc", {"--model_type=word"}, false},
      {"char_nmt_nfkc", {"--model_type=char", "--vocab_size=400"}, false},
  };
  return kConfigs;
}

inline const Config& config(const std::string& name) {
  for (const auto& c : configs())
    if (c.name == name) return c;
  throw Error("no spm test config " + name);
}

inline uint64_t fnv1a(std::string_view s, uint64_t h = 1469598103934665603ull) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

inline std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  return out + "'";
}

// Empty if the SentencePiece tools are installed, else what to install.
inline std::string missing_tools() {
  std::string out;
  for (const char* tool : {"spm_train", "spm_encode", "spm_decode"}) {
    if (run_command(std::string("command -v ") + tool, out) != 0)
      return std::string(tool) +
             " not found: the tokenizer tests compare against SentencePiece; install the Debian package "
             "`sentencepiece` (apt-get install sentencepiece)";
  }
  if (run_command("command -v zstd", out) != 0) return "zstd not found (apt-get install zstd)";
  return {};
}

inline std::string spm_version() {
  static const std::string v = [] {
    std::string out;
    run_command("spm_train --version", out);
    return out;
  }();
  return v;
}

inline fs::path cache_root() {
  if (const char* env = std::getenv("TSUMUGI_SPM_CACHE"); env && *env) return env;
  return fs::temp_directory_path() / ("tsumugi-spm-oracle-" + std::to_string(::getuid()));
}

// Holds an exclusive lock on a file for its lifetime.
class FileLock {
 public:
  explicit FileLock(const fs::path& path) {
    fd_ = ::open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
    if (fd_ < 0) throw Error("cannot open lock " + path.string());
    while (::flock(fd_, LOCK_EX) != 0) {
      if (errno != EINTR) throw Error("cannot lock " + path.string());
    }
  }
  ~FileLock() {
    if (fd_ >= 0) ::close(fd_);
  }
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_ = -1;
};

// Builds `final_dir` with `make(tmp_dir)` once, under a lock; returns immediately if present.
template <typename Make>
void build_once(const fs::path& final_dir, Make&& make) {
  if (fs::exists(final_dir / "done")) return;
  fs::create_directories(final_dir.parent_path());
  FileLock lock(final_dir.string() + ".lock");
  if (fs::exists(final_dir / "done")) return;
  fs::path tmp = final_dir.string() + ".tmp-" + std::to_string(::getpid());
  std::error_code ec;
  fs::remove_all(tmp, ec);
  fs::remove_all(final_dir, ec);
  fs::create_directories(tmp);
  make(tmp);
  write_file_atomic((tmp / "done").string(), "ok\n");
  fs::rename(tmp, final_dir);
}

inline std::string source_dir() { return TSUMUGI_SOURCE_DIR; }

// Hard strings: mixed scripts, emoji (ZWJ sequences, flags, skin tones), combining marks,
// full-/half-width forms, compatibility characters, long digit runs, whitespace runs of every
// kind, control characters and NUL, invalid UTF-8 (stray continuation bytes, truncated
// sequences, overlong forms, surrogates, code points past U+10FFFF, 0xF8..0xFF), the text of
// special pieces, and random mixtures of all of these. Deterministic; no '\n' inside a line.
inline std::vector<std::string> hard_strings() {
  const std::vector<std::string> pool = {
      "abcXYZ", "0123456789", "\xe3\x81\x82\xe3\x81\x84\xe3\x81\x86\xe3\x81\x8c\xe3\x81\x8e",  // あいうがぎ
      "\xe3\x82\xa2\xe3\x82\xa4\xe3\x82\xac\xe3\x83\x91",                                     // アイガパ
      "\xef\xbd\xb1\xef\xbd\xb2\xef\xbd\xb6\xef\xbe\x9e\xef\xbe\x8a\xef\xbe\x9f",             // ｱｲｶﾞﾊﾟ
      "\xe6\xbc\xa2\xe5\xad\x97\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",                         // 漢字日本語
      "\xef\xbc\xa1\xef\xbc\xa2\xef\xbd\x81\xef\xbc\x90\xef\xbc\x91",                         // ＡＢａ０１
      "\xe2\x91\xa0\xe2\x91\xa1\xe3\x8d\xbf\xe3\x8c\x94\xe3\x88\xb1",                         // ①②㍿㌔㈱
      "\xf0\x9f\x98\x80\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd",                                     // 😀👍🏽
      "\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7",             // family ZWJ
      "\xf0\x9f\x87\xaf\xf0\x9f\x87\xb5", "\xe2\x9d\xa4\xef\xb8\x8f",                          // 🇯🇵 ❤️
      "\xc3\xa9", "e\xcc\x81", "A\xcc\x8a", "\xe3\x81\x8b\xe3\x82\x99", "\xef\xbd\xb6\xef\xbe\x9e",  // é e◌́ Å が ｶﾞ
      "\xe3\x80\x80", "\xc2\xa0", "\t", " ", "   ", "\xe2\x80\x83", "\x0b", "\x0c", "\r",
      "\xe2\x84\xa6", "\xef\xac\x81", "\xef\xb7\xba", "\xe2\x85\xab", "\xc2\xbd", "\xe2\x84\xa2",  // Ω ﬁ ﷺ Ⅻ ½ ™
      "\xed\x95\x9c\xea\xb5\xad\xec\x96\xb4", "\xce\x95\xce\xbb\xce\xbb", "\xd1\x80\xd1\x83\xd1\x81",
      "\xd8\xa7\xd9\x84\xd8\xb9", "\xd7\xa2\xd7\x91", "\xe0\xb9\x84\xe0\xb8\x97\xe0\xb8\xa2",
      "\xe0\xa4\xb9\xe0\xa4\xbf\xe0\xa4\xa8\xe0\xa5\x8d",
      "\xe2\x80\x8b", "\xe2\x80\x8d", "\xef\xbb\xbf", std::string(1, '\0'), "\x7f", "\x01\x02\x1f",
      "\xe2\x96\x81", "\xe2\x96\x81\xe2\x96\x81", "<unk>", "<s>", "</s>", "<0x41>", "<mask>", "<sep>", "<cls>",
      "https://", "\xe3\x80\x82", "\xe3\x80\x81", "12", "\xe2\x96\x81the", "the",
      "\xf0\xa0\xae\xb7", "\xf4\x8f\xbf\xbf", "\xee\x80\x80", "\xef\xbf\xbd",  // 𠮷 U+10FFFF PUA U+FFFD
      "~!@#$%^&*()_+", "...", "--", "\\n", "int main(void) {", "    return 0;", "}",
  };
  const std::vector<std::string> bad = {
      "\x80", "\xbf", "\xc3", "\xe3\x81", "\xf0\x9f\x98", "\xff", "\xfe", "\xc0\xaf", "\xc1\xbf",
      "\xed\xa0\x80", "\xed\xbf\xbf", "\xf4\x90\x80\x80", "\xf8\x88\x80\x80\x80", "\xe0\x80\xaf", "\xf0\x80\x80\xaf",
  };
  std::vector<std::string> out(pool.begin(), pool.end());
  for (const auto& b : bad) {
    out.push_back(b);
    out.push_back("a" + b + "b");
    out.push_back("\xe6\x97\xa5" + b + "\xe6\x9c\xac");
    out.push_back(b + b + b);
  }
  out.push_back(std::string(500, '1'));
  std::string digits;
  for (int i = 0; i < 40; ++i) digits += "12345678901234567890";
  out.push_back(digits);
  out.push_back("\xef\xbc\x91\xef\xbc\x92\xef\xbc\x93" + digits + "\xe5\x86\x86");
  out.push_back(std::string(300, ' '));
  std::string mixed_ws;
  for (int i = 0; i < 20; ++i) mixed_ws += "\xe3\x80\x80 \t \xc2\xa0";
  out.push_back(mixed_ws);
  out.push_back("x" + mixed_ws + "y");
  out.push_back(" leading");
  out.push_back("trailing  ");
  out.push_back("   both   ");
  out.push_back("");
  std::string long_line;
  for (int i = 0; i < 2000; ++i) long_line += pool[size_t(i * 7) % pool.size()];
  out.push_back(long_line);
  std::mt19937 rng(20240601);
  for (int i = 0; i < 4000; ++i) {
    const int n = 1 + int(rng() % 40);
    std::string s;
    for (int k = 0; k < n; ++k) {
      if (rng() % 100 < 6)
        s += bad[rng() % bad.size()];
      else
        s += pool[rng() % pool.size()];
    }
    out.push_back(s);
  }
  for (auto& s : out)
    for (auto& c : s)
      if (c == '\n') c = ' ';
  return out;
}

inline std::string join_lines(const std::vector<std::string>& lines) {
  std::string s;
  for (const auto& l : lines) {
    s += l;
    s += '\n';
  }
  return s;
}

// Inputs shared by every model: the bundled corpus lines (`text` of each JSONL record split at
// '\n'), one file per corpus, and the hard strings.
struct Inputs {
  fs::path dir;
  std::vector<std::string> names;  // "ja", "en", "code", "hard": NAME.txt in dir
  std::string key;                 // content hash of all of them
  fs::path file(const std::string& name) const { return dir / (name + ".txt"); }
};

inline const Inputs& inputs() {
  static const Inputs in = [] {
    Inputs r;
    r.names = {"ja", "en", "code", "hard"};
    std::string corpus_key;
    for (const char* c : {"ja", "en", "code"}) {
      std::string bytes = read_file(source_dir() + "/data/corpus/" + c + ".jsonl.gz");
      corpus_key += std::to_string(fnv1a(bytes)) + ",";
    }
    const std::string hard = join_lines(hard_strings());
    r.key = std::to_string(fnv1a(corpus_key + std::to_string(fnv1a(hard))));
    r.dir = cache_root() / ("inputs-" + r.key);
    build_once(r.dir, [&](const fs::path& tmp) {
      for (const char* c : {"ja", "en", "code"}) {
        std::string lines;
        LineReader reader(source_dir() + "/data/corpus/" + c + ".jsonl.gz");
        std::string_view rec;
        while (reader.next(rec)) {
          auto doc = nlohmann::json::parse(rec);
          const std::string text = doc.at("text").get<std::string>();
          size_t pos = 0;
          for (;;) {
            size_t nl = text.find('\n', pos);
            lines.append(text, pos, nl == std::string::npos ? std::string::npos : nl - pos);
            lines += '\n';
            if (nl == std::string::npos) break;
            pos = nl + 1;
          }
        }
        write_file_atomic((tmp / (std::string(c) + ".txt")).string(), lines);
      }
      write_file_atomic((tmp / "hard.txt").string(), hard);
    });
    return r;
  }();
  return in;
}

// Random id sequences (0..30 ids a line) for decode tests; the byte piece for '\n' is left out
// so that decoded lines stay lines.
inline std::string random_id_lines(int vocab_size, int newline_id, int lines) {
  std::mt19937 rng(7);
  std::string out;
  for (int i = 0; i < lines; ++i) {
    const int n = int(rng() % 31);
    for (int k = 0; k < n; ++k) {
      int id = int(rng() % uint32_t(vocab_size));
      if (id == newline_id) id = 0;
      if (k) out += ' ';
      out += std::to_string(id);
    }
    out += '\n';
  }
  return out;
}

// A trained model and spm's outputs, in a cache directory:
//   model.model model.vocab
//   NAME.id.zst NAME.piece.zst          spm_encode --output_format=id|piece < NAME.txt
//   NAME.id.dec.zst                     spm_decode --input_format=id of NAME.id
//   hard.piece.dec.zst                  spm_decode --input_format=piece of hard.piece
//   random.id random.id.dec            random id lines and spm_decode of them
struct Model {
  fs::path dir;
  std::string model() const { return (dir / "model.model").string(); }
  std::string file(const std::string& name) const { return (dir / name).string(); }
};

inline void run_or_throw(const std::string& cmd) {
  std::string out;
  if (run_command(cmd, out) != 0) throw Error("command failed: " + cmd + "\n" + out);
}

inline Model ensure_model(const Config& c) {
  const Inputs& in = inputs();
  // Everything but the paths; the cache key covers it all.
  std::string options = " --vocab_size=4000 --input_sentence_size=20000 --shuffle_input_sentence=true"
                        " --num_threads=2 --minloglevel=2";
  for (const auto& a : c.args) options += " " + shell_quote(a);
  const std::string key = std::to_string(fnv1a("v2|" + spm_version() + "|" + options + "|" + in.key));
  Model m{cache_root() / (c.name + "-" + key)};
  build_once(m.dir, [&](const fs::path& tmp) {
    // Training input: every corpus line (spm_train samples 20k sentences of them).
    const std::string train = (tmp / "train.txt").string();
    {
      std::string all;
      for (const char* n : {"ja", "en", "code"}) all += read_file(in.file(n).string());
      write_file_atomic(train, all);
    }
    const std::string cmd = "spm_train --input=" + shell_quote(train) +
                            " --model_prefix=" + shell_quote((tmp / "model").string()) + options;
    run_or_throw(cmd + " > /dev/null");
    fs::remove(train);
    const std::string model = shell_quote((tmp / "model.model").string());
    for (const auto& name : c.input_names()) {
      const std::string src = shell_quote(in.file(name).string());
      for (const std::string fmt : {"id", "piece"}) {
        const std::string enc = shell_quote((tmp / (name + "." + fmt)).string());
        run_or_throw("spm_encode --model=" + model + " --output_format=" + fmt + " < " + src + " > " + enc);
        // Decoding pieces takes the same path as decoding ids once pieces are looked up, so
        // for the (large) corpora only ids are decoded; hard strings get both.
        std::string dec;
        if (fmt == "id" || name == "hard") {
          dec = shell_quote((tmp / (name + "." + fmt + ".dec")).string());
          run_or_throw("spm_decode --model=" + model + " --input_format=" + fmt + " < " + enc + " > " + dec);
        }
        run_or_throw("zstd -q --rm -3 " + enc + " " + dec);  // ~10x smaller cache
      }
    }
    // Vocabulary size and the '\n' byte piece from the .vocab file spm wrote.
    std::vector<std::string> vocab = read_lines((tmp / "model.vocab").string());
    int newline_id = -1;
    for (size_t i = 0; i < vocab.size(); ++i)
      if (vocab[i].rfind("<0x0A>\t", 0) == 0) newline_id = int(i);
    write_file_atomic((tmp / "random.id").string(), random_id_lines(int(vocab.size()), newline_id, 3000));
    run_or_throw("spm_decode --model=" + model + " --input_format=id < " + shell_quote((tmp / "random.id").string()) +
                 " > " + shell_quote((tmp / "random.id.dec").string()));
  });
  return m;
}

}  // namespace tsumugi::testing::spm
