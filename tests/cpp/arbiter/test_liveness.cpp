// Liveness: disconnect reclaim, heartbeat timeout, ignored revokes, next_wakeup.
#include "arbiter_bench.h"

using namespace acb::broker;
using namespace acb::broker::test;

namespace {
ArbiterConfig live() {
  ArbiterConfig cfg;
  cfg.quantum_ms = 100;
  cfg.preempt_deadline_ms = 20;
  cfg.quantum_deadline_ms = 200;
  cfg.revoke_grace_ms = 300;
  cfg.aging_ms = 0;
  cfg.heartbeat_timeout_ms = 1000;
  return cfg;
}
}  // namespace

TEST_CASE("a disconnecting holder's lease and residency are reclaimed at once",
          "[arbiter][liveness]") {
  Bench b(live());
  b.arb.add_device("gpu0", 1000 * MiB);
  b.hello(1, Priority::training, 600 * MiB);
  b.hello(2, Priority::training, 600 * MiB);
  REQUIRE(granted(b.acquire(1), 1));
  b.residency(1, 600 * MiB);
  b.acquire(2);
  auto ds = b.disconnect(1);
  CHECK(granted(ds, 2));
  CHECK(all_of<Evict>(ds).empty());  // nothing left to evict: 1's memory is gone
  CHECK_FALSE(b.arb.has_client(1));
  CHECK(b.arb.counters().disconnects == 1);
  CHECK(b.disconnect(1).empty());  // a second close is a no-op
  CHECK(b.arb.counters().disconnects == 1);
}

TEST_CASE("a disconnecting resident frees the memory a waiter was waiting for",
          "[arbiter][liveness]") {
  Bench b(live());
  b.arb.add_device("gpu0", 1000 * MiB);
  b.hello(1);
  b.hello(2, Priority::training, 800 * MiB);
  REQUIRE(granted(b.acquire(1), 1));
  b.release(1, 700 * MiB);
  auto ds = b.acquire(2);
  REQUIRE(for_client<Evict>(ds, 1).size() == 1);
  CHECK_FALSE(granted(ds, 2));
  CHECK(granted(b.disconnect(1), 2));  // its bytes are gone without a report
}

TEST_CASE("a silent client is disconnected after the heartbeat timeout", "[arbiter][liveness]") {
  Bench b(live());
  b.arb.add_device("gpu0", 1000 * MiB);
  b.hello(1);
  b.hello(2);
  REQUIRE(granted(b.acquire(1), 1));
  b.acquire(2);
  b.advance_ms(600);
  b.arb.on_heartbeat(2, b.now);
  b.advance_ms(399);
  CHECK(all_of<Disconnect>(b.tick()).empty());
  b.advance_ms(1);
  auto ds = b.tick();
  auto dis = all_of<Disconnect>(ds);
  REQUIRE(dis.size() == 1);
  CHECK(dis[0].client == 1);
  CHECK(dis[0].reason.find("heartbeat") != std::string::npos);
  CHECK(granted(ds, 2));
  CHECK_FALSE(b.arb.has_client(1));
  CHECK(b.disconnect(1).empty());  // the server's on_disconnect afterwards
  CHECK(b.arb.counters().disconnects == 1);
  // Any event counts as liveness, not only heartbeats.
  b.advance_ms(900);
  b.release(2);
  b.advance_ms(900);
  CHECK(all_of<Disconnect>(b.tick()).empty());
}

TEST_CASE("a holder that ignores a revoke past deadline + grace is disconnected",
          "[arbiter][liveness]") {
  Bench b(live());
  b.arb.add_device("gpu0", 1000 * MiB);
  b.hello(1, Priority::training);
  b.hello(2, Priority::inference);
  REQUIRE(granted(b.acquire(1), 1));
  auto rev = for_client<Revoke>(b.acquire(2), 1);
  REQUIRE(rev.size() == 1);
  REQUIRE(rev[0].deadline_ms == 20);
  b.advance_ms(319);  // deadline 20 + grace 300 - 1
  CHECK(all_of<Disconnect>(b.tick_alive()).empty());
  b.advance_ms(1);
  auto ds = b.tick_alive();
  auto dis = all_of<Disconnect>(ds);
  REQUIRE(dis.size() == 1);
  CHECK(dis[0].client == 1);
  CHECK(dis[0].reason.find("revoke") != std::string::npos);
  CHECK(granted(ds, 2));
}

TEST_CASE("next_wakeup names the earliest time a tick can decide something",
          "[arbiter][liveness]") {
  ArbiterConfig cfg = live();
  cfg.aging_ms = 250;
  Bench b(cfg);
  b.arb.add_device("gpu0", 1000 * MiB);
  CHECK_FALSE(b.arb.next_wakeup(b.now).has_value());
  const TimeUs t0 = b.now;
  b.hello(1, Priority::training);
  CHECK(b.arb.next_wakeup(b.now) == t0 + 1'000'000);  // heartbeat timeout
  REQUIRE(granted(b.acquire(1), 1));
  b.hello(2, Priority::batch);
  b.acquire(2);
  CHECK(b.arb.next_wakeup(b.now) == t0 + 100'000);  // the quantum's end: share
  b.advance_ms(100);
  auto share = for_client<Revoke>(b.tick_alive(), 1);
  REQUIRE(share.size() == 1);
  CHECK(share[0].reason == RevokeReason::share);
  CHECK(b.arb.next_wakeup(b.now) == t0 + 250'000);  // batch ages into training
  b.advance_ms(150);
  // It counts as training now: the shared holder gets the quantum deadline.
  auto rev = for_client<Revoke>(b.tick_alive(), 1);
  REQUIRE(rev.size() == 1);
  CHECK(rev[0].reason == RevokeReason::quantum);
  // Revoked at t0+250 ms with a 200 ms deadline and 300 ms grace: t0+750 ms;
  // the batch waiter ages into inference before that.
  CHECK(b.arb.next_wakeup(b.now) == t0 + 500'000);
  b.advance_ms(250);
  b.tick_alive();
  CHECK(b.arb.next_wakeup(b.now) == t0 + 750'000);
  CHECK(b.arb.next_wakeup(t0 + 900'000) == t0 + 900'000);  // overdue: never in the past
}

TEST_CASE("next_wakeup includes the quantum expiry when an equal waiter is queued",
          "[arbiter][liveness]") {
  Bench b(live());
  b.arb.add_device("gpu0", 1000 * MiB);
  const TimeUs t0 = b.now;
  b.hello(1);
  b.hello(2);
  REQUIRE(granted(b.acquire(1), 1));
  b.advance_ms(30);
  b.acquire(2);
  CHECK(b.arb.next_wakeup(b.now) == t0 + 100'000);
}

TEST_CASE("a resident that ignores an evict past its deadline is disconnected",
          "[arbiter][liveness]") {
  Bench b(live());  // evict deadline: quantum_deadline 200 + grace 300 = 500 ms
  b.arb.add_device("gpu0", 1000 * MiB);
  b.hello(1);
  b.hello(2, Priority::training, 800 * MiB);
  REQUIRE(granted(b.acquire(1), 1));
  b.release(1, 700 * MiB);
  const TimeUs asked = b.now;
  REQUIRE(for_client<Evict>(b.acquire(2), 1).size() == 1);
  CHECK(b.arb.next_wakeup(b.now) == asked + 500'000);
  b.advance_ms(499);
  CHECK(all_of<Disconnect>(b.tick_alive()).empty());
  b.advance_ms(1);
  auto ds = b.tick_alive();
  auto dis = all_of<Disconnect>(ds);
  REQUIRE(dis.size() == 1);
  CHECK(dis[0].client == 1);
  CHECK(dis[0].reason.find("evict") != std::string::npos);
  CHECK(granted(ds, 2));
}

TEST_CASE("a report, even a short one, resets the evict deadline", "[arbiter][liveness]") {
  Bench b(live());
  b.arb.add_device("gpu0", 1000 * MiB);
  b.hello(1);
  b.hello(2, Priority::training, 800 * MiB);
  REQUIRE(granted(b.acquire(1), 1));
  b.release(1, 700 * MiB);
  b.acquire(2);
  b.advance_ms(400);
  auto again = for_client<Evict>(b.residency(1, 600 * MiB), 1);  // 100 of the 500 asked
  REQUIRE(again.size() == 1);
  CHECK(again[0].bytes == 400 * MiB);
  b.advance_ms(400);  // 800 ms after the first ask, 400 after the second
  CHECK(all_of<Disconnect>(b.tick_alive()).empty());
  CHECK(granted(b.residency(1, 200 * MiB), 2));
}

TEST_CASE("clients dead at the same tick get no grant on their way out", "[arbiter][liveness]") {
  Bench b(live());
  b.arb.add_device("gpu0", 1000 * MiB);
  b.hello(1);
  b.hello(2);
  b.hello(3);
  REQUIRE(granted(b.acquire(1), 1));
  b.acquire(2);
  b.advance_ms(10);
  b.acquire(3);
  b.advance_ms(995);  // 1 and 2 silent for 1005 ms, 3 for 995 ms
  auto ds = b.tick();
  CHECK(all_of<Disconnect>(ds).size() == 2);
  REQUIRE(all_of<Grant>(ds).size() == 1);
  CHECK(all_of<Grant>(ds)[0].client == 3);
  CHECK(b.arb.counters().disconnects == 2);
}
