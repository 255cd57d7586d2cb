#include "corpus/filters/groups.h"

namespace tsumugi::corpus {

void add_japanese_filters(std::vector<FilterSpec>& specs) { (void)specs; }

}  // namespace tsumugi::corpus
