// ConnectionLimits: per-uid and total counts, unknown uids in one bucket,
// and refusals that count nothing and name the limit.
#include <optional>
#include <string>

#include "acb_catch.hpp"
#include "broker_server/connection_limits.h"

using namespace acb::broker;

TEST_CASE("each uid gets max_connections_per_uid, released ones can be reused") {
  ConnectionLimits limits({/*max_connections=*/10, /*max_connections_per_uid=*/2});
  CHECK_FALSE(limits.admit(1000u));
  CHECK_FALSE(limits.admit(1000u));
  const auto refusal = limits.admit(1000u);
  REQUIRE(refusal);
  CHECK(refusal->find("too many connections from uid 1000 (limit 2)") == 0);
  CHECK(refusal->find("max_connections_per_uid") != std::string::npos);
  CHECK(limits.of(1000u) == 2);
  CHECK_FALSE(limits.admit(65534u));  // another user is not affected
  limits.release(1000u);
  CHECK(limits.total() == 2);
  CHECK_FALSE(limits.admit(1000u));
}

TEST_CASE("peers of unknown uid share one bucket") {
  ConnectionLimits limits({10, 1});
  CHECK_FALSE(limits.admit(std::nullopt));
  const auto refusal = limits.admit(std::nullopt);
  REQUIRE(refusal);
  CHECK(refusal->find("unknown uid") != std::string::npos);
  CHECK_FALSE(limits.admit(0u));  // uid 0 is a uid, not "unknown"
}

TEST_CASE("max_connections bounds the total over all uids") {
  ConnectionLimits limits({3, 2});
  CHECK_FALSE(limits.admit(1u));
  CHECK_FALSE(limits.admit(2u));
  CHECK_FALSE(limits.admit(3u));
  const auto refusal = limits.admit(4u);
  REQUIRE(refusal);
  CHECK(refusal->find("(limit 3)") != std::string::npos);
  CHECK(refusal->find("max_connections") != std::string::npos);
  CHECK(limits.total() == 3);
  limits.release(2u);
  limits.release(2u);  // releasing more than was admitted changes nothing
  CHECK(limits.total() == 2);
  CHECK_FALSE(limits.admit(4u));
}
