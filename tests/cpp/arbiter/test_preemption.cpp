// Priority classes: quantum slicing, immediate preemption, aging, runtime changes.
#include "arbiter_bench.h"

using namespace acb::broker;
using namespace acb::broker::test;

namespace {
ArbiterConfig quick() {
  ArbiterConfig cfg;
  cfg.quantum_ms = 100;
  cfg.preempt_deadline_ms = 20;
  cfg.quantum_deadline_ms = 300;
  cfg.aging_ms = 500;
  cfg.heartbeat_timeout_ms = 60'000;
  cfg.revoke_grace_ms = 60'000;
  return cfg;
}
}  // namespace

TEST_CASE("an equal-priority waiter preempts the holder after the quantum", "[arbiter]") {
  Bench b(quick());
  b.arb.add_device("gpu0", 1000 * MiB);
  b.hello(1);
  b.hello(2);
  REQUIRE(granted(b.acquire(1), 1));
  b.advance_ms(10);
  auto share = for_client<Revoke>(b.acquire(2), 1);  // yield when idle (test_idle_yield.cpp)
  REQUIRE(share.size() == 1);
  CHECK(!share[0].deadline_ms.has_value());
  b.advance_ms(89);  // 99 ms into the lease
  CHECK(b.tick().empty());
  b.advance_ms(1);
  auto revokes = for_client<Revoke>(b.tick(), 1);
  REQUIRE(revokes.size() == 1);
  CHECK(revokes[0].reason == RevokeReason::quantum);
  CHECK(revokes[0].deadline_ms == 300);
  CHECK(b.tick().empty());  // revoked with a deadline once only
  CHECK(b.arb.counters().revokes == 2);
  CHECK(b.arb.counters().preemptions == 0);
}

TEST_CASE("a holder alone keeps the lease past its quantum", "[arbiter]") {
  Bench b(quick());
  b.arb.add_device("gpu0", 1000 * MiB);
  b.hello(1, Priority::training);
  REQUIRE(granted(b.acquire(1), 1));
  b.advance_ms(5000);
  CHECK(b.tick().empty());
  CHECK(b.state(1) == ClientState::holding);
  CHECK(b.arb.counters().revokes == 0);
}

TEST_CASE("ahead of a lower class only, a holder is asked to share at its idle gap, never forced",
          "[arbiter]") {
  ArbiterConfig cfg = quick();
  cfg.aging_ms = 0;
  Bench b(cfg);
  b.arb.add_device("gpu0", 1000 * MiB);
  b.hello(1, Priority::training);
  b.hello(2, Priority::batch);
  REQUIRE(granted(b.acquire(1), 1));
  b.advance_ms(50);
  CHECK(b.acquire(2).empty());
  CHECK(b.arb.next_wakeup(b.now) == std::optional<TimeUs>(b.now + 50'000));  // the quantum's end
  b.advance_ms(49);  // 99 ms into the lease
  CHECK(b.tick().empty());
  b.advance_ms(1);
  auto revokes = for_client<Revoke>(b.tick(), 1);
  REQUIRE(revokes.size() == 1);
  CHECK(revokes[0].reason == RevokeReason::share);
  CHECK(!revokes[0].deadline_ms.has_value());
  CHECK(b.arb.counters().preemptions == 0);
  // No deadline, so no disconnect however long the holder stays busy (its
  // heartbeats keep it alive).
  for (int i = 0; i < 10; ++i) {
    b.advance_ms(10'000);
    CHECK(b.tick_alive().empty());
  }
  CHECK(b.state(1) == ClientState::revoked);
  CHECK(granted(b.release(1), 2));  // its idle gap came
}

TEST_CASE("a shared holder gets the quantum deadline once the waiter ages into its class",
          "[arbiter]") {
  Bench b(quick());  // aging 500 ms
  b.arb.add_device("gpu0", 1000 * MiB);
  b.hello(1, Priority::training);
  b.hello(2, Priority::batch);
  REQUIRE(granted(b.acquire(1), 1));
  b.acquire(2);
  b.advance_ms(100);
  auto first = for_client<Revoke>(b.tick(), 1);
  REQUIRE(first.size() == 1);
  CHECK(first[0].reason == RevokeReason::share);
  b.advance_ms(399);  // the batch waiter has waited 499 ms
  CHECK(b.tick().empty());
  b.advance_ms(1);  // 500 ms: it competes as training now
  auto second = for_client<Revoke>(b.tick(), 1);
  REQUIRE(second.size() == 1);
  CHECK(second[0].reason == RevokeReason::quantum);
  CHECK(second[0].deadline_ms == 300);
  CHECK(second[0].lease == first[0].lease);
  CHECK(b.tick().empty());  // once
}

TEST_CASE("a shared holder is preempted with the short deadline when a better class arrives",
          "[arbiter]") {
  ArbiterConfig cfg = quick();
  cfg.aging_ms = 0;
  Bench b(cfg);
  b.arb.add_device("gpu0", 1000 * MiB);
  b.hello(1, Priority::training);
  b.hello(2, Priority::batch);
  b.hello(3, Priority::inference);
  REQUIRE(granted(b.acquire(1), 1));
  b.acquire(2);
  b.advance_ms(100);
  REQUIRE(for_client<Revoke>(b.tick(), 1).size() == 1);
  auto preempt = for_client<Revoke>(b.acquire(3), 1);
  REQUIRE(preempt.size() == 1);
  CHECK(preempt[0].reason == RevokeReason::preempt);
  CHECK(preempt[0].deadline_ms == 20);
  CHECK(granted(b.release(1), 3));  // the better class goes first
}

TEST_CASE("a higher class preempts at once with the short deadline", "[arbiter]") {
  Bench b(quick());
  b.arb.add_device("gpu0", 1000 * MiB);
  b.hello(1, Priority::training);
  b.hello(2, Priority::inference);
  REQUIRE(granted(b.acquire(1), 1));
  b.advance_ms(1);
  auto ds = b.acquire(2);
  auto revokes = for_client<Revoke>(ds, 1);
  REQUIRE(revokes.size() == 1);
  CHECK(revokes[0].reason == RevokeReason::preempt);
  CHECK(revokes[0].deadline_ms == 20);
  CHECK(b.arb.counters().preemptions == 1);
  CHECK(b.client(1).preemptions == 1);
  b.advance_ms(5);
  CHECK(granted(b.release(1), 2));
}

TEST_CASE("a higher class waiter goes before earlier lower class waiters", "[arbiter]") {
  Bench b(quick());
  b.arb.add_device("gpu0", 1000 * MiB);
  b.hello(1, Priority::inference);
  b.hello(2, Priority::batch);
  b.hello(3, Priority::training);
  b.hello(4, Priority::inference);
  REQUIRE(granted(b.acquire(1), 1));
  b.acquire(2);
  b.acquire(3);
  b.acquire(4);
  CHECK(b.device(0).queue == std::vector<ClientId>{4, 3, 2});
  CHECK(granted(b.release(1), 4));
}

namespace {
/// Runs a stream of training jobs that re-queue after every lease, with one batch
/// waiter; returns the simulated ms until the batch job is granted (nullopt: never).
std::optional<std::uint64_t> batch_grant_ms(std::uint64_t aging_ms) {
  ArbiterConfig cfg = quick();
  cfg.aging_ms = aging_ms;
  Bench b(cfg);
  b.arb.add_device("gpu0", 1000 * MiB);
  for (ClientId c = 1; c <= 3; ++c) b.hello(c, Priority::training);
  b.hello(9, Priority::batch);
  REQUIRE(granted(b.acquire(1), 1));
  b.acquire(2);
  b.acquire(3);
  b.acquire(9);
  for (std::uint64_t ms = 10; ms <= 3000; ms += 10) {
    b.advance_ms(10);
    for (const Revoke& r : all_of<Revoke>(b.tick_alive())) {
      auto ds = b.release(r.client);
      if (granted(ds, 9)) return ms;
      b.acquire(r.client);  // the training job wants the device again at once
    }
  }
  return std::nullopt;
}
}  // namespace

TEST_CASE("aging: a batch waiter is granted under a stream of training work", "[arbiter]") {
  CHECK_FALSE(batch_grant_ms(0).has_value());  // without aging it starves
  auto at = batch_grant_ms(500);
  REQUIRE(at.has_value());
  // Counts as training from 500 ms, oldest of the class, so it is next at the
  // first quantum expiry after that.
  CHECK(*at >= 500);
  CHECK(*at <= 600);
}

TEST_CASE("aging lets a long-waiting batch job preempt a training holder", "[arbiter]") {
  Bench b(quick());
  b.arb.add_device("gpu0", 1000 * MiB);
  b.hello(1, Priority::inference);
  b.hello(2, Priority::batch);
  REQUIRE(granted(b.acquire(1), 1));
  b.acquire(2);
  b.advance_ms(100);
  auto share = for_client<Revoke>(b.tick(), 1);  // the quantum: share at the next idle gap
  REQUIRE(share.size() == 1);
  CHECK(share[0].reason == RevokeReason::share);
  b.advance_ms(899);
  CHECK(b.tick().empty());  // counts as training: still below inference, still no deadline
  b.advance_ms(1);
  auto revokes = for_client<Revoke>(b.tick(), 1);  // counts as inference now: the quantum deadline
  REQUIRE(revokes.size() == 1);
  CHECK(revokes[0].reason == RevokeReason::quantum);
  CHECK(revokes[0].deadline_ms == 300);
  auto g = for_client<Grant>(b.release(1), 2);
  REQUIRE(g.size() == 1);
  CHECK(g[0].waited_us == 1'000'000);
}

TEST_CASE("set_priority: lowering the holder or raising a waiter preempts at once", "[arbiter]") {
  Bench b(quick());
  b.arb.add_device("gpu0", 1000 * MiB);
  b.hello(1, Priority::training);
  b.hello(2, Priority::training);
  REQUIRE(granted(b.acquire(1), 1));
  b.acquire(2);
  SECTION("raise the waiter") {
    auto revokes = for_client<Revoke>(b.arb.set_priority(2, Priority::inference, b.now), 1);
    b.arb.validate();
    REQUIRE(revokes.size() == 1);
    CHECK(revokes[0].reason == RevokeReason::preempt);
  }
  SECTION("lower the holder") {
    auto revokes = for_client<Revoke>(b.arb.set_priority(1, Priority::batch, b.now), 1);
    b.arb.validate();
    REQUIRE(revokes.size() == 1);
    CHECK(revokes[0].reason == RevokeReason::preempt);
    CHECK(b.client(1).priority == Priority::batch);
  }
  SECTION("an unrelated change does nothing") {
    CHECK(b.arb.set_priority(2, Priority::batch, b.now).empty());
  }
}

TEST_CASE("set_quantum applies to the running lease at once", "[arbiter]") {
  ArbiterConfig cfg = quick();
  cfg.aging_ms = 0;
  Bench b(cfg);
  b.arb.add_device("gpu0", 1000 * MiB);
  b.hello(1);
  b.hello(2);
  REQUIRE(granted(b.acquire(1), 1));
  b.acquire(2);
  b.advance_ms(60);
  CHECK(b.tick().empty());
  auto revokes = for_client<Revoke>(b.arb.set_quantum(50, b.now), 1);
  REQUIRE(revokes.size() == 1);
  CHECK(revokes[0].reason == RevokeReason::quantum);
  CHECK(b.arb.config().quantum_ms == 50);
  b.release(1);
  b.acquire(1);
  CHECK(b.arb.set_quantum(1000, b.now).empty());
  b.advance_ms(999);
  CHECK(b.tick().empty());
  b.advance_ms(1);
  CHECK(for_client<Revoke>(b.tick(), 2).size() == 1);
}

TEST_CASE("a higher class arriving after a quantum revoke shortens the deadline once",
          "[arbiter]") {
  Bench b(quick());
  b.arb.add_device("gpu0", 1000 * MiB);
  b.hello(1, Priority::training);
  b.hello(2, Priority::training);
  b.hello(3, Priority::inference);
  REQUIRE(granted(b.acquire(1), 1));
  b.acquire(2);
  b.advance_ms(100);
  auto first = for_client<Revoke>(b.tick(), 1);
  REQUIRE(first.size() == 1);
  CHECK(first[0].deadline_ms == 300);
  b.advance_ms(10);
  auto second = for_client<Revoke>(b.acquire(3), 1);
  REQUIRE(second.size() == 1);
  CHECK(second[0].reason == RevokeReason::preempt);
  CHECK(second[0].deadline_ms == 20);
  CHECK(second[0].lease == first[0].lease);
  CHECK(b.client(1).preemptions == 1);
  b.advance_ms(5);
  CHECK(b.tick().empty());
  CHECK(granted(b.release(1), 3));
}

TEST_CASE("draining the device of a shared holder gives it the drain deadline", "[arbiter]") {
  ArbiterConfig cfg = quick();
  cfg.aging_ms = 0;
  Bench b(cfg);
  b.arb.add_device("gpu0", 1000 * MiB);
  b.arb.add_device("gpu1", 1000 * MiB);
  b.hello(1, Priority::training, 0, DeviceId{0});
  b.hello(2, Priority::batch, 0, DeviceId{0});
  REQUIRE(granted(b.acquire(1), 1));
  b.acquire(2);
  b.advance_ms(100);
  REQUIRE(for_client<Revoke>(b.tick(), 1).size() == 1);  // share, no deadline
  auto drain = for_client<Revoke>(b.checked(b.arb.drain_device(0, b.now)), 1);
  REQUIRE(drain.size() == 1);
  CHECK(drain[0].reason == RevokeReason::drain);
  CHECK(drain[0].deadline_ms == 300);
}
