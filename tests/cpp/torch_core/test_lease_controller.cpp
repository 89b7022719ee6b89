// LeaseController (csrc/torch/lease_controller.h) against the client tests'
// FakeBroker on loopback, with an arena on a uniquely named emulated device:
// acquire restores offloaded memory before the op runs, a revoke is honoured
// at the idle gap or past its deadline at the next op boundary (memory stays
// resident; one without a deadline waits for the idle gap however long the
// process stays busy, until a later revoke adds a deadline), an evict while
// not holding offloads and reports residency (one read after the grant
// leaves memory as it is), the out-of-memory handler asks for a larger
// need, and waits are counted.
// Every wait is bounded; assertions run on the main thread only.
#include <algorithm>
#include <array>
#include <atomic>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <thread>

#include "acb_catch.hpp"
#include "alloc/arena.h"
#include "arena_test_support.h"
#include "fake_broker.h"
#include "torch/gate.h"
#include "torch/lease_controller.h"
#include "wait_until.h"

using acb::alloc::Arena;
using acb::alloc::OutOfMemory;
using acb::alloc::testing::EmulatedDevice;
using acb::alloc::testing::has_pattern;
using acb::alloc::testing::kMiB;
using acb::alloc::testing::write_pattern;
using acb::client::LeaseRejected;
using acb::test::FakeBroker;
using acb::test::Latch;
using acb::test::wait_until;
using acb::torch_hook::ControllerOptions;
using acb::torch_hook::Gate;
using acb::torch_hook::LeaseController;
using acb::torch_hook::LeaseState;
using namespace std::chrono_literals;

namespace {

// One process's torch core: broker connection, arena, gate, controller.
// Declaration order is teardown order reversed: the controller goes first.
struct Rig {
  explicit Rig(const std::string& tag, std::size_t capacity_bytes = 64 * kMiB,
               std::chrono::milliseconds idle_gap = 10ms,
               const std::function<void(ControllerOptions&)>& adjust = nullptr)
      : device(tag, capacity_bytes), arena(device.driver, 0) {
    grant_every_acquire();
    ControllerOptions options;
    options.client.port = broker.port();
    options.client.token = "test-token";
    options.client.name = tag;
    options.client.connect_timeout = 2000ms;
    options.idle_gap = idle_gap;
    if (adjust) adjust(options);
    controller = std::make_unique<LeaseController>(arena, gate, options);
  }

  void grant_every_acquire() {
    broker.set_handler([lease = lease](FakeBroker& b, int conn, const nlohmann::json& m) {
      if (m["op"] == "acquire") b.send(conn, {{"op", "grant"}, {"device", 0}, {"lease", ++*lease}, {"quantum_ms", 50}});
    });
  }

  void revoke(std::uint64_t deadline_ms) {
    broker.send(0, {{"op", "revoke"}, {"device", 0}, {"lease", lease->load()},
                    {"deadline_ms", deadline_ms}, {"reason", "another job waits"}});
  }

  /// A revoke for a lower class: no deadline, give the device away at the next idle gap.
  void share() {
    broker.send(0, {{"op", "revoke"}, {"device", 0}, {"lease", lease->load()}, {"reason", "share"}});
  }

  void run_op() {
    gate.enter();
    gate.exit();
  }

  std::shared_ptr<std::atomic<std::uint64_t>> lease = std::make_shared<std::atomic<std::uint64_t>>(0);
  FakeBroker broker;
  EmulatedDevice device;
  Arena arena;
  Gate gate;
  std::unique_ptr<LeaseController> controller;
};

/// An operator that runs on its own thread until finish(): the process stays
/// busy (no idle gap) meanwhile.
class LongOp {
 public:
  explicit LongOp(Gate& gate) {
    thread_ = std::thread([this, &gate] {
      gate.enter();
      entered_.open();
      finish_.wait();
      gate.exit();
    });
    REQUIRE(entered_.wait());
  }
  ~LongOp() { finish(); }
  LongOp(const LongOp&) = delete;
  LongOp& operator=(const LongOp&) = delete;

  void finish() {
    if (!thread_.joinable()) return;
    finish_.open();
    thread_.join();
  }

 private:
  Latch entered_, finish_;
  std::thread thread_;
};

}  // namespace

TEST_CASE("the first op acquires with the arena's peak as need and restores offloaded memory first",
          "[lease]") {
  Rig rig("lc-restore");
  void* p = rig.arena.malloc(kMiB, nullptr);
  write_pattern(rig.device.driver, p, kMiB, 11);
  const std::uint64_t peak = rig.arena.stats().reserved_bytes_peak;
  REQUIRE(peak >= kMiB);
  rig.arena.offload();
  REQUIRE(rig.arena.resident_bytes() == 0);
  CHECK(rig.controller->status().lease_state == "released");

  rig.gate.enter();
  const bool intact = has_pattern(rig.device.driver, p, kMiB, 11);
  const std::size_t resident_in_op = rig.arena.resident_bytes();
  const LeaseState state_in_op = rig.gate.state();
  rig.gate.exit();
  CHECK(intact);
  CHECK(resident_in_op >= kMiB);
  CHECK(state_in_op == LeaseState::holding);

  const auto acquire = rig.broker.wait_for("acquire");
  REQUIRE(acquire);
  CHECK((*acquire)["need_bytes"].get<std::uint64_t>() == peak);
  const auto s = rig.controller->status();
  CHECK(s.lease_state == "holding");
  CHECK(s.client_id == 100);
  CHECK(s.switches == 1);
  CHECK(s.waits == 1);
  CHECK(s.restored_bytes >= kMiB);
  CHECK(s.offloaded_bytes == 0);
  rig.arena.free(p, nullptr);
}

TEST_CASE("a grant too small to restore into is given back and asked for again with the need that fits",
          "[lease][oom]") {
  Rig rig("lc-restore-oom", 8 * kMiB);
  void* mine = rig.arena.malloc(4 * kMiB, nullptr);
  write_pattern(rig.device.driver, mine, 4 * kMiB, 51);
  rig.arena.offload();
  REQUIRE(rig.arena.resident_bytes() == 0);
  // Another resident took the room meanwhile; the broker evicts it only on
  // the second request (a first grant that does not fit).
  Arena other(rig.device.driver, 0);
  void* theirs = other.malloc(6 * kMiB, nullptr);
  REQUIRE(theirs != nullptr);
  auto lease = rig.lease;
  rig.broker.set_handler([&other, lease](FakeBroker& b, int conn, const nlohmann::json& m) {
    if (m["op"] != "acquire") return;
    if (*lease > 0) other.offload();
    b.send(conn, {{"op", "grant"}, {"device", 0}, {"lease", ++*lease}});
  });

  rig.gate.enter();
  const bool intact = has_pattern(rig.device.driver, mine, 4 * kMiB, 51);
  rig.gate.exit();
  CHECK(intact);
  const auto first = rig.broker.wait_for("acquire");
  const auto given_back = rig.broker.wait_for("release");
  const auto second = rig.broker.wait_for("acquire");
  REQUIRE(first);
  REQUIRE(given_back);
  REQUIRE(second);
  CHECK((*given_back)["resident_bytes"] == 0);  // the failed restore undid itself
  CHECK((*second)["need_bytes"].get<std::uint64_t>() >= 4 * kMiB);
  const auto s = rig.controller->status();
  CHECK(s.lease_state == "holding");
  CHECK(s.waits == 1);  // one wait for the op, however many requests it took
  rig.broker.set_handler(nullptr);
  rig.arena.free(mine, nullptr);
  other.free(theirs, nullptr);
}

TEST_CASE("a rejected acquire fails the op and leaves the lease released", "[lease]") {
  Rig rig("lc-reject");
  rig.broker.set_handler([](FakeBroker& b, int conn, const nlohmann::json& m) {
    if (m["op"] == "acquire") b.send(conn, {{"op", "reject"}, {"reason", "need above capacity"}});
  });
  CHECK_THROWS_AS(rig.gate.enter(), LeaseRejected);
  CHECK(rig.gate.state() == LeaseState::released);
  CHECK(rig.gate.in_flight() == 0);
  rig.grant_every_acquire();
  rig.run_op();  // the next op acquires again
  CHECK(rig.gate.state() == LeaseState::holding);
  CHECK(rig.controller->status().switches == 1);
}

TEST_CASE("a revoke is honoured at the idle gap: release sent, memory left resident", "[lease]") {
  Rig rig("lc-idle", 64 * kMiB, 5ms);
  void* p = rig.arena.malloc(kMiB, nullptr);
  write_pattern(rig.device.driver, p, kMiB, 21);
  rig.run_op();
  REQUIRE(rig.broker.wait_for("acquire"));

  rig.revoke(60000);  // far deadline: only the idle gap can explain a prompt release
  const auto release = rig.broker.wait_for("release", 5000ms);
  REQUIRE(release);
  REQUIRE(wait_until([&] { return rig.gate.state() == LeaseState::released; }));
  const std::size_t resident = rig.arena.resident_bytes();
  CHECK(resident >= kMiB);
  CHECK((*release)["resident_bytes"].get<std::uint64_t>() == resident);
  CHECK(has_pattern(rig.device.driver, p, kMiB, 21));  // still mapped, data intact
  auto s = rig.controller->status();
  CHECK(s.revokes == 1);
  CHECK(s.releases == 1);
  CHECK(s.offloads == 0);

  rig.run_op();  // the next op acquires again
  CHECK(rig.broker.wait_count("acquire", 2));
  CHECK(rig.controller->status().switches == 2);
  rig.arena.free(p, nullptr);
}

TEST_CASE("past its deadline a revoke is honoured at the next op boundary", "[lease]") {
  Rig rig("lc-deadline", 64 * kMiB, 10ms);
  rig.run_op();
  REQUIRE(rig.broker.wait_for("acquire"));

  // A long op keeps the process busy: no idle gap will come.
  LongOp long_op(rig.gate);

  constexpr std::uint64_t kDeadlineMs = 40;
  const auto sent = std::chrono::steady_clock::now();
  rig.revoke(kDeadlineMs);
  // Past the deadline the controller closes the gate and waits for the op.
  REQUIRE(wait_until([&] { return rig.gate.state() == LeaseState::yielding; }));
  CHECK(std::chrono::steady_clock::now() - sent >= std::chrono::milliseconds(kDeadlineMs));
  CHECK_FALSE(rig.broker.wait_for("release", 1ms));  // not before the op is done

  // An op arriving now waits for the release and then acquires again.
  std::atomic<bool> next_ran{false};
  std::atomic<bool> release_seen_first{false};
  std::thread next_op([&] {
    rig.gate.enter();
    release_seen_first = rig.broker.wait_count("release", 1, 0ms);
    next_ran = true;
    rig.gate.exit();
  });
  REQUIRE(wait_until([&] { return rig.gate.entries() == 3; }));
  CHECK_FALSE(next_ran);

  long_op.finish();
  next_op.join();
  CHECK(next_ran);
  CHECK(release_seen_first);
  CHECK(rig.broker.wait_count("acquire", 2));
  const auto s = rig.controller->status();
  CHECK(s.revokes == 1);
  CHECK(s.releases == 1);
  CHECK(s.switches == 2);
}

TEST_CASE("a revoke without a deadline never stops a running op; it is honoured at the idle gap",
          "[lease]") {
  Rig rig("lc-share", 64 * kMiB, 10ms);
  rig.run_op();
  REQUIRE(rig.broker.wait_for("acquire"));

  LongOp long_op(rig.gate);
  rig.share();
  REQUIRE(wait_until([&] { return rig.controller->status().revokes == 1; }));
  // Twenty monitor ticks later the busy holder still holds: no deadline forces it.
  CHECK_FALSE(wait_until([&] { return rig.gate.state() != LeaseState::holding; }, 100ms));
  CHECK_FALSE(rig.broker.wait_for("release", 1ms));
  rig.run_op();  // another op on the busy process runs at once
  long_op.finish();
  // The idle gap after the last op: the lease is given back.
  REQUIRE(rig.broker.wait_for("release", 5000ms));
  REQUIRE(wait_until([&] { return rig.gate.state() == LeaseState::released; }));
  CHECK(rig.controller->status().releases == 1);
}

TEST_CASE("an idle holder asked to share gives the device back at once, memory left resident", "[lease]") {
  Rig rig("lc-share-idle", 64 * kMiB, 10ms);
  void* p = rig.arena.malloc(kMiB, nullptr);
  write_pattern(rig.device.driver, p, kMiB, 33);
  rig.run_op();
  REQUIRE(rig.broker.wait_for("acquire"));
  // The op is done; the process holds lazily.
  REQUIRE(wait_until([&] { return rig.controller->status().regions == 1 && rig.gate.in_flight() == 0; }));
  CHECK(rig.gate.state() == LeaseState::holding);

  rig.share();  // an equal waiter came: no deadline, only idleness explains a release
  const auto release = rig.broker.wait_for("release", 5000ms);
  REQUIRE(release);
  REQUIRE(wait_until([&] { return rig.gate.state() == LeaseState::released; }));
  CHECK((*release)["resident_bytes"].get<std::uint64_t>() == rig.arena.resident_bytes());
  CHECK(has_pattern(rig.device.driver, p, kMiB, 33));
  CHECK(rig.controller->status().offloads == 0);
  rig.arena.free(p, nullptr);
}

TEST_CASE("a busy holder asked to share keeps the device until a deadline follows, then yields at the op boundary",
          "[lease]") {
  Rig rig("lc-share-quantum", 64 * kMiB, 10ms);
  rig.run_op();
  REQUIRE(rig.broker.wait_for("acquire"));

  LongOp long_op(rig.gate);
  rig.share();
  REQUIRE(wait_until([&] { return rig.controller->status().revokes == 1; }));
  CHECK_FALSE(rig.broker.wait_for("release", 50ms));  // busy: it keeps the device
  CHECK(rig.gate.state() == LeaseState::holding);
  // The quantum ended: the broker revokes the same lease again, with a deadline.
  rig.revoke(20);
  REQUIRE(wait_until([&] { return rig.gate.state() == LeaseState::yielding; }));
  CHECK_FALSE(rig.broker.wait_for("release", 1ms));  // the running op finishes first
  long_op.finish();
  REQUIRE(rig.broker.wait_for("release", 5000ms));
  REQUIRE(wait_until([&] { return rig.gate.state() == LeaseState::released; }));
  const auto s = rig.controller->status();
  CHECK(s.revokes == 2);
  CHECK(s.releases == 1);
}

TEST_CASE("a lost broker ends the lease; the next op reconnects, reports residency and acquires",
          "[lease][reconnect]") {
  std::atomic<int> restarts{0};
  Rig rig("lc-lost", 64 * kMiB, 10ms, [&](ControllerOptions& o) { o.before_reconnect = [&] { ++restarts; }; });
  void* p = rig.arena.malloc(kMiB, nullptr);
  write_pattern(rig.device.driver, p, kMiB, 61);
  rig.run_op();
  REQUIRE(rig.broker.wait_for("acquire"));
  REQUIRE(rig.controller->status().lease_state == "holding");

  rig.broker.close(0);  // the broker goes away
  REQUIRE(wait_until([&] { return rig.gate.state() == LeaseState::released; }));
  CHECK(restarts == 0);  // nothing reconnects before an op needs the device

  rig.run_op();
  CHECK(restarts == 1);
  REQUIRE(rig.broker.hellos().size() == 2);
  const auto residency = rig.broker.wait_for("residency");
  REQUIRE(residency);
  CHECK((*residency)["resident_bytes"].get<std::uint64_t>() == rig.arena.resident_bytes());
  REQUIRE(rig.broker.wait_for("acquire"));
  const auto s = rig.controller->status();
  CHECK(s.lease_state == "holding");
  CHECK(s.reconnects == 1);
  CHECK(s.client_id == 101);  // the new connection's id
  CHECK(has_pattern(rig.device.driver, p, kMiB, 61));
  rig.arena.free(p, nullptr);
}

TEST_CASE("reconnecting, a peer that cannot prove the token is not trusted; the op keeps trying until the broker is back",
          "[lease][reconnect][auth]") {
  // Between losing the broker and its restart, a program without the token
  // holds the port: it sends a forged challenge, a welcome and a grant.
  std::function<void()> before_attempt = [] {};
  Rig rig("lc-squat", 64 * kMiB, 10ms, [&](ControllerOptions& o) { o.before_reconnect = [&] { before_attempt(); }; });
  rig.run_op();
  REQUIRE(rig.broker.wait_for("acquire"));
  rig.broker.close(0);
  REQUIRE(wait_until([&] { return rig.gate.state() == LeaseState::released; }));

  rig.broker.set_impostor(true);
  int attempts = 0;
  before_attempt = [&] {
    // Two attempts meet the squatter; the third finds the broker back.
    if (++attempts == 3) rig.broker.set_impostor(false);
  };
  rig.run_op();  // blocks until a real broker grants (retries 50 + 100 ms apart)
  CHECK(attempts == 3);
  REQUIRE(rig.broker.hellos().size() == 4);  // first connection, two squatted ones, the real one
  const auto s = rig.controller->status();
  CHECK(s.lease_state == "holding");
  CHECK(s.reconnects == 1);
  CHECK(s.client_id == 103);  // the real broker's welcome, never the squatter's
  CHECK(s.client_id != FakeBroker::kImpostorClientId);
  // Proofs went only to connections that proved the token first: the first and the last.
  CHECK(rig.broker.wait_count("auth", 2));
  CHECK_FALSE(rig.broker.wait_count("auth", 3, 0ms));
}

TEST_CASE("without a broker to reconnect to, the op fails after the reconnect timeout", "[lease][reconnect]") {
  Rig rig("lc-gone", 64 * kMiB, 10ms, [](ControllerOptions& o) {
    o.reconnect_timeout = 300ms;
    o.before_reconnect = [] { throw std::runtime_error("no broker here"); };
  });
  rig.run_op();
  REQUIRE(rig.broker.wait_for("acquire"));
  rig.broker.close(0);
  REQUIRE(wait_until([&] { return rig.gate.state() == LeaseState::released; }));
  const auto start = std::chrono::steady_clock::now();
  CHECK_THROWS_WITH(rig.run_op(), acb_test::has_substring("could not reconnect") && acb_test::has_substring("no broker here"));
  CHECK(std::chrono::steady_clock::now() - start >= 250ms);
  CHECK(rig.gate.state() == LeaseState::released);  // a later op tries again
}

TEST_CASE("an evict while not holding offloads and reports residency; while holding it keeps memory",
          "[lease]") {
  Rig rig("lc-evict");
  void* p = rig.arena.malloc(kMiB, nullptr);
  write_pattern(rig.device.driver, p, kMiB, 31);
  REQUIRE(rig.arena.resident_bytes() >= kMiB);

  rig.broker.send(0, {{"op", "evict"}, {"device", 0}, {"bytes", 0}});  // 0: everything
  const auto residency = rig.broker.wait_for("residency");
  REQUIRE(residency);
  CHECK((*residency)["resident_bytes"] == 0);
  CHECK(rig.arena.resident_bytes() == 0);
  CHECK(rig.arena.stats().offloaded_bytes >= kMiB);

  rig.gate.enter();  // acquire restores what the evict offloaded
  const bool intact = has_pattern(rig.device.driver, p, kMiB, 31);
  rig.gate.exit();
  CHECK(intact);

  rig.broker.send(0, {{"op", "evict"}, {"device", 0}, {"bytes", 0}});
  const auto holding_residency = rig.broker.wait_for("residency");
  REQUIRE(holding_residency);
  CHECK(rig.arena.resident_bytes() >= kMiB);  // never offloaded under a running holder
  CHECK((*holding_residency)["resident_bytes"].get<std::uint64_t>() == rig.arena.resident_bytes());
  const auto s = rig.controller->status();
  CHECK(s.evicts == 2);
  CHECK(s.offloads == 1);
  rig.arena.free(p, nullptr);
}

TEST_CASE("an evict read after the grant leaves memory resident for the op the grant lets run", "[lease]") {
  // The arbiter evicts a holder whose residency report it cannot account
  // for; that evict may follow the grant on the wire while the acquirer is
  // still restoring and has not opened the gate. Offloading then would unmap
  // what the op about to run uses. The restore of 16 MiB takes long enough
  // for the I/O thread to read the evict meanwhile; whether or not it does,
  // an executed evict would count as an offload.
  Rig rig("lc-evict-after-grant");
  constexpr std::size_t kBytes = 16 * kMiB;
  void* p = rig.arena.malloc(kBytes, nullptr);
  write_pattern(rig.device.driver, p, kBytes, 47);
  rig.broker.set_handler([lease = rig.lease](FakeBroker& b, int conn, const nlohmann::json& m) {
    if (m["op"] != "acquire") return;
    b.send(conn, {{"op", "grant"}, {"device", 0}, {"lease", ++*lease}, {"quantum_ms", 50}});
    b.send(conn, {{"op", "evict"}, {"device", 0}, {"bytes", 0}});
  });

  constexpr int kRounds = 5;
  for (int round = 0; round < kRounds; ++round) {
    rig.arena.offload();  // released: the next op restores
    rig.gate.enter();     // acquires: the grant, then at once the evict
    const bool resident = rig.arena.is_resident(p, kBytes);
    const bool intact = resident && has_pattern(rig.device.driver, p, kBytes, 47);
    rig.gate.exit();
    REQUIRE(rig.broker.wait_for("residency"));  // the evict was handled
    CHECK(resident);
    CHECK(intact);
    rig.controller->yield_now();
  }
  const auto s = rig.controller->status();
  CHECK(s.evicts == kRounds);
  CHECK(s.offloads == kRounds);  // the test's own: no evict read after a grant was executed
  rig.arena.free(p, nullptr);
}

TEST_CASE("out of memory while holding asks the broker for a larger need and the retry succeeds",
          "[lease][oom]") {
  Rig rig("lc-oom", 8 * kMiB);
  // Another resident on the same device fills it; the broker "evicts" it when
  // the growth request arrives.
  Arena other(rig.device.driver, 0);
  void* theirs = other.malloc(6 * kMiB, nullptr);
  REQUIRE(theirs != nullptr);
  auto lease = rig.lease;
  std::atomic<bool> growth_rejected{false};
  rig.broker.set_handler([&other, lease, &growth_rejected](FakeBroker& b, int conn, const nlohmann::json& m) {
    if (m["op"] != "acquire") return;
    if (*lease > 0) {  // holding: a growth request
      if (growth_rejected) {
        b.send(conn, {{"op", "reject"}, {"reason", "need above capacity"}});
        return;
      }
      other.offload();
    }
    b.send(conn, {{"op", "grant"}, {"device", 0}, {"lease", ++*lease}});
  });
  LeaseController& controller = *rig.controller;
  rig.arena.set_out_of_memory_handler([&controller](std::size_t bytes) { return controller.regrow(bytes); });

  rig.gate.enter();
  void* mine = nullptr;
  std::string error;
  try {
    mine = rig.arena.malloc(4 * kMiB, nullptr);
    write_pattern(rig.device.driver, mine, 4 * kMiB, 41);
  } catch (const std::exception& e) {
    error = e.what();
  }
  rig.gate.exit();
  CHECK(error.empty());
  REQUIRE(mine != nullptr);
  CHECK(has_pattern(rig.device.driver, mine, 4 * kMiB, 41));
  REQUIRE(rig.broker.wait_for("acquire"));
  const auto growth = rig.broker.wait_for("acquire");
  REQUIRE(growth);
  CHECK((*growth)["need_bytes"].get<std::uint64_t>() >= 4 * kMiB);
  CHECK(rig.controller->status().oom_regrows == 1);
  CHECK(rig.gate.state() == LeaseState::holding);

  SECTION("a rejected growth is a real out-of-memory with the sizes") {
    growth_rejected = true;
    void* more = other.malloc(4 * kMiB, nullptr);  // the device is full again
    REQUIRE(more != nullptr);
    rig.gate.enter();
    std::size_t requested = 0;
    try {
      rig.arena.malloc(4 * kMiB, nullptr);
    } catch (const OutOfMemory& e) {
      requested = e.requested_bytes();
    }
    rig.gate.exit();
    CHECK(requested >= 4 * kMiB);
    CHECK(rig.controller->status().oom_regrows == 2);
    CHECK(rig.gate.state() == LeaseState::holding);
    other.free(more, nullptr);
  }
  rig.arena.set_out_of_memory_handler(nullptr);
  rig.broker.set_handler(nullptr);
  rig.arena.free(mine, nullptr);
  other.free(theirs, nullptr);
}

TEST_CASE("a growth need is what the arena holds plus the segment it must map, not the peak plus the request",
          "[lease][oom]") {
  Rig rig("lc-oom-need", 16 * kMiB);
  Arena other(rig.device.driver, 0);
  auto lease = rig.lease;
  std::vector<void*> theirs;
  rig.broker.set_handler([&other, &theirs, lease](FakeBroker& b, int conn, const nlohmann::json& m) {
    if (m["op"] != "acquire") return;
    if (*lease > 0) {  // a growth request: "evict" the other resident
      for (void* p : theirs) other.free(p, nullptr);
      theirs.clear();
      other.empty_cache();
    }
    b.send(conn, {{"op", "grant"}, {"device", 0}, {"lease", ++*lease}});
  });
  LeaseController& controller = *rig.controller;
  rig.arena.set_out_of_memory_handler([&controller](std::size_t bytes) { return controller.regrow(bytes); });
  rig.gate.enter();
  // A 10 MiB peak (declared at the next acquire), then only 2 MiB kept.
  void* kept = rig.arena.malloc(2 * kMiB, nullptr);
  void* wide = rig.arena.malloc(8 * kMiB, nullptr);
  rig.arena.free(wide, nullptr);
  rig.gate.exit();
  rig.controller->yield_now();
  REQUIRE(rig.arena.stats().reserved_bytes_peak == 10 * kMiB);
  rig.run_op();  // acquires again, declaring the 10 MiB peak
  REQUIRE(rig.broker.wait_for("acquire"));
  REQUIRE(rig.broker.wait_for("acquire"));
  // The other resident takes what the broker thinks it may (16 - 10 = 6 MiB).
  // A 9 MiB + 1 request fits no cached block and needs a new 10 MiB segment;
  // once the cached 8 MiB one is released, 2 + 10 = 12 MiB are needed in all,
  // fitting 16 MiB, where the peak plus the request (19 MiB) would not.
  for (int i = 0; i < 3; ++i) theirs.push_back(other.malloc(2 * kMiB, nullptr));
  rig.gate.enter();
  std::string error;
  void* more = nullptr;
  try {
    more = rig.arena.malloc(9 * kMiB + 1, nullptr);
  } catch (const std::exception& e) {
    error = e.what();
  }
  rig.gate.exit();
  INFO(error);
  CHECK(error.empty());
  CHECK(more != nullptr);
  const auto growth = rig.broker.wait_for("acquire");
  REQUIRE(growth);
  CHECK((*growth)["need_bytes"].get<std::uint64_t>() == 2 * kMiB + 10 * kMiB);
  CHECK(rig.controller->status().oom_regrows == 1);
  rig.arena.set_out_of_memory_handler(nullptr);
  rig.broker.set_handler(nullptr);
  rig.arena.free(more, nullptr);
  rig.arena.free(kept, nullptr);
  for (void* p : theirs) other.free(p, nullptr);
}

TEST_CASE("regrow outside a held lease declines", "[lease][oom]") {
  Rig rig("lc-regrow-released");
  CHECK_FALSE(rig.controller->regrow(kMiB));
  CHECK(rig.controller->status().oom_regrows == 0);
}

TEST_CASE("waits for the lease are counted and timed; the monitor counts regions", "[lease][stats]") {
  Rig rig("lc-stats", 64 * kMiB, 5ms);
  // The second acquire is granted by the test thread, after a known delay.
  auto lease = rig.lease;
  auto acquires = std::make_shared<std::atomic<int>>(0);
  rig.broker.set_handler([lease, acquires](FakeBroker& b, int conn, const nlohmann::json& m) {
    if (m["op"] != "acquire") return;
    if (++*acquires == 2) return;
    b.send(conn, {{"op", "grant"}, {"device", 0}, {"lease", ++*lease}});
  });

  auto ms_since = [](std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  };
  const auto first_start = std::chrono::steady_clock::now();
  rig.gate.enter();
  const double first_enter_ms = ms_since(first_start);
  rig.gate.exit();
  rig.controller->yield_now();
  REQUIRE(rig.broker.wait_for("release"));
  CHECK(rig.gate.state() == LeaseState::released);

  std::atomic<double> enter_ms{0};
  std::thread op([&] {
    const auto start = std::chrono::steady_clock::now();
    rig.gate.enter();
    enter_ms = ms_since(start);
    rig.gate.exit();
  });
  REQUIRE(rig.broker.wait_count("acquire", 2));
  constexpr double kDelayMs = 20;
  // A delay to measure, not synchronisation: the grant below is what the op waits for.
  std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(kDelayMs));
  rig.broker.send(0, {{"op", "grant"}, {"device", 0}, {"lease", ++*lease}});
  op.join();

  rig.run_op();  // holding: no wait
  const auto s = rig.controller->status();
  CHECK(s.waits == 2);
  CHECK(s.switches == 2);
  CHECK(s.releases == 1);
  // Each recorded wait lies inside the enter() that blocked on it.
  CHECK(s.wait_max_ms >= kDelayMs);
  CHECK(s.wait_max_ms <= std::max(first_enter_ms, enter_ms.load()));
  CHECK(s.wait_total_ms <= first_enter_ms + enter_ms.load());
  CHECK(s.wait_p99_ms == s.wait_max_ms);  // 2 samples: the 99th percentile is the larger
  CHECK(s.wait_total_ms >= s.wait_max_ms);
  CHECK(s.wait_total_ms <= s.wait_max_ms * 2);
  REQUIRE(wait_until([&] { return rig.controller->status().regions >= 1; }));
}

namespace {

/// Work that keeps the emulated device busy, as a kernel that waits (a
/// collective waiting for its peer): a device-to-host copy queued on a
/// paused stream. synchronize_device waits for it until resume(), or throws
/// once the driver's wait timeout passes.
class StuckWork {
 public:
  StuckWork(acb::alloc::EmulatedDriver& driver, void* device_ptr) : driver_(driver) {
    stream_ = driver_.create_stream(0);
    driver_.pause_stream(stream_);
    driver_.copy_to_host_async(host_.data(), reinterpret_cast<acb::alloc::DevicePtr>(device_ptr), host_.size(),
                               stream_);
  }
  ~StuckWork() {
    resume();
    driver_.destroy_stream(stream_);
  }
  StuckWork(const StuckWork&) = delete;
  StuckWork& operator=(const StuckWork&) = delete;

  void resume() {
    if (resumed_) return;
    resumed_ = true;
    driver_.resume_stream(stream_);
  }

 private:
  acb::alloc::EmulatedDriver& driver_;
  acb::alloc::StreamHandle stream_ = nullptr;
  std::array<unsigned char, 4096> host_{};
  bool resumed_ = false;
};

}  // namespace

TEST_CASE("a yield whose device does not synchronise in time releases with the memory pinned, evictable again "
          "once the synchronisation returns",
          "[lease][yield]") {
  Rig rig("lc-sync-late", 64 * kMiB, 5ms, [](ControllerOptions& o) { o.yield_sync_timeout = 100ms; });
  rig.device.driver.set_wait_timeout(30000ms);  // the device waits as long as the work does
  void* p = rig.arena.malloc(kMiB, nullptr);
  write_pattern(rig.device.driver, p, kMiB, 61);
  rig.run_op();
  REQUIRE(rig.broker.wait_for("acquire"));
  StuckWork work(rig.device.driver, p);

  rig.revoke(60000);  // honoured at the idle gap: only the synchronisation holds it up
  const auto release = rig.broker.wait_for("release", 5000ms);
  REQUIRE(release);
  CHECK(release->value("pinned", false));  // nothing may be offloaded while work may still run
  CHECK((*release)["resident_bytes"].get<std::uint64_t>() == rig.arena.resident_bytes());
  REQUIRE(wait_until([&] { return rig.gate.state() == LeaseState::released; }));
  CHECK(rig.controller->status().yield_sync_timeouts == 1);
  CHECK(rig.controller->status().safe_mode_reason.empty());  // late is not an error

  // An evict meanwhile is answered with the memory kept (pinned), not executed.
  rig.broker.send(0, {{"op", "evict"}, {"device", 0}, {"bytes", 0}});
  const auto kept = rig.broker.wait_for("residency");
  REQUIRE(kept);
  CHECK(kept->value("pinned", false));
  CHECK(rig.arena.resident_bytes() >= kMiB);
  CHECK(rig.controller->status().offloads == 0);

  // Once the work ends the memory is reported evictable, unasked, and an evict offloads it.
  work.resume();
  const auto evictable = rig.broker.wait_for("residency", 5000ms);
  REQUIRE(evictable);
  CHECK_FALSE(evictable->value("pinned", false));
  CHECK((*evictable)["resident_bytes"].get<std::uint64_t>() == rig.arena.resident_bytes());
  rig.broker.send(0, {{"op", "evict"}, {"device", 0}, {"bytes", 0}});
  REQUIRE(rig.broker.wait_for("residency"));
  CHECK(rig.arena.resident_bytes() == 0);

  rig.gate.enter();  // restores what the evict offloaded
  const bool intact = has_pattern(rig.device.driver, p, kMiB, 61);
  rig.gate.exit();
  CHECK(intact);
  rig.arena.free(p, nullptr);
}

TEST_CASE("unmanage() whose device does not synchronise in time still releases, with the memory pinned",
          "[lease][yield]") {
  Rig rig("lc-unmanage-late", 64 * kMiB, 5ms, [](ControllerOptions& o) { o.yield_sync_timeout = 100ms; });
  rig.device.driver.set_wait_timeout(30000ms);  // the device waits as long as the work does
  void* p = rig.arena.malloc(kMiB, nullptr);
  write_pattern(rig.device.driver, p, kMiB, 67);
  rig.run_op();
  REQUIRE(rig.broker.wait_for("acquire"));
  StuckWork work(rig.device.driver, p);

  auto unmanaged = std::async(std::launch::async, [&] { rig.controller->unmanage(); });
  const bool returned = unmanaged.wait_for(5000ms) == std::future_status::ready;
  work.resume();  // either way, so that a failing run ends
  unmanaged.get();
  REQUIRE(returned);  // within yield_sync_timeout, not once the work ended
  const auto release = rig.broker.wait_for("release", 5000ms);
  REQUIRE(release);
  CHECK(release->value("pinned", false));
  CHECK((*release)["resident_bytes"].get<std::uint64_t>() == rig.arena.resident_bytes());
  CHECK(has_pattern(rig.device.driver, p, kMiB, 67));
  rig.arena.free(p, nullptr);
}

TEST_CASE("a device error at a yield is reported as an error: released pinned, safe mode with the reason, "
          "memory intact",
          "[lease][yield]") {
  Rig rig("lc-sync-error", 64 * kMiB, 5ms, [](ControllerOptions& o) { o.yield_sync_timeout = 10000ms; });
  // The device's synchronisation fails (the emulated driver's wait times out
  // with a DriverError) well before the controller would stop waiting.
  rig.device.driver.set_wait_timeout(50ms);
  void* p = rig.arena.malloc(kMiB, nullptr);
  write_pattern(rig.device.driver, p, kMiB, 71);
  rig.run_op();
  REQUIRE(rig.broker.wait_for("acquire"));
  StuckWork work(rig.device.driver, p);

  rig.revoke(60000);
  const auto release = rig.broker.wait_for("release", 5000ms);
  REQUIRE(release);  // an error of the device is no lost connection: the lease is given back
  CHECK(release->value("pinned", false));
  CHECK((*release)["resident_bytes"].get<std::uint64_t>() == rig.arena.resident_bytes());
  REQUIRE(wait_until([&] { return rig.gate.state() == LeaseState::released; }));
  const auto s = rig.controller->status();
  CHECK(s.releases == 1);
  CHECK(s.yield_sync_timeouts == 0);
  CHECK_THAT_TEXT(s.safe_mode_reason, "the device reported an error when synchronised at a yield");
  CHECK_THAT_TEXT(s.safe_mode_reason, "synchronize_device(device=0)");
  CHECK(has_pattern(rig.device.driver, p, kMiB, 71));

  // An evict while the enabling thread is not inside acb keeps everything (safe mode).
  rig.broker.send(0, {{"op", "evict"}, {"device", 0}, {"bytes", 0}});
  const auto kept = rig.broker.wait_for("residency");
  REQUIRE(kept);
  CHECK(kept->value("pinned", false));
  CHECK(rig.arena.resident_bytes() >= kMiB);

  work.resume();
  rig.run_op();  // the process goes on: the next op acquires again
  CHECK(rig.broker.wait_count("acquire", 2));
  CHECK(rig.controller->status().switches == 2);
  rig.arena.free(p, nullptr);
}
