#include "data/tokenize_job.h"

#include <fmt/format.h>

#include <chrono>
#include <filesystem>
#include <memory>

#include "corpus/document.h"
#include "corpus/batches.h"
#include "corpus/jsonl.h"
#include "text/utf8.h"
#include "util/error.h"
#include "util/interrupt.h"
#include "util/io.h"
#include "util/log.h"
#include "util/progress.h"
#include "util/thread_pool.h"

namespace fs = std::filesystem;

namespace tsumugi::data {

namespace {

struct BatchOut {
  std::string tokens;            // sequences in the output dtype, back to back
  std::vector<int32_t> lengths;  // one per written document
  std::string errors;            // PREFIX.errors.jsonl records
  uint64_t records = 0, blank_lines = 0, bad = 0, empty = 0, token_count = 0, eod = 0, text_bytes = 0, raw_bytes = 0;
  std::map<std::string, uint64_t> error_kinds;
};

bool ends_with(std::string_view s, std::string_view suf) {
  return s.size() >= suf.size() && s.substr(s.size() - suf.size()) == suf;
}

class Job {
 public:
  // The id field is not used; an empty name makes the parser skip it.
  Job(const TokenizeOptions& opt, const EncodeFn& encode) : opt_(opt), encode_(encode), parsers_(opt.text_field, "") {}
  TokenizeStats run();

 private:
  BatchOut process(const corpus::LineBatch& b) const;
  void consume(BatchOut&& out);

  const TokenizeOptions& opt_;
  const EncodeFn& encode_;
  DType dtype_ = DType::uint16;
  std::vector<std::string> files_;
  mutable corpus::ParserPool parsers_;
  std::unique_ptr<IndexedDatasetWriter> writer_;
  std::unique_ptr<OutputFile> errors_;
  std::unique_ptr<Progress> progress_;
  TokenizeStats st_;
};

BatchOut Job::process(const corpus::LineBatch& b) const {
  BatchOut out;
  out.raw_bytes = b.raw_bytes;
  std::string_view file = files_[b.file_index];
  auto parser = parsers_.borrow();

  corpus::Document doc;
  std::string error;
  thread_local std::vector<int32_t> ids;
  for (size_t i = 0; i < b.size(); ++i) {
    std::string_view line = b.line(i);
    uint64_t line_no = b.line_number(i);
    if (corpus::is_blank_line(line)) {
      out.blank_lines++;
      continue;
    }
    out.records++;
    if (!parser->parse(line, doc, error)) {
      out.bad++;
      out.error_kinds[corpus::error_kind(error)]++;
      corpus::append_error_record(out.errors, file, line_no, error, &line);
      continue;
    }
    ids.clear();
    try {
      encode_(doc.text, ids);
    } catch (const std::exception& e) {
      out.bad++;
      out.error_kinds["tokenizer error"]++;
      corpus::append_error_record(out.errors, file, line_no, std::string("tokenizer error: ") + e.what(), &line);
      continue;
    }
    if (ids.empty()) {  // Megatron's preprocess_data writes no sequence (and no EOD) for these
      out.empty++;
      continue;
    }
    if (opt_.eod_id >= 0) {
      ids.push_back(opt_.eod_id);
      out.eod++;
    }
    if (ids.size() > size_t(INT32_MAX))
      throw InputError(std::string(file), line_no, fmt::format("document of {} tokens exceeds the format's int32 length", ids.size()));
    for (int32_t t : ids)
      if (t < 0 || t >= opt_.vocab_size)
        throw InputError(std::string(file), line_no,
                         fmt::format("tokenizer produced id {} outside its vocabulary (size {})", t, opt_.vocab_size));
    IndexedDatasetWriter::encode_tokens(dtype_, ids, out.tokens);
    out.lengths.push_back(int32_t(ids.size()));
    out.token_count += ids.size();
    out.text_bytes += doc.text.size();
  }
  if (!b.read_error.empty()) {
    out.error_kinds[corpus::kBrokenInputKind]++;
    corpus::append_error_record(out.errors, file, b.first_line + b.size(), b.read_error, nullptr);
  }
  parsers_.give_back(std::move(parser));
  return out;
}

void Job::consume(BatchOut&& out) {
  writer_->add_encoded_documents(out.tokens, out.lengths);
  errors_->write(out.errors);
  st_.records += out.records;
  st_.blank_lines += out.blank_lines;
  st_.bad_records += out.bad;
  st_.empty_documents += out.empty;
  st_.documents += out.lengths.size();
  st_.tokens += out.token_count;
  st_.eod_tokens += out.eod;
  st_.text_bytes += out.text_bytes;
  for (auto& [k, v] : out.error_kinds) st_.error_kinds[k] += v;
  progress_->add(out.raw_bytes, out.records);
}

TokenizeStats Job::run() {
  auto t_start = std::chrono::steady_clock::now();
  if (opt_.vocab_size <= 0) fail("tokenize: vocabulary size must be positive (got {})", opt_.vocab_size);
  if (opt_.eod_id >= opt_.vocab_size) fail("tokenize: EOD id {} is outside the vocabulary (size {})", opt_.eod_id, opt_.vocab_size);
  std::string prefix = opt_.prefix;
  if (prefix.empty()) fail("tokenize: an output prefix is required (-o PREFIX)");
  if (ends_with(prefix, ".bin") || ends_with(prefix, ".idx")) {
    prefix.resize(prefix.size() - 4);
    log::info("output prefix taken as '{}' (writes {}.bin and {}.idx)", prefix, prefix, prefix);
  }
  files_ = expand_inputs(opt_.inputs.empty() ? std::vector<std::string>{"-"} : opt_.inputs);
  if (files_.size() >= (1u << 23)) fail("too many input files ({})", files_.size());
  // Fail fast, before any work, if some input cannot be opened.
  for (auto& f : files_)
    if (f != "-") open_source(f);

  fs::path parent = fs::path(prefix).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    fs::create_directories(parent, ec);
    if (ec) fail("cannot create output directory '{}': {}", parent.string(), ec.message());
  }

  dtype_ = optimal_dtype(opt_.vocab_size);
  writer_ = std::make_unique<IndexedDatasetWriter>(prefix, dtype_);
  const std::string errors_path = prefix + ".errors.jsonl";
  errors_ = std::make_unique<OutputFile>(errors_path);
  st_.dtype = dtype_;
  st_.files = files_.size();

  uint64_t total_bytes = 0;
  for (auto& f : files_) total_bytes += file_size_or_zero(f);
  bool show = opt_.progress < 0 ? Progress::stderr_is_tty() : opt_.progress > 0;
  progress_ = std::make_unique<Progress>("tokenize", total_bytes, show);

  ThreadPool pool(opt_.threads);
  st_.threads = pool.size();
  {
    OrderedResults<BatchOut> work(pool, [this](BatchOut&& out) { consume(std::move(out)); });
    corpus::ReadCounts counts;
    corpus::read_line_batches(
        files_, [](size_t) { return true; }, opt_.batch_bytes,
        [&](corpus::LineBatch&& b) {
          throw_if_interrupted();
          work.submit([this, b = std::move(b)] { return process(b); });
        },
        counts);
    work.finish();
    st_.input_bytes = counts.input_bytes;
    st_.jsonl_bytes = counts.jsonl_bytes;
    st_.lines = counts.lines;
    st_.files_truncated = counts.files_truncated;
  }
  throw_if_interrupted();
  progress_->finish();

  writer_->finish();
  st_.bin_path = bin_path(prefix);
  st_.idx_path = idx_path(prefix);
  st_.bin_bytes = file_size_or_zero(st_.bin_path);
  st_.idx_bytes = file_size_or_zero(st_.idx_path);
  if (!st_.error_kinds.empty()) {
    errors_->commit();
    st_.errors_path = errors_path;
  } else {
    errors_.reset();  // nothing to report: no file, and none left from an earlier run
    std::error_code ec;
    fs::remove(errors_path, ec);
  }
  st_.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  return st_;
}

}  // namespace

TokenizeStats run_tokenize(const TokenizeOptions& opt, const EncodeFn& encode) {
  Job job(opt, encode);
  return job.run();
}

std::string format_tokenize_summary(const TokenizeStats& s) {
  std::string out;
  double secs = s.seconds > 0 ? s.seconds : 1e-9;
  out += fmt::format("tokenize: {} + {} ({}, {} thread(s), {:.2f} s)\n", s.bin_path, fs::path(s.idx_path).filename().string(),
                     dtype_name(s.dtype), s.threads, s.seconds);
  out += fmt::format("  {:<22} {:>14}   ({} file(s), {} line(s), {} blank)\n", "records read", s.records, s.files, s.lines,
                     s.blank_lines);
  out += fmt::format("  {:<22} {:>14}{}\n", "bad records", s.bad_records,
                     s.errors_path.empty() ? "" : fmt::format("   (see {})", s.errors_path));
  for (auto& [k, v] : s.error_kinds) out += fmt::format("    {:<20} {:>14}\n", k, v);
  if (s.files_truncated) out += fmt::format("  {:<22} {:>14}\n", "inputs broken off", s.files_truncated);
  out += fmt::format("  {:<22} {:>14}   (encoded to no tokens)\n", "empty docs skipped", s.empty_documents);
  out += fmt::format("  {:<22} {:>14}\n", "documents written", s.documents);
  out += fmt::format("  {:<22} {:>14}   ({} EOD, {:.1f} per document)\n", "tokens", s.tokens, s.eod_tokens,
                     s.documents ? double(s.tokens) / double(s.documents) : 0.0);
  out += fmt::format("  {:<22} {:>14}   ({} on disk, {} of text)\n", "bytes in (JSONL)", s.jsonl_bytes,
                     human_bytes(double(s.input_bytes)), human_bytes(double(s.text_bytes)));
  out += fmt::format("  {:<22} {:>14}   (.idx {})\n", "bytes out (.bin)", s.bin_bytes, human_bytes(double(s.idx_bytes)));
  out += fmt::format("  {:<22} {:>14.0f}\n", "tokens/s", double(s.tokens) / secs);
  out += fmt::format("  {:<22} {:>14.1f}   (uncompressed JSONL)\n", "MB/s", double(s.jsonl_bytes) / 1e6 / secs);
  return out;
}

}  // namespace tsumugi::data
