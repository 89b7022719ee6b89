// An idle device goes to a waiter at once (docs/scheduling.md, "Preemption"):
// an equal or better waiter gets the holder revoked the moment it queues, an
// equal one without a deadline (the holder yields at its next idle gap, at
// once when it is idle), so the quantum only bounds how long a busy holder
// keeps the device; equal inference services get the device in the order
// their requests came; nobody waiting, the holder keeps its lease.
#include "arbiter_bench.h"

using namespace acb::broker;
using namespace acb::broker::test;

namespace {

// A long quantum: anything that happens well before it is not the quantum's doing.
ArbiterConfig long_quantum() {
  ArbiterConfig cfg;
  cfg.quantum_ms = 5'000;
  cfg.preempt_deadline_ms = 20;
  cfg.quantum_deadline_ms = 300;
  cfg.revoke_grace_ms = 100;
  cfg.aging_ms = 0;
  cfg.heartbeat_timeout_ms = 60'000;
  return cfg;
}

std::uint64_t lease_of(const Decisions& ds, ClientId c) {
  auto grants = for_client<Grant>(ds, c);
  REQUIRE(grants.size() == 1);
  return grants[0].lease;
}

}  // namespace

TEST_CASE("an equal waiter gets the holder revoked at once, without a deadline, and the device when it yields",
          "[arbiter][idle]") {
  Bench b(long_quantum());
  b.arb.add_device("gpu0", 1000 * MiB);
  b.hello(1, Priority::inference);
  b.hello(2, Priority::inference);
  const std::uint64_t lease = lease_of(b.acquire(1), 1);
  b.advance_ms(10);  // far inside the 5 s quantum
  auto revokes = for_client<Revoke>(b.acquire(2), 1);
  REQUIRE(revokes.size() == 1);
  CHECK(revokes[0].reason == RevokeReason::share);
  CHECK_FALSE(revokes[0].deadline_ms.has_value());
  CHECK(revokes[0].lease == lease);
  CHECK(b.state(1) == ClientState::revoked);
  CHECK(b.arb.counters().preemptions == 0);
  // The holder is idle: it releases at once, and the waiter is granted then,
  // 1 ms after it asked, not at the quantum's end.
  b.advance_ms(1);
  auto grants = for_client<Grant>(b.release(1), 2);
  REQUIRE(grants.size() == 1);
  CHECK(grants[0].waited_us == 1'000);
}

TEST_CASE("a better waiter gets the holder revoked at once with the short deadline", "[arbiter][idle]") {
  Bench b(long_quantum());
  b.arb.add_device("gpu0", 1000 * MiB);
  b.hello(1, Priority::training);
  b.hello(2, Priority::inference);
  REQUIRE(granted(b.acquire(1), 1));
  b.advance_ms(10);
  auto revokes = for_client<Revoke>(b.acquire(2), 1);
  REQUIRE(revokes.size() == 1);
  CHECK(revokes[0].reason == RevokeReason::preempt);
  CHECK(revokes[0].deadline_ms == 20);
  b.advance_ms(1);
  CHECK(granted(b.release(1), 2));
}

TEST_CASE("a busy holder keeps the device against an equal waiter until its quantum, then gets a deadline",
          "[arbiter][idle]") {
  Bench b(long_quantum());
  b.arb.add_device("gpu0", 1000 * MiB);
  b.hello(1, Priority::training);
  b.hello(2, Priority::training);
  REQUIRE(granted(b.acquire(1), 1));
  const TimeUs lease_start = b.now;
  b.advance_ms(1'000);
  REQUIRE(for_client<Revoke>(b.acquire(2), 1).size() == 1);  // share: yield when idle
  // Busy, it does not release: nothing more is decided before the quantum ends.
  CHECK(b.arb.next_wakeup(b.now) == std::optional<TimeUs>(lease_start + 5'000'000));
  b.advance_ms(3'999);
  CHECK(b.tick_alive().empty());
  CHECK(b.state(1) == ClientState::revoked);
  b.advance_ms(1);  // the lease is a quantum old
  auto revokes = for_client<Revoke>(b.tick_alive(), 1);
  REQUIRE(revokes.size() == 1);
  CHECK(revokes[0].reason == RevokeReason::quantum);
  CHECK(revokes[0].deadline_ms == 300);
  CHECK(b.tick_alive().empty());  // once
  // The deadline holds like any other: past it and the grace, the holder is disconnected.
  b.advance_ms(300 + 100);
  auto gone = all_of<Disconnect>(b.tick_alive());
  REQUIRE(gone.size() == 1);
  CHECK(gone[0].client == 1);
  CHECK(b.device(0).holder == std::optional<ClientId>(2));
}

TEST_CASE("between equal inference services the device goes to requests in arrival order",
          "[arbiter][idle]") {
  Bench b(long_quantum());
  b.arb.add_device("gpu0", 1000 * MiB);
  for (ClientId c : {1, 2, 3}) b.hello(c, Priority::inference);
  REQUIRE(granted(b.acquire(1), 1));
  b.advance_ms(1);
  CHECK(for_client<Revoke>(b.acquire(2), 1).size() == 1);
  b.advance_ms(1);
  CHECK(b.acquire(3).empty());  // the holder was asked already
  CHECK(b.device(0).queue == std::vector<ClientId>{2, 3});

  // 1 yields: 2 is granted and, since 3 waits behind it, asked at once to
  // yield when idle too.
  b.advance_ms(1);
  Decisions ds = b.release(1);
  CHECK(granted(ds, 2));
  auto revokes = for_client<Revoke>(ds, 2);
  REQUIRE(revokes.size() == 1);
  CHECK(revokes[0].reason == RevokeReason::share);
  CHECK(revokes[0].lease == lease_of(ds, 2));

  // 1's next request comes after 3's: it queues behind it.
  b.advance_ms(1);
  CHECK(b.acquire(1).empty());
  CHECK(b.device(0).queue == std::vector<ClientId>{3, 1});
  b.advance_ms(1);
  ds = b.release(2);
  CHECK(granted(ds, 3));
  CHECK(for_client<Revoke>(ds, 3).size() == 1);
  b.advance_ms(1);
  ds = b.release(3);
  CHECK(granted(ds, 1));
  CHECK(all_of<Revoke>(ds).empty());  // nobody else waits
}

TEST_CASE("nobody waiting, the holder keeps its lease however long it is idle", "[arbiter][idle]") {
  Bench b(long_quantum());
  b.arb.add_device("gpu0", 1000 * MiB);
  b.hello(1, Priority::inference);
  b.hello(2, Priority::inference);
  REQUIRE(granted(b.acquire(1), 1));
  for (int i = 0; i < 20; ++i) {
    b.advance_ms(1'000);
    CHECK(b.tick_alive().empty());
  }
  CHECK(b.state(1) == ClientState::holding);
  CHECK(b.arb.counters().revokes == 0);
  // The first waiter changes that at once.
  CHECK(for_client<Revoke>(b.acquire(2), 1).size() == 1);
}

TEST_CASE("a worse waiter does not shorten the quantum", "[arbiter][idle]") {
  Bench b(long_quantum());
  b.arb.add_device("gpu0", 1000 * MiB);
  b.hello(1, Priority::training);
  b.hello(2, Priority::batch);
  REQUIRE(granted(b.acquire(1), 1));
  CHECK(b.acquire(2).empty());
  b.advance_ms(4'999);
  CHECK(b.tick_alive().empty());
  b.advance_ms(1);
  auto revokes = for_client<Revoke>(b.tick_alive(), 1);
  REQUIRE(revokes.size() == 1);
  CHECK(revokes[0].reason == RevokeReason::share);
}

TEST_CASE("a waiting revoke offender is not served early: the holder keeps its quantum", "[arbiter][idle]") {
  ArbiterConfig cfg = long_quantum();
  cfg.quantum_ms = 100;
  cfg.quantum_deadline_ms = 200;
  cfg.revoke_grace_ms = 300;
  cfg.revoke_penalty_ms = 5'000;
  Bench b(cfg);
  b.arb.add_device("gpu0", 1000 * MiB);
  b.hello(1);
  b.hello(2);
  // 1 holds, 2 waits; 1 is revoked at the quantum and lets the deadline pass.
  REQUIRE(granted(b.acquire(1), 1));
  b.acquire(2);
  b.advance_ms(100);
  REQUIRE(for_client<Revoke>(b.tick_alive(), 1).size() == 1);
  b.advance_ms(250);
  REQUIRE(granted(b.release(1), 2));
  // The offender asks again: an early release would only leave the device
  // idle (it gets a free device a quantum after it fell free), so 2 keeps it.
  b.advance_ms(1);
  CHECK(b.acquire(1).empty());
  b.advance_ms(98);
  CHECK(b.tick_alive().empty());
  b.advance_ms(1);  // 2's quantum
  auto revokes = for_client<Revoke>(b.tick_alive(), 2);
  REQUIRE(revokes.size() == 1);
  CHECK(revokes[0].reason == RevokeReason::quantum);
}
