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
  ::unsetenv("ACB_CONNECT_TIMEOUT_MS");
  CHECK(acb::options::int_value("connect_timeout_ms") == 5000);
  ::setenv("ACB_CONNECT_TIMEOUT_MS", "250", 1);
  CHECK(acb::options::int_value("connect_timeout_ms") == 250);
  ::setenv("ACB_CONNECT_TIMEOUT_MS", "soon", 1);
  CHECK_THROWS_WITH(acb::options::int_value("connect_timeout_ms"), acb_test::has_substring("ACB_CONNECT_TIMEOUT_MS='soon'"));
  ::unsetenv("ACB_CONNECT_TIMEOUT_MS");
  ::setenv("ACB_BROKER", "10.0.0.1:5000", 1);
  CHECK(acb::options::value("broker") == "10.0.0.1:5000");
  ::unsetenv("ACB_BROKER");
  CHECK(acb::options::value("broker") == "127.0.0.1:43210");
}

#include "client/env_options.h"

TEST_CASE("client options come from the ACB_* environment", "[options]") {
  for (const char* v : {"ACB_BROKER", "ACB_NAME", "ACB_PRIORITY", "ACB_DEVICE", "ACB_NEED_BYTES", "ACB_TOKEN",
                        "ACB_CONNECT_TIMEOUT_MS"}) {
    ::unsetenv(v);
  }
  auto o = acb::client::client_options_from_env("python-123");
  CHECK(o.host == "127.0.0.1");
  CHECK(o.port == 43210);
  CHECK(o.name == "python-123");
  CHECK(o.priority == "training");
  CHECK(o.device == -1);
  CHECK(o.token.empty());

  ::setenv("ACB_BROKER", "[::1]:5000", 1);
  ::setenv("ACB_PRIORITY", "inference", 1);
  ::setenv("ACB_NEED_BYTES", "4096", 1);
  ::setenv("ACB_DEVICE", "1", 1);
  o = acb::client::client_options_from_env("x");
  CHECK(o.host == "::1");
  CHECK(o.port == 5000);
  CHECK(o.priority == "inference");
  CHECK(o.need_bytes == 4096);
  CHECK(o.device == 1);

  ::setenv("ACB_BROKER", "localhost", 1);
  CHECK_THROWS_WITH(acb::client::client_options_from_env("x"), acb_test::has_substring("'localhost' is not HOST:PORT"));
  ::setenv("ACB_BROKER", "h:70000", 1);
  CHECK_THROWS_AS(acb::client::client_options_from_env("x"), std::invalid_argument);
  ::unsetenv("ACB_BROKER");
  ::setenv("ACB_PRIORITY", "urgent", 1);
  CHECK_THROWS_WITH(acb::client::client_options_from_env("x"), acb_test::has_substring("ACB_PRIORITY='urgent'"));
  for (const char* v : {"ACB_PRIORITY", "ACB_DEVICE", "ACB_NEED_BYTES"}) ::unsetenv(v);
}
