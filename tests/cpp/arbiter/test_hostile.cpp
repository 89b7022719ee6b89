// Arbitrary event sequences, including nonsense (unknown clients and devices,
// huge or zero sizes, reports over the capacity, time going backwards a
// little, admin calls on things that do not exist): the arbiter keeps its
// invariants, answers bad admin calls with ArbiterError, and never crashes.
#include <random>

#include "arbiter_bench.h"

using namespace acb::broker;
using namespace acb::broker::test;

TEST_CASE("arbitrary event sequences keep every invariant", "[arbiter][hostile]") {
  for (std::uint32_t seed : {1u, 2u, 3u}) {
    std::mt19937_64 rng(seed);
    auto pick = [&](std::uint64_t lo, std::uint64_t hi) {
      return std::uniform_int_distribution<std::uint64_t>(lo, hi)(rng);
    };
    auto size = [&]() -> std::uint64_t {
      switch (pick(0, 4)) {
        case 0:
          return 0;
        case 1:
          return pick(0, 4096) * MiB;
        case 2:
          return ~std::uint64_t{0} / 2;
        default:
          return pick(0, 1000) * MiB;
      }
    };
    ArbiterConfig cfg;
    cfg.quantum_ms = 5;
    cfg.preempt_deadline_ms = 2;
    cfg.quantum_deadline_ms = 5;
    cfg.revoke_grace_ms = 5;
    cfg.aging_ms = 10;
    cfg.heartbeat_timeout_ms = 200;
    cfg.timeline_capacity = 50;
    Arbiter arb(cfg);
    arb.add_device("a", 1024 * MiB);
    arb.add_device("b", 2048 * MiB);
    TimeUs now = 1'000'000;
    std::uint64_t bad_admin = 0, grants = 0, quiet_ticks = 0;
    std::optional<TimeUs> wake;
    for (int i = 0; i < 4000; ++i) {
      now += pick(0, 2000);
      const ClientId c = pick(1, 40);
      Decisions ds;
      try {
        switch (pick(0, 14)) {
          case 0: {
            HelloInfo info;
            info.name = "h" + std::to_string(c);
            info.priority = static_cast<Priority>(pick(0, 2));
            info.need_bytes = size();
            if (pick(0, 3) == 0) info.pinned_device = static_cast<DeviceId>(pick(0, 6)) - 1;
            const Placement p = arb.on_hello(c, info, now);
            CHECK(p.device.has_value() != !p.error.empty());
            break;
          }
          case 1:
          case 2:
            ds = arb.on_acquire(c, pick(0, 1) ? std::optional<std::uint64_t>{} : size(), now);
            break;
          case 3:
          case 4:
            ds = arb.on_release(c, pick(0, 1) ? std::optional<std::uint64_t>{} : size(), now);
            break;
          case 5:
            ds = arb.on_residency(c, size(), now);
            break;
          case 6:
            arb.on_heartbeat(c, now);
            break;
          case 7:
            ds = arb.on_disconnect(c, now);
            break;
          case 8:
          case 9:
            ds = arb.on_tick(now);
            // Everything an event allows is decided at the event: a tick
            // before next_wakeup has nothing to do, so the server may sleep.
            if (!wake || now < *wake) {
              ++quiet_ticks;
              CHECK(ds.empty());
            }
            break;
          case 10:
            ds = arb.set_priority(c, static_cast<Priority>(pick(0, 2)), now);
            break;
          case 11:
            ds = arb.set_quota(c, size(), now);
            break;
          case 12:
            ds = arb.set_quantum(pick(0, 20), now);
            break;
          case 13: {
            const DeviceId d = static_cast<DeviceId>(pick(0, 8));
            if (pick(0, 3) == 0)
              arb.add_device("x", size());
            else
              ds = pick(0, 1) ? arb.drain_device(d, now) : arb.remove_device(d, now);
            break;
          }
          default:
            (void)arb.next_wakeup(now);
            (void)arb.snapshot(now);
            (void)arb.timeline();
            break;
        }
      } catch (const ArbiterError& e) {
        ++bad_admin;
        CHECK(std::string(e.what()).find(':') != std::string::npos);  // names the call
      }
      arb.validate();
      for (const Decision& d : ds) {
        if (const Grant* g = std::get_if<Grant>(&d)) {
          ++grants;
          CHECK(arb.has_client(g->client));
          CHECK(arb.device_of(g->client) == g->device);
        }
        if (const Evict* e = std::get_if<Evict>(&d)) CHECK(e->bytes > 0);
        if (const Reject* r = std::get_if<Reject>(&d)) CHECK_FALSE(r->reason.empty());
        if (const Disconnect* x = std::get_if<Disconnect>(&d))
          CHECK_FALSE(arb.has_client(x->client));
      }
      wake = arb.next_wakeup(now);
      if (wake) CHECK(*wake >= now);
      CHECK(arb.timeline().size() <= 50);
    }
    CHECK(bad_admin > 0);
    CHECK(grants > 0);
    CHECK(quiet_ticks > 0);
  }
}
