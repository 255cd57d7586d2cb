#include <gtest/gtest.h>

#include "text/utf8.h"

TEST(Utf8, CountsCodepoints) { EXPECT_EQ(tsumugi::text::count_codepoints("aあ"), 2u); }
