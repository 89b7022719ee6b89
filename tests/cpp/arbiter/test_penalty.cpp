// Revoke offences (policy_penalty.h): a holder that lets a revoke deadline
// pass waits behind its class for a while, and a repeated offender is
// disconnected; the record follows the user (uid), not the connection.
#include "arbiter_bench.h"
#include "broker_server/policy_penalty.h"

using namespace acb::broker;
using namespace acb::broker::test;

namespace {

ArbiterConfig offences_config() {
  ArbiterConfig cfg;
  cfg.quantum_ms = 100;
  cfg.quantum_deadline_ms = 200;
  cfg.revoke_grace_ms = 300;
  cfg.aging_ms = 0;
  cfg.heartbeat_timeout_ms = 60'000;
  cfg.revoke_penalty_ms = 5'000;
  cfg.revoke_offences_max = 2;
  cfg.revoke_offence_window_ms = 60'000;
  return cfg;
}

void hello_as(Bench& b, ClientId id, std::uint32_t uid) {
  HelloInfo info;
  info.name = "job" + std::to_string(id);
  info.uid = uid;
  REQUIRE(b.arb.on_hello(id, info, b.now).device);
}

// Client `holder` holds; `waiter` waits; the quantum revokes the holder, which
// lets the 200 ms deadline pass and releases within the grace.
void offend(Bench& b, ClientId holder, ClientId waiter) {
  REQUIRE(b.arb.has_client(holder));
  REQUIRE(granted(b.acquire(holder), holder));
  b.acquire(waiter);
  b.advance_ms(100);
  REQUIRE(for_client<Revoke>(b.tick_alive(), holder).size() == 1);
  b.advance_ms(250);  // past the deadline, inside the grace
  CHECK(all_of<Disconnect>(b.tick_alive()).empty());
  REQUIRE(granted(b.release(holder), waiter));
}

}  // namespace

TEST_CASE("a holder that missed a revoke deadline waits behind its class for the penalty period",
          "[arbiter][penalty]") {
  Bench b(offences_config());
  b.arb.add_device("gpu0", 1000 * MiB);
  hello_as(b, 1, 10);
  hello_as(b, 2, 20);
  hello_as(b, 3, 30);
  offend(b, 1, 2);
  // 1 queues before 3, yet 3 is granted first: 1 is behind every waiter of its class.
  b.acquire(1);
  b.advance_ms(1);
  b.acquire(3);
  CHECK(b.device(0).queue == std::vector<ClientId>{3, 1});
  CHECK(granted(b.release(2), 3));
  // The device falls free with only the offender waiting: it gets it once
  // nobody else came back for a quantum (100 ms), so a punctual client that
  // acquires again at once goes first.
  CHECK_FALSE(granted(b.release(3), 1));
  CHECK(b.arb.next_wakeup(b.now) == b.now + 100'000);
  b.advance_ms(50);
  CHECK(granted(b.acquire(3), 3));
  CHECK_FALSE(granted(b.release(3), 1));
  b.advance_ms(100);
  CHECK(granted(b.tick_alive(), 1));
  b.release(1);

  // After the penalty period its place is its own again.
  b.advance_ms(5'000);
  REQUIRE(granted(b.acquire(2), 2));
  b.acquire(1);
  b.advance_ms(1);
  b.acquire(3);
  CHECK(b.device(0).queue == std::vector<ClientId>{1, 3});
}

TEST_CASE("a repeated offender is disconnected when its grace ends, naming the limit", "[arbiter][penalty]") {
  Bench b(offences_config());
  b.arb.add_device("gpu0", 1000 * MiB);
  hello_as(b, 1, 10);
  hello_as(b, 2, 20);
  offend(b, 1, 2);
  b.release(2);
  b.acquire(1);
  b.advance_ms(100);  // penalised: the free device is its own once nobody came back for a quantum
  REQUIRE(granted(b.tick_alive(), 1));
  b.acquire(2);
  b.advance_ms(100);
  REQUIRE(for_client<Revoke>(b.tick_alive(), 1).size() == 1);
  // The second missed deadline reaches revoke_offences_max (2). A holder
  // that is only late may still be offloading, its memory on the device: it
  // is disconnected when the grace ends, not at the deadline.
  const TimeUs deadline = b.now + 200'000;
  b.advance_ms(200);
  b.now += 1;
  CHECK(all_of<Disconnect>(b.tick_alive()).empty());  // past the deadline, within the grace
  b.now = deadline + offences_config().revoke_grace_ms * 1000;
  const auto ds = b.tick_alive();
  const auto dis = for_client<Disconnect>(ds, 1);
  REQUIRE(dis.size() == 1);
  CHECK(dis[0].reason.find("missed 2 revoke deadlines") != std::string::npos);
  CHECK(dis[0].reason.find("revoke_offences_max") != std::string::npos);
  CHECK(granted(ds, 2));
}

TEST_CASE("the record belongs to the uid: a new connection of the same user is penalised too",
          "[arbiter][penalty]") {
  Bench b(offences_config());
  b.arb.add_device("gpu0", 1000 * MiB);
  hello_as(b, 1, 10);
  hello_as(b, 2, 20);
  // 1 ignores its revoke to the end: disconnected at deadline + grace (one offence).
  REQUIRE(granted(b.acquire(1), 1));
  b.acquire(2);
  b.advance_ms(100);
  b.tick_alive();
  b.advance_ms(500);
  const auto ds = b.tick_alive();
  REQUIRE(for_client<Disconnect>(ds, 1).size() == 1);
  REQUIRE(granted(ds, 2));
  hello_as(b, 4, 10);  // the same user again
  hello_as(b, 5, 50);
  b.acquire(4);
  b.advance_ms(1);
  b.acquire(5);
  CHECK(b.device(0).queue == std::vector<ClientId>{5, 4});
  // Without a known uid the record is the client's own.
  HelloInfo anonymous;
  REQUIRE(b.arb.on_hello(6, anonymous, b.now).device);
  b.acquire(6);
  CHECK(b.device(0).queue == std::vector<ClientId>{5, 6, 4});
}

TEST_CASE("offence records stay bounded and are forgotten once stale", "[arbiter][penalty]") {
  policy::RevokeOffences offences(1'000, 10'000, 3);
  for (TimeUs t = 0; t < 100; ++t) (void)offences.record({true, 7}, t);
  CHECK(offences.recent({true, 7}, 100) == 3);
  CHECK(offences.penalized({true, 7}, 500));
  CHECK_FALSE(offences.penalized({true, 7}, 2'000));
  CHECK_FALSE(offences.penalized({true, 8}, 500));
  (void)offences.record({false, 9}, 50'000);  // everything of uid 7 is stale by now
  CHECK(offences.offenders() == 1);
}
