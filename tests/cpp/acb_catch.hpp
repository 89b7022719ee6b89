// Includes Catch2 whichever major version is installed (v2 on Debian 12, v3 on
// Debian 13), and names what differs between them.
#pragma once
#include <string>

#if ACB_CATCH2_V3
#include <catch2/catch_all.hpp>
#else
#include <catch2/catch.hpp>
#endif

namespace acb_test {
/// Matches a string (e.g. an exception's message) that contains `part`:
/// Catch::Matchers::ContainsSubstring in v3, Catch::Matchers::Contains in v2.
inline auto has_substring(const std::string& part) {
#if ACB_CATCH2_V3
  return Catch::Matchers::ContainsSubstring(part);
#else
  return Catch::Matchers::Contains(part);
#endif
}
}  // namespace acb_test
