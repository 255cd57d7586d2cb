#include "corpus/filters/groups.h"

namespace tsumugi::corpus {

void add_general_filters(std::vector<FilterSpec>& specs) { (void)specs; }

}  // namespace tsumugi::corpus
