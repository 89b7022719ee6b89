// The options table compiled from csrc/common/options.json: lookups, the
// environment override, and typed parsing errors.
#include <cstdlib>
#include <set>
#include <string>

#include "acb_catch.hpp"
#include "common/options.h"

TEST_CASE("every option has a unique name and an ACB_ variable", "[options]") {
  std::set<std::string_view> names;
  std::set<std::string_view> envs;
  for (const auto& o : acb::options::kOptions) {
    CHECK(names.insert(o.name).second);
    CHECK(envs.insert(o.env).second);
    CHECK(o.env.substr(0, 4) == "ACB_");
    CHECK_FALSE(o.doc.empty());
  }
  CHECK(acb::options::find("broker").env == "ACB_BROKER");
  CHECK_THROWS_AS(acb::options::find("no_such_option"), std::out_of_range);
}

TEST_CASE("the environment overrides the default", "[options]") {
  ::unsetenv("ACB_IDLE_GAP_MS");
  CHECK(acb::options::int_value("idle_gap_ms") == 10);
  ::setenv("ACB_IDLE_GAP_MS", "250", 1);
  CHECK(acb::options::int_value("idle_gap_ms") == 250);
  ::setenv("ACB_IDLE_GAP_MS", "soon", 1);
  CHECK_THROWS_WITH(acb::options::int_value("idle_gap_ms"), acb_test::has_substring("ACB_IDLE_GAP_MS='soon'"));
  ::unsetenv("ACB_IDLE_GAP_MS");
  ::setenv("ACB_BROKER", "10.0.0.1:5000", 1);
  CHECK(acb::options::value("broker") == "10.0.0.1:5000");
  ::unsetenv("ACB_BROKER");
  CHECK(acb::options::value("broker") == "127.0.0.1:43210");
}
