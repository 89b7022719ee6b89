// RequestBudget: one token bucket per user, paid in units per frame and per
// KiB of replies, on a fake clock.
#include "acb_catch.hpp"
#include "broker_server/request_budget.h"

using acb::broker::RequestBudget;
using acb::broker::TimeUs;

namespace {
constexpr std::uint32_t kBroker = 1000;
constexpr std::uint32_t kUser = 2000;
constexpr TimeUs kStart = 1'000'000;
}  // namespace

TEST_CASE("a user's burst is served at once, then frames wait for the refill") {
  RequestBudget budget(kBroker);
  for (std::uint64_t i = 0; i < RequestBudget::kBurstUnits; ++i) {
    REQUIRE(budget.wait_us(kUser, kStart) == 0);
    budget.charge(kUser, 0, kStart);
  }
  CHECK(budget.wait_us(kUser, kStart) == 0);  // the bucket is empty, not in debt
  budget.charge(kUser, 0, kStart);
  const TimeUs unit_us = 1'000'000 / RequestBudget::kUnitsPerSecond;
  const TimeUs wait = budget.wait_us(kUser, kStart);
  CHECK(wait == 2 * unit_us);  // one unit of debt, and its own turn
  // A second connection of the user waits behind the first; another frame
  // arriving meanwhile on a third does not overtake them.
  CHECK(budget.wait_us(kUser, kStart) == 3 * unit_us);
  CHECK(budget.wait_us(kUser, kStart + wait) > 0);
  // The first wakes: the debt is paid, it goes on although others wait.
  budget.waited(kUser);
  CHECK(budget.wait_us(kUser, kStart + wait, /*after_waiting=*/true) == 0);
}

TEST_CASE("replies cost one unit per KiB, so an expensive request waits longer") {
  CHECK(RequestBudget::cost(0) == 1);
  CHECK(RequestBudget::cost(64 * 1024) == 65);
  RequestBudget budget(kBroker);
  // A flood of 64 KiB status replies: the debt grows with the bytes built.
  for (int i = 0; i < 1000; ++i) budget.charge(kUser, 64 * 1024, kStart);
  // The debt, and one unit for this waiter's own turn.
  const std::int64_t debt_units = 1000 * 65 - static_cast<std::int64_t>(RequestBudget::kBurstUnits) + 1;
  CHECK(budget.wait_us(kUser, kStart) == static_cast<TimeUs>(debt_units) * 1'000'000 / RequestBudget::kUnitsPerSecond);
}

TEST_CASE("users have buckets of their own; unknown peers share one; the broker's uid is not limited") {
  RequestBudget budget(kBroker);
  for (std::uint64_t i = 0; i <= RequestBudget::kBurstUnits; ++i) {
    budget.charge(kUser, 0, kStart);
    budget.charge(std::nullopt, 0, kStart);
    budget.charge(kBroker, 0, kStart);
  }
  CHECK(budget.wait_us(kUser, kStart) > 0);
  CHECK(budget.wait_us(std::nullopt, kStart) > 0);
  CHECK(budget.wait_us(kUser + 1, kStart) == 0);  // another user is not slowed by the first
  CHECK(budget.wait_us(kBroker, kStart) == 0);
}

TEST_CASE("a bucket refills to its burst, not beyond") {
  RequestBudget budget(kBroker);
  budget.charge(kUser, 0, kStart);
  // An hour idle: still only kBurstUnits before the next wait.
  const TimeUs later = kStart + 3'600'000'000ull;
  for (std::uint64_t i = 0; i <= RequestBudget::kBurstUnits; ++i) budget.charge(kUser, 0, later);
  CHECK(budget.wait_us(kUser, later) > 0);
}
