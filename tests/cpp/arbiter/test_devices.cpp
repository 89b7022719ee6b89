// Several devices: placement, pinning, drain, remove, add at runtime.
#include "arbiter_bench.h"

using namespace acb::broker;
using namespace acb::broker::test;

TEST_CASE("new clients go to the least contended device; pinning overrides", "[arbiter][devices]") {
  Bench b;
  const DeviceId d0 = b.arb.add_device("gpu0", 1000 * MiB);
  const DeviceId d1 = b.arb.add_device("gpu1", 1000 * MiB);
  const DeviceId small = b.arb.add_device("small", 100 * MiB);
  b.hello(1, Priority::training, 500 * MiB);
  CHECK(b.arb.device_of(1) == d0);  // 0 and 1 tie, small cannot hold 500
  b.hello(2, Priority::training, 500 * MiB);
  CHECK(b.arb.device_of(2) == d1);
  b.hello(3, Priority::training, 50 * MiB);
  CHECK(b.arb.device_of(3) == small);
  b.hello(4, Priority::training, 50 * MiB, d0);
  CHECK(b.arb.device_of(4) == d0);
  // d0 now has 2 clients, d1 and small 1 each; a waiter on d1 makes it busier.
  REQUIRE(granted(b.acquire(2), 2));
  b.hello(5, Priority::training, 600 * MiB);
  b.acquire(5);
  CHECK(b.arb.device_of(5) == d1);  // 1 client + 1.1 of memory beats 2 clients + 1.15
  b.hello(6, Priority::training, 10 * MiB);
  CHECK(b.arb.device_of(6) == small);
  // A need no device can hold is placed anyway; its acquire says why.
  b.hello(7, Priority::training, 5000 * MiB);
  CHECK(for_client<Reject>(b.acquire(7), 7).size() == 1);
}

TEST_CASE("pinning to an unknown or draining device is an error in the placement",
          "[arbiter][devices]") {
  Bench b;
  HelloInfo info;
  info.name = "x";
  CHECK(b.arb.on_hello(1, info, b.now).error == "no device to place the client on");
  b.arb.add_device("gpu0", 1000 * MiB);
  b.arb.add_device("gpu1", 1000 * MiB);
  info.pinned_device = 5;
  auto p = b.arb.on_hello(1, info, b.now);
  CHECK_FALSE(p.device.has_value());
  CHECK(p.error == "device 5 does not exist");
  b.arb.drain_device(1, b.now);
  info.pinned_device = 1;
  p = b.arb.on_hello(1, info, b.now);
  CHECK_FALSE(p.device.has_value());
  CHECK(p.error == "device 1 is draining");
  CHECK_FALSE(b.arb.has_client(1));
  info.pinned_device.reset();
  CHECK(b.arb.on_hello(1, info, b.now).device == DeviceId{0});  // placement skips draining devices
  b.arb.drain_device(0, b.now);
  CHECK(b.arb.on_hello(2, info, b.now).error == "every device is draining");
  b.arb.validate();
}

TEST_CASE("drain while held: the holder is revoked, waiters and residents leave",
          "[arbiter][devices]") {
  ArbiterConfig cfg;
  cfg.quantum_deadline_ms = 700;
  Bench b(cfg);
  b.arb.add_device("gpu0", 1000 * MiB);
  b.arb.add_device("gpu1", 1000 * MiB);
  b.hello(1, Priority::training, 100 * MiB, 0);
  b.hello(2, Priority::training, 100 * MiB, 0);
  b.hello(3, Priority::batch, 100 * MiB, 0);
  b.hello(4, Priority::training, 100 * MiB, 0);
  REQUIRE(granted(b.acquire(3), 3));
  b.release(3, 200 * MiB);  // an idle resident
  REQUIRE(granted(b.acquire(1), 1));
  b.acquire(2);
  auto ds = b.arb.drain_device(0, b.now);
  b.arb.validate();
  auto rev = for_client<Revoke>(ds, 1);
  REQUIRE(rev.size() == 1);
  CHECK(rev[0].reason == RevokeReason::drain);
  CHECK(rev[0].deadline_ms == 700);
  CHECK(granted(ds, 2));  // moved to gpu1, which is free
  CHECK(b.arb.device_of(2) == DeviceId{1});
  CHECK(b.arb.device_of(4) == DeviceId{1});  // idle with nothing resident: moved at once
  auto ev = for_client<Evict>(ds, 3);
  REQUIRE(ev.size() == 1);
  CHECK(ev[0].bytes == 200 * MiB);  // everything it keeps on the draining device
  CHECK(b.arb.device_of(3) == DeviceId{0});
  CHECK(b.device(0).draining);
  // No new grants on the drained device.
  CHECK(b.residency(3, 0).empty());
  CHECK(b.arb.device_of(3) == DeviceId{1});
  auto after = b.release(1);
  CHECK(all_of<Grant>(after).empty());
  CHECK(b.arb.device_of(1) == DeviceId{1});
  CHECK(b.device(0).queue.empty());
  CHECK_FALSE(b.device(0).holder.has_value());
}

TEST_CASE("drain with no other device rejects the waiters", "[arbiter][devices]") {
  Bench b;
  b.arb.add_device("gpu0", 1000 * MiB);
  b.hello(1);
  b.hello(2);
  REQUIRE(granted(b.acquire(1), 1));
  b.acquire(2);
  auto ds = b.arb.drain_device(0, b.now);
  b.arb.validate();
  CHECK(for_client<Revoke>(ds, 1).size() == 1);
  auto rej = for_client<Reject>(ds, 2);
  REQUIRE(rej.size() == 1);
  CHECK(rej[0].reason.find("draining") != std::string::npos);
  CHECK(b.state(2) == ClientState::idle);
  CHECK(for_client<Reject>(b.acquire(2), 2).size() == 1);
  CHECK(all_of<Grant>(b.release(1)).empty());
  // A new device takes them.
  b.arb.add_device("gpu1", 1000 * MiB);
  auto ds2 = b.acquire(2);
  CHECK(granted(ds2, 2));
  CHECK(b.arb.device_of(2) == DeviceId{1});
}

TEST_CASE("remove_device while held: forgotten once its last client has left",
          "[arbiter][devices]") {
  Bench b;
  b.arb.add_device("gpu0", 1000 * MiB);
  b.arb.add_device("gpu1", 1000 * MiB);
  b.hello(1, Priority::training, 0, 0);
  b.hello(2, Priority::training, 0, 0);
  REQUIRE(granted(b.acquire(1), 1));
  b.release(1, 0);
  b.acquire(2);
  b.residency(1, 300 * MiB);
  auto ds = b.arb.remove_device(0, b.now);
  b.arb.validate();
  CHECK(for_client<Revoke>(ds, 2).size() == 1);
  CHECK(for_client<Evict>(ds, 1).size() == 1);
  CHECK(b.arb.snapshot(b.now).devices.size() == 2);  // still there: clients remain
  b.residency(1, 0);
  CHECK(b.arb.device_of(1) == DeviceId{1});
  CHECK(b.arb.snapshot(b.now).devices.size() == 2);
  b.release(2);
  CHECK(b.arb.device_of(2) == DeviceId{1});
  auto snap = b.arb.snapshot(b.now);
  REQUIRE(snap.devices.size() == 1);
  CHECK(snap.devices[0].device == 1);
  CHECK_THROWS_AS(b.arb.capacity_of(0), ArbiterError);
  CHECK(granted(b.acquire(2), 2));
}

TEST_CASE("removing an empty device forgets it at once; ids are not reused", "[arbiter][devices]") {
  Bench b;
  b.arb.add_device("gpu0", 1000 * MiB);
  CHECK(b.arb.remove_device(0, b.now).empty());
  b.arb.validate();
  CHECK(b.arb.snapshot(b.now).devices.empty());
  CHECK(b.arb.add_device("gpu0again", 10 * MiB) == 1);
  CHECK(b.arb.capacity_of(1) == 10 * MiB);
}

TEST_CASE("a waiter with memory on a draining device moves once it has evicted it",
          "[arbiter][devices]") {
  Bench b;
  b.arb.add_device("gpu0", 1000 * MiB);
  b.arb.add_device("gpu1", 1000 * MiB);
  b.hello(1, Priority::training, 0, 0);
  b.hello(2, Priority::training, 100 * MiB, 0);
  REQUIRE(granted(b.acquire(2), 2));
  b.release(2, 300 * MiB);
  REQUIRE(granted(b.acquire(1), 1));
  b.acquire(2);
  auto ds = b.arb.drain_device(0, b.now);
  b.arb.validate();
  auto ev = for_client<Evict>(ds, 2);
  REQUIRE(ev.size() == 1);
  CHECK(ev[0].bytes == 300 * MiB);
  CHECK(b.state(2) == ClientState::waiting);
  CHECK(b.arb.device_of(2) == DeviceId{0});  // its memory is still there
  CHECK_FALSE(granted(b.residency(2, 100 * MiB), 2));
  CHECK(b.arb.device_of(2) == DeviceId{0});
  auto moved = b.residency(2, 0);
  CHECK(b.arb.device_of(2) == DeviceId{1});
  auto g = for_client<Grant>(moved, 2);
  REQUIRE(g.size() == 1);
  CHECK(g[0].device == 1);
}

TEST_CASE("a removed device with clients that cannot move stays until they disconnect", "[arbiter][devices]") {
  Bench b;
  b.arb.add_device("gpu0", 1000 * MiB);
  b.arb.add_device("small", 10 * MiB);
  b.hello(1, Priority::training, 500 * MiB, 0);
  b.hello(2, Priority::training, 5 * MiB, 0);
  b.arb.remove_device(0, b.now);
  b.arb.validate();
  CHECK(b.arb.device_of(1) == DeviceId{0});  // 500 MiB fits nowhere else
  CHECK(b.arb.device_of(2) == DeviceId{1});  // moved at once
  auto rej = for_client<Reject>(b.acquire(1), 1);
  REQUIRE(rej.size() == 1);
  CHECK(rej[0].reason == "device 0 is draining and no other device can take " + std::to_string(500 * MiB) + " bytes");
  CHECK(b.arb.snapshot(b.now).devices.size() == 2);
  b.disconnect(1);
  auto snap = b.arb.snapshot(b.now);
  REQUIRE(snap.devices.size() == 1);
  CHECK(snap.devices[0].device == 1);
}

TEST_CASE("a fixed client is never moved off its draining device; its acquire says why",
          "[arbiter][devices]") {
  Bench b;
  b.arb.add_device("gpu0", 1000 * MiB);
  b.arb.add_device("gpu1", 1000 * MiB);
  auto hello_fixed = [&](ClientId id) {  // its process computes on GPU 0
    HelloInfo info;
    info.name = "job" + std::to_string(id);
    info.pinned_device = DeviceId{0};
    info.fixed = true;
    REQUIRE(b.arb.on_hello(id, info, b.now).device == std::optional<DeviceId>(0));
  };
  hello_fixed(1);
  hello_fixed(2);
  b.hello(3, Priority::training);                   // placed by the broker
  REQUIRE(b.arb.device_of(3) == DeviceId{1});
  REQUIRE(granted(b.acquire(1), 1));
  auto ds = b.arb.drain_device(0, b.now);
  b.arb.validate();
  CHECK(for_client<Revoke>(ds, 1).size() == 1);
  CHECK(all_of<Grant>(b.release(1)).empty());
  CHECK(b.arb.device_of(1) == DeviceId{0});          // stays with its GPU
  auto rej = for_client<Reject>(b.acquire(2), 2);
  REQUIRE(rej.size() == 1);
  CHECK(rej[0].reason.find("fixed") != std::string::npos);
  CHECK(b.arb.device_of(2) == DeviceId{0});
  // A pinned client that is not fixed would have moved (see above); the
  // fixed ones keep the device alive until they leave.
  b.disconnect(1);
  b.disconnect(2);
  CHECK(b.device(0).draining);
}
