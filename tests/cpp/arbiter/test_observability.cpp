// What operators see: lease timeline, counters, snapshot.
#include "arbiter_bench.h"

using namespace acb::broker;
using namespace acb::broker::test;

TEST_CASE("the timeline has one slice per lease, closed when the lease ends",
          "[arbiter][observability]") {
  Bench b;
  b.arb.add_device("gpu0", 1000 * MiB);
  b.hello(1);
  b.hello(2);
  const TimeUs t0 = b.now;
  REQUIRE(granted(b.acquire(1), 1));
  b.acquire(2);
  b.advance_ms(10);
  b.release(1);
  b.acquire(2, 50 * MiB);  // growth re-grant: same slice
  auto slices = b.arb.timeline();
  REQUIRE(slices.size() == 2);
  CHECK(slices[0].client == 1);
  CHECK(slices[0].name == "job1");
  CHECK(slices[0].start_us == t0);
  CHECK(slices[0].end_us == t0 + 10'000);
  CHECK(slices[1].client == 2);
  CHECK(slices[1].start_us == t0 + 10'000);
  CHECK_FALSE(slices[1].end_us.has_value());
  b.advance_ms(5);
  b.disconnect(2);
  CHECK(b.arb.timeline().back().end_us == t0 + 15'000);
  CHECK(b.arb.timeline(1).size() == 1);
  CHECK(b.arb.timeline(1)[0].client == 2);
}

TEST_CASE("the timeline is bounded, keeping the newest slices", "[arbiter][observability]") {
  ArbiterConfig cfg;
  cfg.timeline_capacity = 5;
  Bench b(cfg);
  b.arb.add_device("gpu0", 1000 * MiB);
  b.hello(1);
  for (int i = 0; i < 12; ++i) {
    REQUIRE(granted(b.acquire(1), 1));
    b.advance_ms(1);
    b.release(1);
  }
  REQUIRE(granted(b.acquire(1), 1));
  auto slices = b.arb.timeline();
  REQUIRE(slices.size() == 5);
  CHECK(slices[0].end_us.has_value());
  CHECK_FALSE(slices[4].end_us.has_value());
  for (std::size_t i = 1; i < slices.size(); ++i)
    CHECK(slices[i].start_us > slices[i - 1].start_us);
  b.advance_ms(1);
  b.release(1);
  CHECK(b.arb.timeline().back().end_us == b.now);
}

TEST_CASE("counters and the snapshot follow the events", "[arbiter][observability]") {
  ArbiterConfig cfg;
  cfg.quantum_ms = 10;
  Bench b(cfg);
  b.arb.add_device("gpu0", 1000 * MiB);
  b.hello(1, Priority::batch, 100 * MiB);
  b.hello(2, Priority::inference, 100 * MiB);
  b.hello(3, Priority::batch, 100 * MiB);
  REQUIRE(granted(b.acquire(1), 1));
  b.acquire(3);                         // share revoke of 1 (an equal class waits)
  b.advance_ms(10);
  b.tick_alive();                       // quantum revoke of 1
  b.acquire(2);                         // inference waits: the revoke's deadline is shortened
  b.arb.set_quota(3, 50 * MiB, b.now);  // reject of 3
  b.arb.validate();
  const ArbiterCounters& c = b.arb.counters();
  CHECK(c.grants == 1);
  CHECK(c.revokes == 3);
  CHECK(c.preemptions == 1);
  CHECK(c.rejects == 1);
  auto snap = b.arb.snapshot(b.now);
  REQUIRE(snap.devices.size() == 1);
  CHECK(snap.devices[0].holder == ClientId{1});
  CHECK(snap.devices[0].queue == std::vector<ClientId>{2});
  CHECK(snap.devices[0].resident_bytes == 100 * MiB);
  REQUIRE(snap.clients.size() == 3);
  CHECK(snap.clients[0].state == ClientState::revoked);
  CHECK(snap.clients[1].state == ClientState::waiting);
  CHECK(snap.clients[2].quota_bytes == 50 * MiB);
  CHECK(snap.clients[0].grants == 1);
}

TEST_CASE("a client's name is stored once: its slices and snapshots share it", "[arbiter][observability]") {
  Bench b;
  b.arb.add_device("gpu0", 1000 * MiB);
  HelloInfo info;
  info.name = std::string(256, 'x');
  REQUIRE(b.arb.on_hello(1, info, b.now).device);
  for (int i = 0; i < 100; ++i) {
    REQUIRE(granted(b.acquire(1), 1));
    b.advance_ms(1);
    b.release(1);
  }
  const auto slices = b.arb.timeline();
  REQUIRE(slices.size() == 100);
  CHECK(slices[0].name == info.name);
  // One buffer for all: 10000 leases of a 256-byte name cost 256 bytes, not 2.5 MB.
  for (const auto& s : slices) CHECK(s.name.shares_with(slices[0].name));
  CHECK(b.client(1).name.shares_with(slices[0].name));
}
