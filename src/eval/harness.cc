#include "eval/harness.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <atomic>
#include <exception>
#include <filesystem>
#include <functional>
#include <mutex>
#include <numeric>
#include <thread>

#include "eval/metrics.h"
#include "eval/report.h"
#include "infer/engine.h"
#include "text/utf8.h"
#include "util/error.h"
#include "util/interrupt.h"
#include "util/io.h"
#include "util/log.h"
#include "util/progress.h"

namespace tsumugi::eval {

namespace fs = std::filesystem;
using nlohmann::json;

// llm-jp-eval v1.3's grouping of jaster scores into categories (post_process_score_results).
// MT (COMET), CG (code execution) and SUM (ROUGE-2) use metrics tsumugi does not compute.
std::string jaster_category(const std::string& key) {
  static const std::map<std::string, std::vector<std::string>> kGroups = {
      {"NLI", {"jamp_exact_match", "janli_exact_match", "jnli_exact_match", "jsem_exact_match", "jsick_exact_match"}},
      {"QA", {"jemhopqa_char_f1", "niilc_char_f1", "aio_char_f1"}},
      {"RC", {"jsquad_char_f1"}},
      {"MC", {"jcommonsenseqa_exact_match", "kuci_exact_match", "jcommonsensemorality_exact_match"}},
      {"EL", {"chabsa_set_f1"}},
      {"FA", {"wiki_reading_char_f1", "wiki_ner_set_f1", "wiki_dependency_set_f1", "wiki_pas_set_f1",
              "wiki_coreference_set_f1"}},
      {"MR", {"mawps_exact_match", "mgsm_exact_match"}},
      {"HE", {"mmlu_en_exact_match", "jmmlu_exact_match"}},
  };
  for (const auto& [cat, keys] : kGroups)
    if (std::find(keys.begin(), keys.end(), key) != keys.end()) return cat;
  return "";
}

std::map<std::string, double> category_scores(const std::map<std::string, double>& scores,
                                              const std::map<std::string, std::string>& extra_categories) {
  std::map<std::string, std::vector<double>> by_cat;
  for (const auto& [key, v] : scores) {
    std::string cat = jaster_category(key);
    if (cat.empty())
      if (auto it = extra_categories.find(key); it != extra_categories.end()) cat = it->second;
    if (!cat.empty()) by_cat[cat].push_back(v);
  }
  std::map<std::string, double> out;
  double sum = 0;
  for (const auto& [cat, vs] : by_cat) {
    out[cat] = std::accumulate(vs.begin(), vs.end(), 0.0) / static_cast<double>(vs.size());
    sum += out[cat];
  }
  if (!out.empty()) out["AVG"] = sum / static_cast<double>(out.size());
  return out;
}

namespace {

// A status line with ETA on a terminal; a log line per dataset otherwise.
class EvalProgress {
 public:
  EvalProgress(std::size_t total, bool enabled) : total_(total), tty_(enabled && Progress::stderr_is_tty()) {}
  ~EvalProgress() {
    if (drawn_) std::fputc('\n', stderr);
  }
  void step(const std::string& label) {
    std::lock_guard<std::mutex> lock(mu_);  // samples finish on several threads
    ++done_;
    if (!tty_) return;
    const auto now = std::chrono::steady_clock::now();
    if (done_ < total_ && now - last_ < std::chrono::milliseconds(200)) return;
    last_ = now;
    const double secs = std::chrono::duration<double>(now - start_).count();
    const double eta = done_ ? secs / done_ * static_cast<double>(total_ - done_) : 0;
    std::fprintf(stderr, "\r\033[Keval %s: %zu/%zu items [%5.1f%%] elapsed %s ETA %s", label.c_str(), done_, total_,
                 100.0 * done_ / std::max<std::size_t>(1, total_), human_duration(secs).c_str(),
                 human_duration(eta).c_str());
    std::fflush(stderr);
    drawn_ = true;
  }

 private:
  std::mutex mu_;
  std::size_t total_, done_ = 0;
  bool tty_, drawn_ = false;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now(), last_{};
};

std::vector<int32_t> encode_doc(const infer::Engine& engine, const std::string& text) {
  std::vector<int32_t> ids;
  if (engine.eos_id() >= 0) ids.push_back(engine.eos_id());
  engine.tokenizer().encode(text, ids);
  return ids;
}

// Runs fn(i) for every i in [0, n) on up to `workers` threads. Samples are independent, and
// concurrent sequences share the engine's decoding steps (bit-exactly), so results do not depend
// on the number of workers. Indices are taken in order and a failure stops the taking, so every
// index below a failed one has run: the lowest failure, rethrown, is the one a single worker
// would have stopped at.
void parallel_for(std::size_t n, int workers, const std::function<void(std::size_t)>& fn) {
  std::atomic<std::size_t> next{0};
  std::atomic<bool> stop{false};
  std::vector<std::exception_ptr> errors(n);
  auto work = [&] {
    while (!stop.load()) {
      const std::size_t i = next.fetch_add(1);
      if (i >= n) return;
      try {
        if (interrupted()) fail("interrupted");
        fn(i);
      } catch (...) {
        errors[i] = std::current_exception();
        stop.store(true);
      }
    }
  };
  std::vector<std::thread> pool;
  try {
    for (std::size_t w = 1; w < std::min<std::size_t>(static_cast<std::size_t>(std::max(1, workers)), n); ++w)
      pool.emplace_back(work);
  } catch (...) {  // no more threads: the ones started (and this one) do the work
  }
  work();
  for (auto& t : pool) t.join();
  for (const auto& e : errors)
    if (e) std::rethrow_exception(e);
}

// Keeps the last `keep` ids of a too-long prompt.
bool fit(std::vector<int32_t>& ids, std::size_t keep) {
  if (ids.size() <= keep) return false;
  ids.erase(ids.begin(), ids.end() - static_cast<std::ptrdiff_t>(keep));
  return true;
}

double mean(const std::vector<double>& v) {
  return v.empty() ? 0.0 : std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
}

bool is_generation_metric(const std::string& m) {
  return std::any_of(std::begin(kGenerationMetrics), std::end(kGenerationMetrics), [&](const char* k) { return m == k; });
}

}  // namespace

namespace {

void check_pair(const infer::Engine& engine, const std::vector<int32_t>& context, const std::vector<int32_t>& continuation) {
  if (context.empty() || continuation.empty()) fail("continuation_logprob: empty context or continuation");
  if (context.size() + continuation.size() > static_cast<std::size_t>(engine.context_length()))
    fail("{} + {} tokens do not fit the model's context ({})", context.size(), continuation.size(), engine.context_length());
}

// The continuation's log-probability given `dec` holding the context and `logits` the logits
// after it; the continuation goes in token by token.
double score_continuation(infer::Decoder& dec, std::vector<float>& logits, int limit,
                          const std::vector<int32_t>& continuation) {
  double total = 0;
  for (std::size_t i = 0; i < continuation.size(); ++i) {
    double mx = -INFINITY, sum = 0;
    for (int v = 0; v < limit; ++v) mx = std::max<double>(mx, logits[v]);
    for (int v = 0; v < limit; ++v) sum += std::exp(logits[v] - mx);
    total += logits[continuation[i]] - mx - std::log(sum);
    if (i + 1 < continuation.size()) dec.append(&continuation[i], 1, logits.data());
  }
  return total;
}

// A multiple-choice sample's context, processed once and forked for each choice scored after it
// (the choices of a sample share it unless truncation cut them differently): the same numbers as
// continuation_logprob, one prompt pass per sample instead of one per choice.
struct SharedContext {
  std::vector<int32_t> ids;
  std::unique_ptr<infer::Decoder> dec;
  std::vector<float> logits;

  double logprob(infer::Engine& engine, const std::vector<int32_t>& context, const std::vector<int32_t>& continuation) {
    check_pair(engine, context, continuation);
    if (!dec || ids != context) {
      dec = engine.new_decoder();
      logits.assign(static_cast<std::size_t>(engine.config().vocab_size), 0.0f);
      dec->append(context.data(), static_cast<int>(context.size()), logits.data());
      ids = context;
    }
    std::unique_ptr<infer::Decoder> copy = dec->fork();
    if (!copy) return continuation_logprob(engine, context, continuation);
    std::vector<float> lg = logits;
    return score_continuation(*copy, lg, engine.vocab_limit(), continuation);
  }
};

}  // namespace

double continuation_logprob(infer::Engine& engine, const std::vector<int32_t>& context,
                            const std::vector<int32_t>& continuation) {
  check_pair(engine, context, continuation);
  // The context goes in as one piece (one forward pass), then the continuation token by token:
  // the same log-probabilities as token_logprobs over the whole sequence, far fewer passes.
  auto dec = engine.new_decoder();
  std::vector<float> logits(static_cast<std::size_t>(engine.config().vocab_size));
  dec->append(context.data(), static_cast<int>(context.size()), logits.data());
  return score_continuation(*dec, logits, engine.vocab_limit(), continuation);
}

void encode_pair(const infer::Engine& engine, const std::string& context, const std::string& continuation,
                 std::vector<int32_t>& context_ids, std::vector<int32_t>& continuation_ids) {
  // Trailing whitespace of the context belongs to the continuation (lm-evaluation-harness).
  std::size_t n = context.size();
  while (n > 0 && (context[n - 1] == ' ' || context[n - 1] == '\n' || context[n - 1] == '\t' ||
                   context[n - 1] == '\r' || context[n - 1] == '\f' || context[n - 1] == '\v'))
    --n;
  const std::string ctx = context.substr(0, n);
  const std::string cont = context.substr(n) + continuation;
  context_ids = encode_doc(engine, ctx);
  std::vector<int32_t> whole = encode_doc(engine, ctx + cont);
  continuation_ids.assign(whole.begin() + static_cast<std::ptrdiff_t>(std::min(context_ids.size(), whole.size())),
                          whole.end());
}

json run_eval(infer::Engine& engine, const EvalOptions& opt) {
  if (opt.datasets.empty()) fail("no datasets given");
  if (!engine.has_tokenizer()) fail("{}: the model directory has no tokenizer.model; eval needs one", engine.name());
  // Read everything first so that a bad file fails before any time is spent.
  std::vector<Dataset> sets;
  std::vector<std::pair<std::string, std::vector<TextDoc>>> texts;
  std::vector<std::string> order;  // file kinds in command-line order: "d" or "t"
  std::size_t total = 0;
  auto limited = [&](std::size_t n) {
    return opt.max_samples < 0 ? n : std::min<std::size_t>(n, static_cast<std::size_t>(opt.max_samples));
  };
  for (const auto& path : opt.datasets) {
    if (is_text_jsonl(path)) {
      texts.emplace_back(dataset_name(path), read_text_jsonl(path));
      texts.back().second.resize(limited(texts.back().second.size()));
      total += texts.back().second.size();
      order.push_back("t");
    } else {
      sets.push_back(read_dataset(path));
      // A prompt that cannot be built (too few few-shots) is an error now, not after hours.
      build_prompt(opt.format, sets.back(), "", opt.num_few_shots);
      total += limited(sets.back().samples.size());
      order.push_back("d");
    }
  }
  std::map<std::string, int> seen;
  for (const auto& d : sets)
    if (++seen[d.name] > 1) fail("two datasets are named '{}'; scores are keyed by file name", d.name);
  for (const auto& t : texts)
    if (++seen[t.first] > 1) fail("two datasets are named '{}'; scores are keyed by file name", t.first);

  fs::create_directories(opt.out_dir);
  OutputFile rows_out((fs::path(opt.out_dir) / "samples.jsonl").string());
  std::map<std::string, double> scores;
  std::map<std::string, std::string> extra_categories;
  json datasets = json::object(), perplexity = json::object();
  EvalProgress progress(total, opt.progress);
  const int context = engine.context_length();
  const auto t_start = std::chrono::steady_clock::now();
  std::size_t di = 0, ti = 0;

  for (const std::string& kind : order) {
    if (interrupted()) fail("interrupted");
    if (kind == "t") {
      const auto& [name, docs] = texts[ti++];
      double nll = 0, tokens = 0, chars = 0, bytes = 0;
      std::vector<double> doc_nlls(docs.size());
      std::vector<std::size_t> doc_scored(docs.size());
      parallel_for(docs.size(), opt.parallel, [&](std::size_t i) {
        std::vector<int32_t> ids = encode_doc(engine, docs[i].text);
        double doc_nll = 0;
        std::size_t scored = 0;
        // Windows of `context` tokens, each starting at the last token of the previous one.
        for (std::size_t s = 0; s + 1 < ids.size(); s += static_cast<std::size_t>(context) - 1) {
          const std::size_t e = std::min(ids.size(), s + static_cast<std::size_t>(context));
          const std::vector<int32_t> w(ids.begin() + s, ids.begin() + e);
          for (double lp : engine.token_logprobs(w)) doc_nll -= lp;
          scored += w.size() - 1;
        }
        doc_nlls[i] = doc_nll;
        doc_scored[i] = scored;
        progress.step(name);
      });
      for (std::size_t i = 0; i < docs.size(); ++i) {  // in document order, as one worker sums
        const double doc_nll = doc_nlls[i];
        const std::size_t scored = doc_scored[i];
        const double c = static_cast<double>(text::count_codepoints(docs[i].text));
        nll += doc_nll;
        tokens += static_cast<double>(scored);
        chars += c;
        bytes += static_cast<double>(docs[i].text.size());
        json row = {{"dataset", name}, {"index", i}, {"line", docs[i].line}, {"tokens", scored}, {"nll", doc_nll},
                    {"chars", c}, {"bytes", docs[i].text.size()}};
        rows_out.write(row.dump(-1, ' ', false, json::error_handler_t::replace) + "\n");
      }
      const double ln2 = std::log(2.0);
      const double ppl = tokens > 0 ? std::exp(nll / tokens) : 0.0;
      scores[name + "_perplexity"] = ppl;
      scores[name + "_bits_per_char"] = chars > 0 ? nll / ln2 / chars : 0.0;
      scores[name + "_bits_per_byte"] = bytes > 0 ? nll / ln2 / bytes : 0.0;
      perplexity[name] = {{"documents", docs.size()}, {"tokens", tokens}, {"chars", chars}, {"bytes", bytes},
                          {"nll", nll}, {"perplexity", ppl}, {"bits_per_char", scores[name + "_bits_per_char"]},
                          {"bits_per_byte", scores[name + "_bits_per_byte"]}};
      log::info("{}: perplexity {:.4f}, {:.4f} bits/char, {:.4f} bits/byte over {} documents", name, ppl,
                scores[name + "_bits_per_char"], scores[name + "_bits_per_byte"], docs.size());
      continue;
    }

    const Dataset& d = sets[di++];
    const std::size_t n = limited(d.samples.size());
    const bool generate = std::any_of(d.metrics.begin(), d.metrics.end(), is_generation_metric);
    const int budget = std::max(1, std::min(opt.max_tokens > 0 ? opt.max_tokens : d.output_length, context - 1));
    std::map<std::string, std::vector<double>> per_metric;
    std::vector<double> gold_f, pred_f;
    std::size_t truncated = 0;
    // Each sample's row and scores, kept by index and folded in sample order below.
    struct Scored {
      json row;
      std::vector<std::pair<std::string, double>> metric_values;
      bool has_float = false, truncated = false;
      double gold_f = 0, pred_f = 0;
    };
    std::vector<Scored> results(n);
    parallel_for(n, opt.parallel, [&](std::size_t i) {
      Scored& out = results[i];
      const Example& ex = d.samples[i];
      const std::string prompt = build_prompt(opt.format, d, ex.input, opt.num_few_shots);
      const std::string gold = normalize_gold(ex.output);
      json row = {{"dataset", d.name}, {"index", i}, {"input", ex.input}, {"prompt", prompt}, {"gold", gold}};
      json row_scores = json::object();
      bool sample_truncated = false;
      if (generate) {
        std::vector<int32_t> ids = encode_doc(engine, prompt);
        const bool cut = fit(ids, static_cast<std::size_t>(context - budget));
        sample_truncated |= cut;
        infer::Sampling s;
        s.temperature = 0;
        s.max_tokens = budget;
        s.stop = {opt.format.answer_end()};
        const infer::Completion c = engine.complete(ids, s);
        const std::string pred = extract_answer(opt.format, c.text);
        row["raw"] = c.text;
        row["pred"] = pred;

        for (const auto& m : d.metrics) {
          double v;
          if (m == "exact_match") v = exact_match(pred, gold);
          else if (m == "char_f1") v = char_f1(pred, gold);
          else if (m == "set_f1") v = set_f1(pred, gold);
          else if (m == "bleu_en") v = bleu_en(pred, gold);
          else continue;  // corpus-level (pearson, spearman) or log-likelihood metrics
          out.metric_values.emplace_back(m, v);
          row_scores[m] = v;
        }
        if (std::count(d.metrics.begin(), d.metrics.end(), "pearson") ||
            std::count(d.metrics.begin(), d.metrics.end(), "spearman")) {
          double g;
          try {
            g = parse_gold_float(gold);
          } catch (const Error& e) {
            fail("{}: samples[{}].output: {} (pearson/spearman need numeric gold values)", d.path, i, e.what());
          }
          out.has_float = true;
          out.gold_f = g;
          out.pred_f = parse_float(pred);
          row["pred_float"] = out.pred_f;
        }
      }
      if (d.multiple_choice()) {
        std::vector<double> ll, ll_norm;
        SharedContext shared;
        for (const auto& choice : ex.choices) {
          std::vector<int32_t> ctx, cont;
          encode_pair(engine, prompt, choice, ctx, cont);
          if (cont.empty()) fail("{}: samples[{}]: choice '{}' encodes to no tokens", d.path, i, choice);
          if (cont.size() >= static_cast<std::size_t>(context))
            fail("{}: samples[{}]: choice '{}' alone is longer than the model's context", d.path, i, choice);
          if (fit(ctx, static_cast<std::size_t>(context) - cont.size())) sample_truncated = true;
          const double sum = shared.logprob(engine, ctx, cont);
          ll.push_back(sum);
          ll_norm.push_back(sum / static_cast<double>(std::max<std::size_t>(1, text::count_codepoints(choice))));
        }
        const auto gold_at = static_cast<std::size_t>(
            std::find(ex.choices.begin(), ex.choices.end(), ex.output) - ex.choices.begin());
        const auto best = static_cast<std::size_t>(std::max_element(ll.begin(), ll.end()) - ll.begin());
        const auto best_norm = static_cast<std::size_t>(std::max_element(ll_norm.begin(), ll_norm.end()) - ll_norm.begin());
        row["choices"] = ex.choices;
        row["choice_logprobs"] = ll;
        if (!generate) row["pred"] = ex.choices[best];
        row["pred_norm"] = ex.choices[best_norm];
        for (const auto& m : d.metrics) {
          if (m != "acc" && m != "acc_norm") continue;
          const double v = (m == "acc" ? best : best_norm) == gold_at ? 1.0 : 0.0;
          out.metric_values.emplace_back(m, v);
          row_scores[m] = v;
        }
      }
      row["scores"] = row_scores;
      if (sample_truncated) {
        row["prompt_truncated"] = true;
        out.truncated = true;
      }
      out.row = std::move(row);
      progress.step(d.name);
    });
    for (const Scored& r : results) {
      for (const auto& [m, v] : r.metric_values) per_metric[m].push_back(v);
      if (r.has_float) {
        gold_f.push_back(r.gold_f);
        pred_f.push_back(r.pred_f);
      }
      truncated += r.truncated;
      rows_out.write(r.row.dump(-1, ' ', false, json::error_handler_t::replace) + "\n");
    }
    json dinfo = {{"samples", n}, {"category", d.category}, {"num_few_shots", opt.num_few_shots}};
    if (truncated) dinfo["prompts_truncated"] = truncated;
    json dscores = json::object();
    for (const auto& m : d.metrics) {
      double v;
      if (m == "pearson") v = pearson(gold_f, pred_f);
      else if (m == "spearman") v = spearman(gold_f, pred_f);
      else v = mean(per_metric[m]);
      const std::string key = d.name + "_" + m;
      scores[key] = v;
      dscores[m] = v;
      if (!d.category.empty() && m != "bleu_en") extra_categories[key] = d.category;
    }
    dinfo["scores"] = dscores;
    dinfo["category"] = [&] {
      for (const auto& m : d.metrics)
        if (auto c = jaster_category(d.name + "_" + m); !c.empty()) return c;
      return d.category;
    }();
    datasets[d.name] = dinfo;
    if (truncated) log::warn("{}: {} prompts were longer than the model's context and kept their end", d.name, truncated);
    std::string line;
    for (const auto& [m, v] : dscores.items()) line += fmt::format(" {}={:.4f}", m, v.get<double>());
    log::info("{} ({} samples):{}", d.name, n, line);
  }
  rows_out.commit();

  json doc;
  doc["model"] = opt.model_label;
  if (!opt.adapter_label.empty()) doc["adapter"] = opt.adapter_label;
  doc["prompt_style"] = opt.format.style;
  doc["num_few_shots"] = opt.num_few_shots;
  doc["max_samples"] = opt.max_samples;
  doc["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  doc["scores"] = scores;
  doc["categories"] = category_scores(scores, extra_categories);
  doc["datasets"] = datasets;
  if (!perplexity.empty()) doc["perplexity"] = perplexity;
  write_file_atomic((fs::path(opt.out_dir) / "scores.json").string(), doc.dump(2) + "\n");
  write_eval_report({opt.out_dir}, (fs::path(opt.out_dir) / "report.html").string());
  return doc;
}

}  // namespace tsumugi::eval
