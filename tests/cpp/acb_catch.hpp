// Includes Catch2 whichever major version is installed (v2 on Debian 12, v3 on
// Debian 13), and names what differs between them.
//
// Skips: ACB_SKIP_CASE(why) ends the running case as skipped (v3's SKIP; v2
// has none, so it warns, counts the skip and returns: catch2_main_v2.cpp then
// exits 4, as v3 does when every case it ran was skipped, and ctest's
// SKIP_RETURN_CODE 4 reports the test as not run). A case that needs a GPU
// skips only through ACB_SKIP_GPU_CASE, which fails instead when
// ACB_REQUIRE_GPU=1: on a machine that must run the [gpu] cases a skip cannot
// pass for a green run.
#pragma once
#include <atomic>
#include <cstdlib>
#include <cstring>
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

/// Cases skipped so far in this process (counted by ACB_SKIP_CASE under Catch2 v2).
inline std::atomic<int>& skipped_cases() {
  static std::atomic<int> count{0};
  return count;
}

/// True when ACB_REQUIRE_GPU=1: every [gpu] case must really run.
inline bool gpu_required() {
  const char* value = std::getenv("ACB_REQUIRE_GPU");
  return value != nullptr && std::strcmp(value, "1") == 0;
}
}  // namespace acb_test

/// Ends the running test case as skipped, saying why (a stream expression).
#if ACB_CATCH2_V3
#define ACB_SKIP_CASE(why) SKIP(why)
#else
#define ACB_SKIP_CASE(why)        \
  do {                            \
    WARN("skipped: " << why);     \
    ++acb_test::skipped_cases();  \
    return;                       \
  } while (false)
#endif

/// Skips a [gpu] case that cannot run here; fails it under ACB_REQUIRE_GPU=1.
#define ACB_SKIP_GPU_CASE(why)                                                  \
  do {                                                                          \
    if (acb_test::gpu_required())                                               \
      FAIL("ACB_REQUIRE_GPU=1 but this [gpu] case would skip: " << why);        \
    ACB_SKIP_CASE("no GPU: " << why);                                           \
  } while (false)
