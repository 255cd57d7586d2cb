#include "corpus/clean.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <cstring>
#include <functional>
#include <map>
#include <set>
#include <mutex>
#include <unordered_map>

#include "corpus/batches.h"
#include "corpus/jsonl.h"
#include "corpus/pipeline.h"
#include "text/utf8.h"
#include "util/error.h"
#include "util/interrupt.h"
#include "util/io.h"
#include "util/log.h"
#include "util/progress.h"
#include "util/thread_pool.h"

namespace fs = std::filesystem;

namespace tsumugi::corpus {

namespace {

struct BatchOut {
  std::string kept, rejects, errors;
  // When the outputs are compressed, workers compress kept/rejects into whole frames so the
  // single writer thread only copies bytes; these hold the uncompressed sizes.
  uint64_t kept_raw = 0, rejects_raw = 0;
  bool framed = false;
  std::vector<FilterStats> stats;
  uint64_t docs = 0, kept_docs = 0, errors_count = 0, chars_in = 0, chars_out = 0, raw_bytes = 0, blank_lines = 0;
  std::map<std::string, uint64_t> error_kinds;
  // For dedup: kept documents in order, their ids, and (key, order) pairs.
  std::vector<uint64_t> orders;
  std::vector<std::string> ids;
  std::vector<std::pair<uint64_t, uint64_t>> keys;
  double dedup_seconds = 0;
};

// Splits output into size-capped shards: PREFIX-00000EXT, PREFIX-00001EXT, ...
class ShardWriter {
 public:
  ShardWriter(std::string dir, std::string prefix, std::string ext, uint64_t cap)
      : dir_(std::move(dir)), prefix_(std::move(prefix)), ext_(std::move(ext)), cap_(cap) {}
  void write(std::string_view lines) {
    if (!cur_) open();
    cur_->write(lines);
    rotate_if_full();
  }
  void write_frames(std::string_view frames, uint64_t uncompressed) {
    if (uncompressed == 0) return;
    if (!cur_) open();
    cur_->write_frames(frames, uncompressed);
    rotate_if_full();
  }
  void rotate_if_full() {
    if (cur_->bytes_written() >= cap_) {
      cur_->commit();
      cur_.reset();
    }
  }
  std::vector<std::string> finish() {
    if (!cur_ && files_.empty()) open();  // one (empty) shard, so consumers always find one
    if (cur_) cur_->commit();
    cur_.reset();
    return files_;
  }

 private:
  void open() {
    std::string name = fmt::format("{}-{:05}{}", prefix_, files_.size(), ext_);
    files_.push_back(name);
    cur_ = std::make_unique<OutputFile>((fs::path(dir_) / name).string());
  }
  std::string dir_, prefix_, ext_;
  uint64_t cap_;
  std::unique_ptr<OutputFile> cur_;
  std::vector<std::string> files_;
};

// Greedy balance of files over ranks by size; every rank computes the same answer.
std::vector<int> assign_files(const std::vector<std::string>& files, int ranks) {
  std::vector<int> owner(files.size(), 0);
  if (ranks == 1) return owner;
  std::vector<size_t> idx(files.size());
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
  std::vector<uint64_t> sizes(files.size());
  for (size_t i = 0; i < files.size(); ++i) sizes[i] = file_size_or_zero(files[i]);
  std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return sizes[a] > sizes[b]; });
  std::vector<uint64_t> load(size_t(ranks), 0);
  for (size_t i : idx) {
    int r = int(std::min_element(load.begin(), load.end()) - load.begin());
    owner[i] = r;
    load[size_t(r)] += sizes[i] + 1;
  }
  return owner;
}

void put_u64(std::string& s, uint64_t v) { s.append(reinterpret_cast<const char*>(&v), 8); }
uint64_t get_u64(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

class Job {
 public:
  Job(const CleanOptions& opt, Communicator& comm)
      : opt_(opt), comm_(comm), pipeline_(opt.profile), keyer_(opt.dedup), parsers_(opt.text_field, opt.id_field),
        stats_(pipeline_.size()) {}

  nlohmann::json run();

 private:
  BatchOut process(const LineBatch& b) const;
  void consume(BatchOut&& out);
  void dedup_phase();
  nlohmann::json local_stats() const;
  std::string rank_suffix() const { return comm_.size() > 1 ? fmt::format("-r{:03}", comm_.rank()) : ""; }

  const CleanOptions& opt_;
  Communicator& comm_;
  Pipeline pipeline_;
  DedupKeyer keyer_;
  std::vector<std::string> files_;
  std::vector<int> owner_;

  mutable ParserPool parsers_;

  std::unique_ptr<ShardWriter> kept_;
  std::unique_ptr<OutputFile> spill_, rejects_, errors_;
  std::vector<FilterStats> stats_;
  uint64_t docs_ = 0, kept_docs_ = 0, error_docs_ = 0, chars_in_ = 0, chars_out_ = 0, raw_bytes_ = 0;
  uint64_t blank_lines_ = 0;
  ReadCounts read_;
  std::map<std::string, uint64_t> error_kinds_;
  std::vector<uint64_t> orders_;
  std::vector<std::string> ids_;
  std::vector<std::pair<uint64_t, uint64_t>> keys_;
  uint64_t duplicates_ = 0, dedup_docs_in_ = 0, dedup_chars_removed_ = 0;
  double dedup_seconds_ = 0, dedup_exchange_seconds_ = 0;
  std::vector<std::string> kept_files_;
  std::unique_ptr<Progress> progress_;
};

BatchOut Job::process(const LineBatch& b) const {
  BatchOut out;
  out.stats.resize(pipeline_.size());
  out.raw_bytes = b.raw_bytes;
  std::string_view file = files_[b.file_index];
  auto parser = parsers_.borrow();

  Document doc;
  doc.file = file;
  std::string error, reason, original;
  for (size_t i = 0; i < b.size(); ++i) {
    std::string_view line = b.line(i);
    uint64_t line_no = b.line_number(i);
    if (is_blank_line(line)) {
      out.blank_lines++;
      continue;
    }
    out.docs++;
    if (!parser->parse(line, doc, error)) {
      out.errors_count++;
      out.error_kinds[error_kind(error)]++;
      append_error_record(out.errors, file, line_no, error, &line);
      continue;
    }
    doc.line = line_no;
    doc.order = make_order(b.file_index, line_no);
    if (doc.id.empty()) doc.id = fmt::format("{}:{}", file, line_no);
    original = doc.text;
    out.chars_in += text::count_codepoints(doc.text);
    int rejected_by = pipeline_.run(doc, reason, out.stats);
    if (rejected_by >= 0) {
      if (opt_.write_rejects) {
        std::string tag = "{\"filter\":";
        append_json_string(tag, pipeline_.filter(size_t(rejected_by)).name());
        tag += ",\"reason\":";
        append_json_string(tag, reason);
        tag += '}';
        doc.text.swap(original);  // rejects hold the document as it came in
        write_document_with(out.rejects, doc, opt_.text_field, "reject", tag);
        out.rejects += '\n';
      }
      continue;
    }
    out.kept_docs++;
    out.chars_out += text::count_codepoints(doc.text);
    write_document(out.kept, doc, opt_.text_field);
    out.kept += '\n';
    if (opt_.dedup.mode != DedupMode::none) {
      auto t0 = std::chrono::steady_clock::now();
      thread_local std::vector<uint64_t> keys;
      keys.clear();
      keyer_.keys(doc.text, keys);
      for (uint64_t k : keys) out.keys.emplace_back(k, doc.order);
      out.orders.push_back(doc.order);
      out.ids.push_back(doc.id);
      out.dedup_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
  }
  Compression kept_comp = opt_.dedup.mode != DedupMode::none ? Compression::zstd : compression_for_path(opt_.output_ext);
  Compression rejects_comp = compression_for_path(opt_.rejects_ext);
  if (kept_comp != Compression::none && rejects_comp != Compression::none) {
    out.framed = true;
    out.kept_raw = out.kept.size();
    out.rejects_raw = out.rejects.size();
    if (!out.kept.empty()) out.kept = compress_frame(kept_comp, out.kept, opt_.dedup.mode != DedupMode::none ? 1 : 3);
    if (!out.rejects.empty()) out.rejects = compress_frame(rejects_comp, out.rejects);
  }
  if (!b.read_error.empty()) {
    out.error_kinds[kBrokenInputKind]++;
    append_error_record(out.errors, file, b.first_line + b.size(), b.read_error, nullptr);
  }
  parsers_.give_back(std::move(parser));
  return out;
}

void Job::consume(BatchOut&& out) {
  if (out.framed) {
    if (opt_.dedup.mode != DedupMode::none) {
      if (out.kept_raw) spill_->write_frames(out.kept, out.kept_raw);
    } else {
      kept_->write_frames(out.kept, out.kept_raw);
    }
    if (rejects_ && out.rejects_raw) rejects_->write_frames(out.rejects, out.rejects_raw);
  } else {
    if (opt_.dedup.mode != DedupMode::none) spill_->write(out.kept);
    else kept_->write(out.kept);
    if (rejects_) rejects_->write(out.rejects);
  }
  errors_->write(out.errors);
  for (size_t i = 0; i < stats_.size(); ++i) stats_[i].merge(out.stats[i]);
  docs_ += out.docs;
  kept_docs_ += out.kept_docs;
  error_docs_ += out.errors_count;
  chars_in_ += out.chars_in;
  chars_out_ += out.chars_out;
  raw_bytes_ += out.raw_bytes;
  blank_lines_ += out.blank_lines;
  for (auto& [k, v] : out.error_kinds) error_kinds_[k] += v;
  orders_.insert(orders_.end(), out.orders.begin(), out.orders.end());
  for (auto& id : out.ids) ids_.push_back(std::move(id));
  keys_.insert(keys_.end(), out.keys.begin(), out.keys.end());
  dedup_seconds_ += out.dedup_seconds;
  progress_->add(out.raw_bytes, out.docs);
}

// Global dedup, identical for 1 or N ranks: a kept document is a duplicate when an earlier
// document (by input order) shares one of its keys; it names the earliest such document.
// Keys are routed to an owner rank (key mod ranks), which finds the first holder of each.
void Job::dedup_phase() {
  auto t0 = std::chrono::steady_clock::now();
  int P = comm_.size();
  auto rank_of_order = [&](uint64_t order) { return owner_[order_file(order)]; };

  // 1. Route (key, order) to owners.
  std::vector<std::string> send(static_cast<size_t>(P));
  for (auto& [k, o] : keys_) {
    auto& s = send[size_t(k % uint64_t(P))];
    put_u64(s, k);
    put_u64(s, o);
  }
  keys_.clear();
  keys_.shrink_to_fit();
  auto recv = comm_.all_to_all(std::move(send));
  std::vector<std::pair<uint64_t, uint64_t>> owned;
  for (auto& r : recv)
    for (size_t p = 0; p + 16 <= r.size(); p += 16) owned.emplace_back(get_u64(r.data() + p), get_u64(r.data() + p + 8));
  recv.clear();
  std::sort(owned.begin(), owned.end());

  // 2. For each key, every later holder is a duplicate of the first.
  send.assign(size_t(P), {});
  for (size_t i = 0; i < owned.size();) {
    size_t j = i + 1;
    while (j < owned.size() && owned[j].first == owned[i].first) ++j;
    for (size_t x = i + 1; x < j; ++x) {
      if (owned[x].second == owned[i].second) continue;
      auto& s = send[size_t(rank_of_order(owned[x].second))];
      put_u64(s, owned[x].second);
      put_u64(s, owned[i].second);
    }
    i = j;
  }
  owned.clear();
  owned.shrink_to_fit();
  recv = comm_.all_to_all(std::move(send));
  std::unordered_map<uint64_t, uint64_t> dup_of;  // this rank's duplicates -> earliest match
  for (auto& r : recv)
    for (size_t p = 0; p + 16 <= r.size(); p += 16) {
      uint64_t o = get_u64(r.data() + p), first = get_u64(r.data() + p + 8);
      auto [it, fresh] = dup_of.emplace(o, first);
      if (!fresh) it->second = std::min(it->second, first);
    }

  // 3. Ask the ranks holding the surviving originals for their ids.
  std::unordered_map<uint64_t, std::string> id_of_order;
  {
    std::vector<std::vector<uint64_t>> want(static_cast<size_t>(P));
    for (auto& [o, first] : dup_of) want[size_t(rank_of_order(first))].push_back(first);
    send.assign(size_t(P), {});
    for (int r = 0; r < P; ++r) {
      auto& w = want[size_t(r)];
      std::sort(w.begin(), w.end());
      w.erase(std::unique(w.begin(), w.end()), w.end());
      for (uint64_t o : w) put_u64(send[size_t(r)], o);
    }
    auto asked = comm_.all_to_all(std::move(send));
    std::vector<std::string> answers(static_cast<size_t>(P));
    for (int r = 0; r < P; ++r) {
      auto& q = asked[size_t(r)];
      for (size_t p = 0; p + 8 <= q.size(); p += 8) {
        uint64_t o = get_u64(q.data() + p);
        auto it = std::lower_bound(orders_.begin(), orders_.end(), o);
        std::string id = (it != orders_.end() && *it == o) ? ids_[size_t(it - orders_.begin())] : std::string();
        put_u64(answers[size_t(r)], o);
        put_u64(answers[size_t(r)], id.size());
        answers[size_t(r)] += id;
      }
    }
    auto got = comm_.all_to_all(std::move(answers));
    for (auto& g : got)
      for (size_t p = 0; p + 16 <= g.size();) {
        uint64_t o = get_u64(g.data() + p), n = get_u64(g.data() + p + 8);
        id_of_order[o] = g.substr(p + 16, n);
        p += 16 + n;
      }
  }
  dedup_exchange_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  // 4. Stream the spilled survivors into kept shards or the rejects.
  spill_->commit();
  std::string spill_path = spill_->path();
  spill_.reset();
  LineReader reader(spill_path);
  std::string_view line;
  size_t i = 0;
  std::string buf, rej;
  dedup_docs_in_ = orders_.size();
  while (reader.next(line)) {
    if (i >= orders_.size()) fail("internal: spill file {} has more lines than recorded", spill_path);
    uint64_t o = orders_[i++];
    auto it = dup_of.find(o);
    if (it == dup_of.end()) {
      buf.append(line);
      buf += '\n';
      if (buf.size() >= (1u << 20)) {
        kept_->write(buf);
        buf.clear();
      }
      continue;
    }
    duplicates_++;
    // The spilled line is the kept JSON object: close it with the reject tag appended.
    if (rejects_) {
      rej.assign(line.substr(0, line.size() - 1));
      std::string tag = fmt::format(",\"reject\":{{\"filter\":\"dedup_{}\",\"reason\":", dedup_mode_name(opt_.dedup.mode));
      append_json_string(tag, opt_.dedup.mode == DedupMode::exact ? "exact duplicate" : "near duplicate");
      tag += ",\"duplicate_of\":";
      append_json_string(tag, id_of_order[it->second]);
      tag += "}}\n";
      rej += tag;
      rejects_->write(rej);
    }
  }
  if (i != orders_.size()) fail("internal: spill file {} is short ({} of {} lines)", spill_path, i, orders_.size());
  kept_->write(buf);
  fs::remove(spill_path);
  kept_docs_ -= duplicates_;
}

nlohmann::json Job::local_stats() const {
  nlohmann::json j;
  j["files"] = {{"total", files_.size()},
                {"empty", read_.files_empty},
                {"missing_final_newline", read_.files_missing_final_newline},
                {"truncated_or_corrupt", read_.files_truncated}};
  j["input_bytes"] = read_.input_bytes;  // on disk (compressed where the input is)
  j["input_bytes_uncompressed"] = read_.jsonl_bytes;
  j["lines"] = read_.lines;
  j["blank_lines"] = blank_lines_;
  j["documents"] = {{"read", docs_}, {"errors", error_docs_}, {"kept", kept_docs_}};
  j["chars"] = {{"in", chars_in_}, {"out", chars_out_}};
  j["error_kinds"] = error_kinds_;
  nlohmann::json fl = nlohmann::json::array();
  for (size_t i = 0; i < stats_.size(); ++i) {
    auto& s = stats_[i];
    fl.push_back({{"name", pipeline_.filter(i).name()},
                  {"type", pipeline_.filter_type(i)},
                  {"docs_in", s.docs_in},
                  {"docs_out", s.docs_out},
                  {"rejected", s.docs_in - s.docs_out},
                  {"chars_in", s.chars_in},
                  {"chars_out", s.chars_out},
                  {"seconds", s.seconds}});
  }
  j["filters"] = fl;
  j["dedup"] = {{"mode", dedup_mode_name(opt_.dedup.mode)},
                {"docs_in", dedup_docs_in_},
                {"duplicates", duplicates_},
                {"seconds_keys", dedup_seconds_},
                {"seconds_exchange", dedup_exchange_seconds_}};
  j["outputs"] = {{"kept", kept_files_}};
  return j;
}

// Sums rank stats: counters add, per-filter rows add by position, file lists concatenate.
nlohmann::json merge_stats(const std::vector<nlohmann::json>& all) {
  std::function<void(nlohmann::json&, const nlohmann::json&)> add = [&](nlohmann::json& a, const nlohmann::json& b) {
    if (a.is_number() && b.is_number()) {
      if (a.is_number_float() || b.is_number_float()) a = a.get<double>() + b.get<double>();
      else a = a.get<uint64_t>() + b.get<uint64_t>();
    } else if (a.is_object() && b.is_object()) {
      for (auto& [k, v] : b.items()) {
        if (!a.contains(k)) a[k] = v;
        else add(a[k], v);
      }
    } else if (a.is_array() && b.is_array()) {
      if (!a.empty() && a[0].is_string()) {
        for (auto& v : b) a.push_back(v);
      } else {
        for (size_t i = 0; i < a.size() && i < b.size(); ++i) add(a[i], b[i]);
      }
    }
  };
  nlohmann::json m = all[0];
  for (size_t r = 1; r < all.size(); ++r) add(m, all[r]);
  // Totals that are not sums.
  m["files"]["total"] = all[0]["files"]["total"];
  return m;
}

nlohmann::json Job::run() {
  auto t_start = std::chrono::steady_clock::now();
  files_ = expand_inputs(opt_.inputs.empty() ? std::vector<std::string>{"-"} : opt_.inputs);
  if (files_.size() >= (1u << 23)) fail("too many input files ({})", files_.size());
  owner_ = assign_files(files_, comm_.size());
  if (comm_.size() > 1 && std::count(files_.begin(), files_.end(), "-"))
    fail("stdin input cannot be split across MPI ranks; give file names");
  // Fail fast, before any work, if some input cannot be opened.
  for (size_t i = 0; i < files_.size(); ++i)
    if (owner_[i] == comm_.rank() && files_[i] != "-") open_source(files_[i]);

  std::error_code ec;
  fs::create_directories(opt_.outdir, ec);
  if (ec) fail("cannot create output directory '{}': {}", opt_.outdir, ec.message());

  std::string sfx = rank_suffix();
  kept_ = std::make_unique<ShardWriter>(opt_.outdir, "kept" + sfx, opt_.output_ext, opt_.shard_bytes);
  if (opt_.write_rejects)
    rejects_ = std::make_unique<OutputFile>((fs::path(opt_.outdir) / ("rejects" + sfx + opt_.rejects_ext)).string());
  errors_ = std::make_unique<OutputFile>((fs::path(opt_.outdir) / ("errors" + sfx + ".jsonl")).string());
  if (opt_.dedup.mode != DedupMode::none)
    spill_ = std::make_unique<OutputFile>((fs::path(opt_.outdir) / (".spill" + sfx + ".jsonl.zst")).string(), 1);

  uint64_t total_bytes = 0;
  for (size_t i = 0; i < files_.size(); ++i)
    if (owner_[i] == comm_.rank()) total_bytes += file_size_or_zero(files_[i]);
  bool show = opt_.progress < 0 ? Progress::stderr_is_tty() : opt_.progress > 0;
  progress_ = std::make_unique<Progress>(
      comm_.size() > 1 ? fmt::format("clean[rank {}]", comm_.rank()) : std::string("clean"), total_bytes,
      show && comm_.rank() == 0);

  ThreadPool pool(opt_.threads);
  {
    OrderedResults<BatchOut> work(pool, [this](BatchOut&& out) { consume(std::move(out)); });
    read_line_batches(
        files_, [&](size_t fi) { return owner_[fi] == comm_.rank(); }, opt_.batch_bytes,
        [&](LineBatch&& b) {
          throw_if_interrupted();
          work.submit([this, b = std::move(b)] { return process(b); });
        },
        read_);
    work.finish();
  }
  throw_if_interrupted();
  progress_->finish();

  if (opt_.dedup.mode != DedupMode::none) dedup_phase();
  kept_files_ = kept_->finish();
  if (rejects_) rejects_->commit();
  errors_->commit();

  // Merge stats on every rank (cheap) so each can return them; rank 0 writes the file.
  auto mine = local_stats();
  std::vector<nlohmann::json> all;
  for (auto& s : comm_.all_gather(mine.dump())) all.push_back(nlohmann::json::parse(s));
  nlohmann::json stats = merge_stats(all);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  uint64_t in_bytes = stats["input_bytes_uncompressed"].get<uint64_t>();
  stats["profile"] = opt_.profile.name;
  stats["text_field"] = opt_.text_field;
  stats["ranks"] = comm_.size();
  stats["threads_per_rank"] = pool.size();
  stats["seconds"] = secs;
  // Throughput over uncompressed JSONL bytes, so it compares across input formats.
  stats["mb_per_s"] = secs > 0 ? double(in_bytes) / 1e6 / secs : 0.0;
  stats["dedup"]["ngram"] = opt_.dedup.ngram;
  stats["dedup"]["bands"] = opt_.dedup.bands;
  stats["dedup"]["rows"] = opt_.dedup.rows;
  stats["outputs"]["rejects"] = opt_.write_rejects ? "rejects*" + opt_.rejects_ext : "";
  stats["outputs"]["errors"] = "errors*.jsonl";
  if (comm_.rank() == 0) {
    // Old shards from an earlier run into the same directory would mix with these.
    std::set<std::string> produced;
    for (auto& f : stats["outputs"]["kept"]) produced.insert(f.get<std::string>());
    for (auto& entry : fs::directory_iterator(opt_.outdir)) {
      std::string name = entry.path().filename().string();
      if (name.rfind("kept-", 0) == 0 && name.find(".jsonl") != std::string::npos && !produced.count(name)) {
        log::info("removing stale shard {} from an earlier run", name);
        fs::remove(entry.path());
      }
    }
    write_file_atomic((fs::path(opt_.outdir) / "stats.json").string(), stats.dump(2) + "\n");
  }
  comm_.barrier();
  return stats;
}

}  // namespace

nlohmann::json run_clean(const CleanOptions& opt, Communicator& comm) {
  Job job(opt, comm);
  return job.run();
}

std::string format_stats_table(const nlohmann::json& s) {
  std::string out;
  auto docs_read = s["documents"]["read"].get<uint64_t>();
  out += fmt::format("{:<24} {:>10} {:>10} {:>9} {:>14} {:>14} {:>9}\n", "stage", "docs in", "docs out", "rejected",
                     "chars in", "chars out", "seconds");
  out += fmt::format("{:<24} {:>10} {:>10} {:>9} {:>14} {:>14} {:>9}\n", "parse (bad records)", docs_read,
                     docs_read - s["documents"]["errors"].get<uint64_t>(), s["documents"]["errors"].get<uint64_t>(),
                     "", s["chars"]["in"].get<uint64_t>(), "");
  for (auto& f : s["filters"]) {
    out += fmt::format("{:<24} {:>10} {:>10} {:>9} {:>14} {:>14} {:>9.3f}\n", f["name"].get<std::string>(),
                       f["docs_in"].get<uint64_t>(), f["docs_out"].get<uint64_t>(), f["rejected"].get<uint64_t>(),
                       f["chars_in"].get<uint64_t>(), f["chars_out"].get<uint64_t>(), f["seconds"].get<double>());
  }
  auto& d = s["dedup"];
  if (d["mode"] != "none") {
    uint64_t in = d["docs_in"].get<uint64_t>(), dup = d["duplicates"].get<uint64_t>();
    out += fmt::format("{:<24} {:>10} {:>10} {:>9} {:>14} {:>14} {:>9.3f}\n",
                       "dedup_" + d["mode"].get<std::string>(), in, in - dup, dup, "", "",
                       d["seconds_keys"].get<double>() + d["seconds_exchange"].get<double>());
  }
  out += fmt::format("kept {} of {} documents; {} characters in, {} out; {:.1f} MB/s over {:.2f} s ({} rank(s))\n",
                     s["documents"]["kept"].get<uint64_t>(), docs_read, s["chars"]["in"].get<uint64_t>(),
                     s["chars"]["out"].get<uint64_t>(), s["mb_per_s"].get<double>(), s["seconds"].get<double>(),
                     s["ranks"].get<int>());
  return out;
}

}  // namespace tsumugi::corpus
