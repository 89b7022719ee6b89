// Memory-aware grants: sized evictions, deferred grants, rejection, quota, growth, clamping.
#include "arbiter_bench.h"

using namespace acb::broker;
using namespace acb::broker::test;

namespace {
/// Gives `c` a lease and releases it leaving `resident` bytes on its device.
void hold_and_leave(Bench& b, ClientId c, std::uint64_t resident) {
  REQUIRE(granted(b.acquire(c), c));
  b.advance_ms(1);
  b.release(c, resident);
  REQUIRE(b.client(c).resident_bytes == resident);
}
std::uint64_t evicted_bytes(const Decisions& ds) {
  std::uint64_t total = 0;
  for (const Evict& e : all_of<Evict>(ds)) total += e.bytes;
  return total;
}
}  // namespace

TEST_CASE("idle residents stay on the device while the grantee fits", "[arbiter][memory]") {
  Bench b;
  b.arb.add_device("gpu0", 1000 * MiB);
  b.hello(1, Priority::training, 300 * MiB);
  b.hello(2, Priority::training, 500 * MiB);
  hold_and_leave(b, 1, 300 * MiB);
  auto ds = b.acquire(2);
  CHECK(all_of<Evict>(ds).empty());
  CHECK(granted(ds, 2));
  CHECK(b.device(0).resident_bytes == 800 * MiB);  // 300 resident + 500 reserved by the holder
}

TEST_CASE("evictions are exactly the deficit, lowest priority and least recently granted first",
          "[arbiter][memory]") {
  Bench b;
  b.arb.add_device("gpu0", 1000 * MiB);
  b.hello(1, Priority::batch);
  b.hello(2, Priority::inference);
  b.hello(3, Priority::batch);
  b.hello(4, Priority::training);
  b.hello(9, Priority::inference, 600 * MiB);
  hold_and_leave(b, 1, 100 * MiB);  // batch, granted first
  hold_and_leave(b, 2, 300 * MiB);  // inference
  hold_and_leave(b, 3, 150 * MiB);  // batch, granted later
  hold_and_leave(b, 4, 250 * MiB);  // training
  // 800 resident + 600 need = 1400: 400 must go.
  auto ds = b.acquire(9);
  CHECK_FALSE(granted(ds, 9));
  CHECK(b.state(9) == ClientState::waiting);
  auto ev = all_of<Evict>(ds);
  REQUIRE(ev.size() == 3);
  CHECK(ev[0].client == 1);
  CHECK(ev[0].bytes == 100 * MiB);
  CHECK(ev[1].client == 3);
  CHECK(ev[1].bytes == 150 * MiB);
  CHECK(ev[2].client == 4);
  CHECK(ev[2].bytes == 150 * MiB);
  CHECK(evicted_bytes(ds) == 400 * MiB);
  CHECK(b.arb.counters().evict_requests == 3);
  CHECK(b.arb.counters().evict_requested_bytes == 400 * MiB);

  SECTION("the grant waits for the reports, and nothing is asked twice meanwhile") {
    b.advance_ms(5);
    CHECK(b.tick_alive().empty());
    CHECK(b.acquire(9).empty());
    CHECK(b.residency(1, 0).empty());
    CHECK(b.residency(3, 0).empty());
    auto last = b.residency(4, 100 * MiB);
    REQUIRE(granted(last, 9));
    CHECK(for_client<Grant>(last, 9)[0].waited_us == 5'000);
    CHECK(b.device(0).resident_bytes == 1000 * MiB);
  }
  SECTION("a short report is followed by a request for exactly the rest") {
    b.residency(1, 0);
    b.residency(3, 0);
    auto ds2 = b.residency(4, 150 * MiB);  // evicted 100 of the 150 asked
    CHECK_FALSE(granted(ds2, 9));
    CHECK(evicted_bytes(ds2) == 50 * MiB);
    auto ev2 = all_of<Evict>(ds2);
    REQUIRE(ev2.size() == 1);
    CHECK(ev2[0].client == 4);  // the only batch/training resident left with bytes
    CHECK(granted(b.residency(4, 100 * MiB), 9));
  }
}

TEST_CASE("a client that released nothing when asked is left alone for a while, or until it reports",
          "[arbiter][memory]") {
  // E.g. memory exported to another library, which must stay resident: asking
  // again at once would get the same answer, in a loop as fast as both can.
  Bench b;
  b.arb.add_device("gpu0", 1000 * MiB);
  b.hello(1, Priority::training);
  b.hello(2, Priority::training, 600 * MiB);
  hold_and_leave(b, 1, 700 * MiB);
  auto ds = b.acquire(2);
  REQUIRE(evicted_bytes(ds) == 300 * MiB);
  auto short_report = b.residency(1, 500 * MiB);  // released 200 of the 300: asked for the rest
  CHECK(evicted_bytes(short_report) == 100 * MiB);
  auto nothing = b.residency(1, 500 * MiB);       // released nothing: not asked again
  CHECK(all_of<Evict>(nothing).empty());
  CHECK_FALSE(granted(nothing, 2));
  b.advance_ms(5);
  CHECK(all_of<Evict>(b.tick_alive()).empty());
  auto unasked = b.residency(1, 500 * MiB);       // it can give more now: asked once more
  CHECK(evicted_bytes(unasked) == 100 * MiB);
  CHECK(all_of<Evict>(b.residency(1, 500 * MiB)).empty());  // nothing again: left alone
  b.advance_ms(60);                                          // ... until the hold-off is over
  CHECK(evicted_bytes(b.tick_alive()) == 100 * MiB);
  CHECK(granted(b.residency(1, 400 * MiB), 2));
}

TEST_CASE("the grantee's own residency counts toward its need", "[arbiter][memory]") {
  Bench b;
  b.arb.add_device("gpu0", 1000 * MiB);
  b.hello(1, Priority::batch);
  b.hello(2, Priority::training, 400 * MiB);
  hold_and_leave(b, 2, 300 * MiB);
  hold_and_leave(b, 1, 700 * MiB);
  // 700 others + max(400 need, 300 own) = 1100: only 100 must go, not 400.
  auto ds = b.acquire(2);
  CHECK(evicted_bytes(ds) == 100 * MiB);
  REQUIRE(for_client<Evict>(ds, 1).size() == 1);
  CHECK(granted(b.residency(1, 600 * MiB), 2));
}

TEST_CASE("a need above the device capacity or the quota is rejected, not queued",
          "[arbiter][memory]") {
  Bench b;
  b.arb.add_device("gpu0", 1000 * MiB);
  b.hello(1, Priority::training, 2000 * MiB);
  auto ds = b.acquire(1);
  auto rej = for_client<Reject>(ds, 1);
  REQUIRE(rej.size() == 1);
  CHECK(rej[0].reason.find("capacity") != std::string::npos);
  CHECK(rej[0].reason.find(std::to_string(2000 * MiB)) != std::string::npos);
  CHECK(b.state(1) == ClientState::idle);
  CHECK(b.arb.counters().rejects == 1);
  // A smaller need is fine afterwards.
  CHECK(granted(b.acquire(1, 500 * MiB), 1));
  b.release(1);

  b.arb.set_quota(1, 200 * MiB, b.now);
  auto q = for_client<Reject>(b.acquire(1, 300 * MiB), 1);
  REQUIRE(q.size() == 1);
  CHECK(q[0].reason.find("quota") != std::string::npos);
  CHECK(b.state(1) == ClientState::idle);
  CHECK(granted(b.acquire(1, 200 * MiB), 1));
}

TEST_CASE("set_quota below a waiter's need rejects it; residency over quota is evicted",
          "[arbiter][memory]") {
  Bench b;
  b.arb.add_device("gpu0", 1000 * MiB);
  b.hello(1);
  b.hello(2, Priority::training, 300 * MiB);
  b.hello(3);
  REQUIRE(granted(b.acquire(1), 1));
  b.acquire(2);
  auto ds = b.arb.set_quota(2, 100 * MiB, b.now);
  b.arb.validate();
  CHECK(for_client<Reject>(ds, 2).size() == 1);
  CHECK(b.state(2) == ClientState::idle);
  CHECK(b.device(0).queue.empty());

  b.release(1);
  hold_and_leave(b, 3, 400 * MiB);
  auto ev = for_client<Evict>(b.arb.set_quota(3, 250 * MiB, b.now), 3);
  b.arb.validate();
  REQUIRE(ev.size() == 1);
  CHECK(ev[0].bytes == 150 * MiB);
  // A report above the quota is asked back, and accounted until it is gone:
  // the bytes are really on the device.
  auto ev2 = for_client<Evict>(b.residency(3, 300 * MiB), 3);
  REQUIRE(ev2.size() == 1);
  CHECK(ev2[0].bytes == 50 * MiB);
  CHECK(b.client(3).resident_bytes == 300 * MiB);
  CHECK(b.residency(3, 250 * MiB).empty());
}

TEST_CASE("growth while holding: evict what no longer fits, then a fresh grant",
          "[arbiter][memory]") {
  Bench b;
  b.arb.add_device("gpu0", 1000 * MiB);
  b.hello(1, Priority::batch);
  b.hello(2, Priority::training, 200 * MiB);
  hold_and_leave(b, 1, 700 * MiB);
  auto g = for_client<Grant>(b.acquire(2), 2);
  REQUIRE(g.size() == 1);
  const auto lease = g[0].lease;

  auto ds = b.acquire(2, 500 * MiB);  // 700 + 500 = 1200: 200 must go
  CHECK_FALSE(granted(ds, 2));
  CHECK(evicted_bytes(ds) == 200 * MiB);
  CHECK(for_client<Evict>(ds, 1).size() == 1);
  CHECK(b.client(2).need_bytes == 200 * MiB);  // the old need stands until it fits
  CHECK(b.state(2) == ClientState::holding);
  auto regrant = for_client<Grant>(b.residency(1, 500 * MiB), 2);
  REQUIRE(regrant.size() == 1);
  CHECK(regrant[0].lease == lease);
  CHECK(regrant[0].waited_us == 0);
  CHECK(b.client(2).need_bytes == 500 * MiB);
  CHECK(b.arb.counters().grants == 2);  // leases, not re-grants

  SECTION("growth past the capacity is rejected and the lease stands") {
    auto rej = for_client<Reject>(b.acquire(2, 1500 * MiB), 2);
    REQUIRE(rej.size() == 1);
    CHECK(b.state(2) == ClientState::holding);
    CHECK(b.client(2).need_bytes == 500 * MiB);
  }
  SECTION("growth past the quota is rejected") {
    b.arb.set_quota(2, 600 * MiB, b.now);
    CHECK(for_client<Reject>(b.acquire(2, 700 * MiB), 2).size() == 1);
    CHECK(b.state(2) == ClientState::holding);
  }
  SECTION("growth that fits is granted at once") {
    b.residency(1, 0);
    CHECK(for_client<Grant>(b.acquire(2, 900 * MiB), 2).size() == 1);
    CHECK(b.device(0).resident_bytes == 900 * MiB);
  }
}

TEST_CASE("a residency report over the capacity is clamped and the excess evicted",
          "[arbiter][memory]") {
  Bench b;
  b.arb.add_device("gpu0", 1000 * MiB);
  b.hello(1);
  b.hello(2, Priority::training, 600 * MiB);
  REQUIRE(granted(b.acquire(2), 2));
  // 600 reserved by the holder: an idle client claiming 700 gets 400 accounted.
  auto ev = for_client<Evict>(b.residency(1, 700 * MiB), 1);
  REQUIRE(ev.size() == 1);
  CHECK(ev[0].bytes == 300 * MiB);
  CHECK(b.client(1).resident_bytes == 400 * MiB);
  CHECK(b.device(0).resident_bytes == 1000 * MiB);
  // The holder itself reporting more than the capacity.
  auto ev2 = for_client<Evict>(b.residency(2, 5000 * MiB), 2);
  REQUIRE(ev2.size() == 1);
  CHECK(ev2[0].bytes == 4400 * MiB);
  CHECK(b.device(0).resident_bytes <= 1000 * MiB);
}

TEST_CASE("bytes reported beyond the capacity keep a grant from counting on them until reported gone",
          "[arbiter][memory]") {
  Bench b;
  b.arb.add_device("gpu0", 1000 * MiB);
  b.hello(1);
  b.hello(2);
  b.hello(3);
  b.residency(1, 700 * MiB);
  // A report from before client 1's last one reached the broker: only 300 fit as accounted.
  REQUIRE(for_client<Evict>(b.residency(2, 500 * MiB), 2).size() == 1);
  CHECK(b.client(2).resident_bytes == 300 * MiB);
  b.residency(1, 400 * MiB);  // client 1 freed memory: 400 + 300 accounted
  // 300 would fit as accounted, but client 2 still has 500 on the device until it says otherwise.
  Decisions ds = b.acquire(3, 300 * MiB);
  CHECK_FALSE(granted(ds, 3));
  CHECK(for_client<Evict>(ds, 2).empty());  // its excess is already asked back
  ds = b.residency(2, 300 * MiB);           // it evicted the excess
  CHECK(granted(ds, 3));
}

TEST_CASE("pinned residency (acb.disable()) is counted and never asked to evict",
          "[arbiter][memory]") {
  Bench b;
  b.arb.add_device("gpu0", 1000 * MiB);
  b.hello(1, Priority::batch);
  b.hello(2, Priority::training, 500 * MiB);
  b.hello(3, Priority::training, 200 * MiB);
  REQUIRE(granted(b.acquire(1), 1));
  b.advance_ms(1);
  // Client 1 runs on without the gate: its 600 MiB stay, whatever comes.
  CHECK(all_of<Evict>(b.release(1, 600 * MiB, /*pinned=*/true)).empty());
  CHECK(b.client(1).resident_bytes == 600 * MiB);

  SECTION("a waiter that does not fit beside it waits, with nothing asked of it") {
    auto ds = b.acquire(2);  // 600 + 500 > 1000
    CHECK_FALSE(granted(ds, 2));
    CHECK(all_of<Evict>(ds).empty());
    CHECK(b.state(2) == ClientState::waiting);
    CHECK(all_of<Evict>(b.residency(1, 650 * MiB, /*pinned=*/true)).empty());  // it grew
    CHECK(all_of<Evict>(b.tick_alive()).empty());
    // Enabled again: its memory is evictable, and the waiter gets it.
    auto ev = for_client<Evict>(b.residency(1, 650 * MiB), 1);
    REQUIRE(ev.size() == 1);
    CHECK(ev[0].bytes == 150 * MiB);
    CHECK(granted(b.residency(1, 500 * MiB), 2));
  }
  SECTION("a growth that cannot fit beside it is rejected, not left waiting") {
    REQUIRE(granted(b.acquire(3), 3));  // 600 + 200 fits
    CHECK(for_client<Reject>(b.acquire(3, 450 * MiB), 3).size() == 1);
    CHECK(b.state(3) == ClientState::holding);
    CHECK(b.client(3).need_bytes == 200 * MiB);
    // One that fits beside it is granted.
    CHECK(for_client<Grant>(b.acquire(3, 400 * MiB), 3).size() == 1);
  }
  SECTION("a report without the flag makes it evictable again") {
    auto ds = b.acquire(2);
    CHECK(all_of<Evict>(ds).empty());
    auto ev = for_client<Evict>(b.release(1, 600 * MiB), 1);
    REQUIRE(ev.size() == 1);
    CHECK(ev[0].bytes == 100 * MiB);
  }
}

TEST_CASE("a need above every device is refused and never stored to skew placement",
          "[arbiter][memory]") {
  Bench b;
  b.arb.add_device("gpu0", 1000 * MiB);
  b.arb.add_device("gpu1", 1000 * MiB);
  b.hello(1, Priority::training, 5000 * MiB);
  CHECK(b.arb.device_of(1) == 0);
  CHECK(b.client(1).need_bytes == 0);  // refused, not stored
  b.hello(2, Priority::training, 100 * MiB);
  CHECK(b.arb.device_of(2) == 1);
  // Device 0 counts no declared need: a newcomer is not pushed away from it.
  b.hello(3);
  CHECK(b.arb.device_of(3) == 0);
  // The refused need still answers its acquire, with the reason.
  auto rej = for_client<Reject>(b.acquire(1), 1);
  REQUIRE(rej.size() == 1);
  CHECK(rej[0].reason.find(std::to_string(5000 * MiB)) != std::string::npos);
  CHECK(b.state(1) == ClientState::idle);
  // An acquire's need above the device is refused the same way: the old need stays.
  REQUIRE(for_client<Reject>(b.acquire(3, 2000 * MiB), 3).size() == 1);
  CHECK(b.client(3).need_bytes == 0);
  CHECK(b.state(3) == ClientState::idle);
}
