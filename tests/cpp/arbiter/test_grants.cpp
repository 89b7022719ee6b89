// Lease basics: grant when free, FIFO, idempotent acquire, release paths.
#include "arbiter_bench.h"

using namespace acb::broker;
using namespace acb::broker::test;

TEST_CASE("a free device is granted at once, with increasing lease numbers", "[arbiter]") {
  Bench b;
  b.arb.add_device("gpu0", 1000 * MiB);
  b.hello(1);
  auto ds = b.acquire(1);
  auto grants = for_client<Grant>(ds, 1);
  REQUIRE(grants.size() == 1);
  CHECK(grants[0].device == 0);
  CHECK(grants[0].waited_us == 0);
  CHECK(b.state(1) == ClientState::holding);
  CHECK(b.device(0).holder == ClientId{1});
  const auto first = grants[0].lease;
  b.release(1);
  CHECK(b.state(1) == ClientState::idle);
  CHECK_FALSE(b.device(0).holder.has_value());
  auto again = for_client<Grant>(b.acquire(1), 1);
  REQUIRE(again.size() == 1);
  CHECK(again[0].lease > first);
}

TEST_CASE("waiters of one class are granted first in, first out", "[arbiter]") {
  Bench b;
  b.arb.add_device("gpu0", 1000 * MiB);
  for (ClientId c = 1; c <= 4; ++c) b.hello(c);
  REQUIRE(granted(b.acquire(1), 1));
  for (ClientId c : {3, 2, 4}) {
    b.advance_ms(1);
    CHECK(all_of<Grant>(b.acquire(c)).empty());
    CHECK(b.state(c) == ClientState::waiting);
  }
  CHECK(b.device(0).queue == std::vector<ClientId>{3, 2, 4});
  ClientId holder = 1;
  for (ClientId expect : {3, 2, 4}) {
    b.advance_ms(5);
    auto ds = b.release(holder);
    REQUIRE(all_of<Grant>(ds).size() == 1);
    CHECK(all_of<Grant>(ds)[0].client == expect);
    holder = expect;
  }
}

TEST_CASE("acquire while holding is a no-op; release while waiting cancels the wait", "[arbiter]") {
  Bench b;
  b.arb.add_device("gpu0", 1000 * MiB);
  b.hello(1);
  b.hello(2);
  REQUIRE(granted(b.acquire(1), 1));
  CHECK(b.acquire(1).empty());
  CHECK(b.acquire(1, 0).empty());
  CHECK(b.arb.counters().grants == 1);
  CHECK(all_of<Grant>(b.acquire(2)).empty());
  CHECK(b.state(2) == ClientState::waiting);
  CHECK(b.acquire(2).empty());  // still queued once (validate checks)
  CHECK(b.release(2).empty());
  CHECK(b.state(2) == ClientState::idle);
  CHECK(b.device(0).queue.empty());
  // Releasing the holder now grants nobody: the wait was cancelled.
  CHECK(all_of<Grant>(b.release(1)).empty());
}

TEST_CASE("a holder that releases after a revoke hands the lease to the next waiter", "[arbiter]") {
  ArbiterConfig cfg;
  cfg.quantum_ms = 50;
  Bench b(cfg);
  b.arb.add_device("gpu0", 1000 * MiB);
  b.hello(1);
  b.hello(2);
  REQUIRE(granted(b.acquire(1), 1));
  b.acquire(2);
  b.advance_ms(50);
  auto revokes = for_client<Revoke>(b.tick_alive(), 1);
  REQUIRE(revokes.size() == 1);
  CHECK(b.state(1) == ClientState::revoked);
  b.advance_ms(3);
  auto ds = b.release(1, 0);
  auto g = for_client<Grant>(ds, 2);
  REQUIRE(g.size() == 1);
  CHECK(g[0].waited_us == 53'000);
  CHECK(b.client(2).waited_us_total == 53'000);
}

TEST_CASE("events of unknown clients are ignored, admin calls on them throw", "[arbiter]") {
  Bench b;
  b.arb.add_device("gpu0", 1000 * MiB);
  CHECK(b.acquire(42).empty());
  CHECK(b.release(42, 5).empty());
  CHECK(b.residency(42, 5).empty());
  CHECK(b.disconnect(42).empty());
  b.arb.on_heartbeat(42, b.now);
  CHECK_THROWS_AS(b.arb.set_priority(42, Priority::batch, b.now), ArbiterError);
  CHECK_THROWS_AS(b.arb.set_quota(42, 1, b.now), ArbiterError);
  CHECK_THROWS_AS(b.arb.drain_device(7, b.now), ArbiterError);
  CHECK_THROWS_AS(b.arb.set_quantum(0, b.now), ArbiterError);
  CHECK_THROWS_AS(b.arb.add_device("empty", 0), ArbiterError);
  CHECK_THROWS_AS(b.arb.capacity_of(9), ArbiterError);
  b.hello(1);
  HelloInfo dup;
  CHECK_FALSE(b.arb.on_hello(1, dup, b.now).device.has_value());
  CHECK(b.arb.on_hello(1, dup, b.now).error.find("already") != std::string::npos);
}

TEST_CASE("priority names round-trip", "[arbiter]") {
  for (Priority p : {Priority::inference, Priority::training, Priority::batch})
    CHECK(parse_priority(to_string(p)) == p);
  CHECK_FALSE(parse_priority("urgent").has_value());
  CHECK(std::string(to_string(RevokeReason::drain)) == "drain");
  CHECK(std::string(to_string(ClientState::revoked)) == "revoked");
}
