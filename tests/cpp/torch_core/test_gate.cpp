// Gate (csrc/torch/gate.h): ops block while the lease is not held, exactly one
// blocked thread runs the acquirer, close_and_drain() waits for in-flight ops
// and lets none start, a failing acquirer fails the op and leaves the gate
// released. Every wait is bounded; assertions run on the main thread only
// (Catch2 is not thread-safe), worker threads record into atomics.
#include <atomic>
#include <stdexcept>
#include <thread>
#include <vector>

#include "acb_catch.hpp"
#include "torch/gate.h"
#include "wait_until.h"

using acb::test::Latch;
using acb::test::wait_until;
using acb::torch_hook::Gate;
using acb::torch_hook::LeaseState;
using namespace std::chrono_literals;

namespace {

}  // namespace

TEST_CASE("a new gate is closed and released; close_and_drain refuses when not holding", "[gate]") {
  Gate gate;
  CHECK(gate.state() == LeaseState::released);
  CHECK(gate.in_flight() == 0);
  CHECK_FALSE(gate.close_and_drain());
  CHECK(gate.state() == LeaseState::released);
}

TEST_CASE("ops block while not holding; the first blocked thread acquires once for all", "[gate]") {
  Gate gate;
  constexpr int kThreads = 4;
  std::atomic<int> acquires{0};
  std::atomic<int> ops_run{0};
  std::atomic<bool> ran_before_grant{false};
  std::atomic<bool> granted{false};
  Latch acquiring, grant;
  gate.set_acquirer([&] {
    if (acquires.fetch_add(1) == 0) acquiring.open();
    if (!grant.wait()) throw std::runtime_error("test timed out");
    granted = true;
  });

  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&] {
      gate.enter();
      if (!granted) ran_before_grant = true;
      if (gate.state() != LeaseState::holding) ran_before_grant = true;
      ++ops_run;
      gate.exit();
    });
  }
  REQUIRE(acquiring.wait());
  // Every thread has entered and is waiting (none counts as in flight).
  REQUIRE(wait_until([&] { return gate.entries() == kThreads && gate.in_flight() == 0; }));
  CHECK(gate.state() == LeaseState::acquiring);
  CHECK(ops_run == 0);
  grant.open();
  for (auto& t : threads) t.join();
  CHECK(ops_run == kThreads);
  CHECK(acquires == 1);
  CHECK_FALSE(ran_before_grant);
  CHECK(gate.state() == LeaseState::holding);
  CHECK(gate.in_flight() == 0);
}

TEST_CASE("close_and_drain waits for in-flight ops and no op starts until the gate reopens", "[gate]") {
  Gate gate;
  gate.set_acquirer([] {});
  gate.enter();  // acquires
  gate.exit();
  REQUIRE(gate.state() == LeaseState::holding);

  Latch in_op, finish_op;
  std::thread op([&] {
    gate.enter();
    in_op.open();
    finish_op.wait();  // bounded; the main thread's checks fail on a timeout
    gate.exit();
  });
  REQUIRE(in_op.wait());
  CHECK(gate.in_flight() == 1);

  std::atomic<bool> drained{false};
  std::atomic<bool> drain_result{false};
  std::thread controller([&] {
    drain_result = gate.close_and_drain();
    drained = true;
  });
  REQUIRE(wait_until([&] { return gate.state() == LeaseState::yielding; }));

  // An op that arrives during the drain must wait.
  std::atomic<bool> late_ran{false};
  std::atomic<bool> late_saw_closed{false};
  std::atomic<bool> drained_when_late_ran{false};
  std::thread late([&] {
    gate.enter();
    late_ran = true;
    drained_when_late_ran = drained.load();
    if (gate.state() != LeaseState::holding) late_saw_closed = true;
    gate.exit();
  });
  REQUIRE(wait_until([&] { return gate.entries() == 3; }));  // the late op has entered (and waits)
  CHECK_FALSE(drained);
  CHECK_FALSE(late_ran);

  finish_op.open();
  op.join();
  controller.join();
  CHECK(drained);
  CHECK(drain_result);
  CHECK(gate.in_flight() == 0);
  CHECK(gate.state() == LeaseState::yielding);
  CHECK_FALSE(late_ran);  // still closed: the safe point lasts until reopen

  gate.reopen();
  late.join();
  CHECK(late_ran);
  CHECK(drained_when_late_ran);
  CHECK_FALSE(late_saw_closed);
}

TEST_CASE("a unit taken while held keeps a drain waiting after its taker exits, until another thread ends it",
          "[gate]") {
  Gate gate;
  gate.set_acquirer([] {});
  gate.enter();              // acquires; the caller's own unit (a collective's launch)
  gate.enter_while_held();   // the unit for its work, still running on another thread
  std::atomic<bool> drained{false};
  std::atomic<bool> drain_result{false};
  std::thread controller([&] {
    drain_result = gate.close_and_drain();
    drained = true;
  });
  REQUIRE(wait_until([&] { return gate.state() == LeaseState::yielding; }));
  gate.enter_while_held();   // taken during the drain: does not block
  gate.exit();
  gate.exit();               // the launch is over
  CHECK(gate.in_flight() == 1);
  CHECK_FALSE(drained);
  std::thread backend([&] { gate.exit(); });  // the work completed
  backend.join();
  REQUIRE(wait_until([&] { return drained.load(); }));
  controller.join();
  CHECK(drain_result);
  CHECK(gate.in_flight() == 0);
}

TEST_CASE("after mark_released the next op acquires again", "[gate]") {
  Gate gate;
  std::atomic<int> acquires{0};
  gate.set_acquirer([&] { ++acquires; });
  gate.enter();
  gate.exit();
  REQUIRE(gate.close_and_drain());
  gate.mark_released();
  CHECK(gate.state() == LeaseState::released);
  gate.enter();
  CHECK(gate.state() == LeaseState::holding);
  gate.exit();
  CHECK(acquires == 2);
}

TEST_CASE("an acquirer that throws fails the op, leaves the gate released, and the next op retries",
          "[gate]") {
  Gate gate;
  std::atomic<int> acquires{0};
  gate.set_acquirer([&] {
    if (acquires.fetch_add(1) == 0) throw std::runtime_error("broker gone on purpose");
  });
  CHECK_THROWS_WITH(gate.enter(), "broker gone on purpose");  // no exit(): the op never started
  CHECK(gate.state() == LeaseState::released);
  CHECK(gate.in_flight() == 0);

  gate.enter();
  CHECK(gate.state() == LeaseState::holding);
  CHECK(gate.in_flight() == 1);
  gate.exit();
  CHECK(acquires == 2);
}

TEST_CASE("a failed acquire hands acquiring to another waiting thread", "[gate]") {
  Gate gate;
  std::atomic<int> acquires{0};
  Latch first_started, fail_first;
  gate.set_acquirer([&] {
    if (acquires.fetch_add(1) == 0) {
      first_started.open();
      fail_first.wait();
      throw std::runtime_error("first acquire fails");
    }
  });
  std::atomic<int> failed{0}, ran{0};
  auto op = [&] {
    try {
      gate.enter();
    } catch (const std::runtime_error&) {
      ++failed;
      return;
    }
    ++ran;
    gate.exit();
  };
  std::thread a(op);
  REQUIRE(first_started.wait());
  std::thread b(op);
  REQUIRE(wait_until([&] { return gate.entries() == 2 && gate.in_flight() == 0; }));
  fail_first.open();
  a.join();
  b.join();
  CHECK(failed == 1);
  CHECK(ran == 1);
  CHECK(acquires == 2);
  CHECK(gate.state() == LeaseState::holding);
}

TEST_CASE("no op ever runs while the gate is closed, under concurrent close/reopen/release", "[gate][stress]") {
  Gate gate;
  std::atomic<int> acquires{0};
  gate.set_acquirer([&] { ++acquires; });

  // closed: set by the controller once the drain returned, cleared just before
  // it reopens or releases. running: ops between enter() and exit().
  std::atomic<bool> closed{false};
  std::atomic<int> running{0};
  std::atomic<int> violations{0};
  std::atomic<int> ops_done{0};
  std::atomic<int> threads_done{0};
  constexpr int kThreads = 4;
  constexpr int kOpsPerThread = 1000;
  constexpr int kMinDrains = 100;  // ops go on until the controller interleaved this often
  std::atomic<int> drains{0};

  std::vector<std::thread> ops;
  for (int t = 0; t < kThreads; ++t) {
    ops.emplace_back([&] {
      for (int i = 0; i < kOpsPerThread || drains.load() < kMinDrains; ++i) {
        gate.enter();
        ++running;
        if (closed.load()) ++violations;  // (state() may already say yielding: a drain waits for us)
        --running;
        gate.exit();
        ++ops_done;
      }
      ++threads_done;
    });
  }

  int releases = 0;
  while (threads_done.load() < kThreads) {
    if (!gate.close_and_drain()) {
      std::this_thread::yield();  // released or acquiring: let an op acquire
      continue;
    }
    closed = true;
    ++drains;
    // (in_flight() may count an op that is on its way to wait at the gate.)
    if (running.load() != 0) ++violations;
    std::this_thread::yield();  // ops pile up at the closed gate meanwhile
    if (running.load() != 0) ++violations;
    closed = false;
    if (drains % 3 == 0) {
      gate.mark_released();
      ++releases;
    } else {
      gate.reopen();
    }
  }
  for (auto& t : ops) t.join();
  CHECK(violations == 0);
  CHECK(ops_done >= kThreads * kOpsPerThread);
  CHECK(drains >= kMinDrains);
  CHECK(acquires >= 1 + (releases > 0 ? 1 : 0));
  CHECK(gate.in_flight() == 0);
}
