#pragma once
// Each group of filters registers its specs here; registry.cc gathers them.
#include <vector>

#include "corpus/filter.h"

namespace tsumugi::corpus {

void add_japanese_filters(std::vector<FilterSpec>& specs);  // filters/japanese.cc
void add_general_filters(std::vector<FilterSpec>& specs);   // filters/general.cc (length, compression, repetition, PII, NFKC, langid)
void add_english_filters(std::vector<FilterSpec>& specs);   // filters/english.cc (Gopher, C4)
void add_code_filters(std::vector<FilterSpec>& specs);      // filters/code.cc (RedPajama code rules)

}  // namespace tsumugi::corpus
