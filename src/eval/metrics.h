// The scoring functions of llm-jp-eval (v1.3), reimplemented to give its numbers exactly:
//   exact_match  1 when prediction and gold are the same string (after answer normalization)
//   char_f1      fuzzywuzzy 0.18's fuzz.token_sort_ratio(pred, gold) / 100 with python-Levenshtein:
//                full_process (drop U+0080..U+00FF, every non-word character → space, Python
//                str.lower, strip), split on whitespace, sort the tokens, join with one space,
//                then round(100 · Levenshtein.ratio) — Python's round, half to even
//   set_f1       lines of the prediction (stripped, as a set) against the gold lines (stripped,
//                a list): precision = hits / |pred set|, recall = hits / |gold lines|, F1
//   pearson      Pearson r over the dataset: gold as float, prediction through parse_float
//                (keep only [0-9.]; unparsable → -2.0); NaN (constant input) → 0
//   spearman     the same on average ranks (scipy.stats.spearmanr)
//   bleu_en      sacrebleu 2.x sentence BLEU (tokenizer 13a, exp smoothing, effective order) per
//                sample, then the mean; a sample whose stripped prediction or gold is empty
//                scores 1 if both are equal, else 0
// Per-sample metrics return a value in [0, 1] (BLEU in [0, 100], as sacrebleu reports it).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace tsumugi::eval {

double exact_match(std::string_view pred, std::string_view gold);
double char_f1(std::string_view pred, std::string_view gold);
double set_f1(std::string_view pred, std::string_view gold);

// fuzzywuzzy's token_sort_ratio (0-100) and the string it compares (exposed for tests).
int token_sort_ratio(std::string_view a, std::string_view b);
std::string fuzz_process_and_sort(std::string_view s);

// llm-jp-eval's parse_float: drop everything but ASCII digits and '.', parse; -2.0 if that fails.
double parse_float(std::string_view s);
// Python float(s) for a gold value (surrounding whitespace allowed); throws Error if not a number.
double parse_gold_float(std::string_view s);
// NaN-free correlations as llm-jp-eval reports them (0 when undefined).
double pearson(const std::vector<double>& x, const std::vector<double>& y);
double spearman(const std::vector<double>& x, const std::vector<double>& y);

// sacrebleu's 13a tokenization of one segment (after its rstrip), tokens joined by one space.
std::string tokenize_13a(std::string_view s);
// Sentence BLEU as sacrebleu.metrics.BLEU(effective_order=True).sentence_score(hyp, [ref]).score.
double sentence_bleu(std::string_view hyp, std::string_view ref);
// llm-jp-eval's per-sample bleu_en value (strip, empty handling, sentence BLEU).
double bleu_en(std::string_view pred, std::string_view gold);

// Python str.split() whitespace.
bool is_python_space(char32_t c);

}  // namespace tsumugi::eval
