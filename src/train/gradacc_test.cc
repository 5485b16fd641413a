// The umbrella header's version (gradacc.h) against the library's and the project's.
#include "gradacc/gradacc.h"

#include <gtest/gtest.h>

namespace gradacc {
namespace {

// The library says the version its headers had, and the headers say the project's: a release
// that bumps project(VERSION) in CMakeLists.txt without GRADACC_VERSION fails here.
TEST(Version, HeadersLibraryAndProjectAgree) {
  EXPECT_STREQ(version(), GRADACC_VERSION);
  EXPECT_STREQ(GRADACC_VERSION, GRADACC_PROJECT_VERSION);
}

}  // namespace
}  // namespace gradacc
