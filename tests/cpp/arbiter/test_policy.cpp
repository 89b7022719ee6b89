// The pure policy functions: queue order and aging, fit and eviction plans, placement.
#include "acb_catch.hpp"
#include "broker_server/policy_memory.h"
#include "broker_server/policy_placement.h"
#include "broker_server/policy_queue.h"

using namespace acb::broker;
using namespace acb::broker::policy;

TEST_CASE("effective class improves one step per aging period, down to inference",
          "[arbiter][policy]") {
  const TimeUs t0 = 1'000'000;
  CHECK(effective_class(Priority::batch, t0, t0, 100) == 2);
  CHECK(effective_class(Priority::batch, t0, t0 + 99'999, 100) == 2);
  CHECK(effective_class(Priority::batch, t0, t0 + 100'000, 100) == 1);
  CHECK(effective_class(Priority::batch, t0, t0 + 200'000, 100) == 0);
  CHECK(effective_class(Priority::batch, t0, t0 + 900'000, 100) == 0);
  CHECK(effective_class(Priority::batch, t0, t0 + 900'000, 0) == 2);  // aging disabled
  CHECK(next_aging_step(Priority::batch, t0, t0 + 150'000, 100) == t0 + 200'000);
  CHECK_FALSE(next_aging_step(Priority::inference, t0, t0, 100).has_value());
  CHECK_FALSE(next_aging_step(Priority::batch, t0, t0 + 200'000, 100).has_value());
}

TEST_CASE("waiters are ordered by class, then FIFO; aged waiters pass younger ones",
          "[arbiter][policy]") {
  std::vector<Waiter> w = {{1, Priority::batch, 100, 0},
                           {2, Priority::training, 200, 1},
                           {3, Priority::training, 150, 2},
                           {4, Priority::inference, 300, 3}};
  CHECK(order_waiters(w, 300, 0) == std::vector<ClientId>{4, 3, 2, 1});
  // After 1 aging step (aging 1 ms = 1000 us) the batch waiter counts as training and is oldest.
  CHECK(order_waiters(w, 1100, 1) == std::vector<ClientId>{4, 1, 3, 2});
  // Equal times: enqueue sequence decides.
  std::vector<Waiter> tie = {{7, Priority::training, 5, 9}, {8, Priority::training, 5, 3}};
  CHECK(order_waiters(tie, 5, 0) == std::vector<ClientId>{8, 7});
}

TEST_CASE("fit deficit counts the grantee's own residency toward its need", "[arbiter][policy]") {
  CHECK(fit_deficit(100, 40, 0, 60) == 0);
  CHECK(fit_deficit(100, 40, 0, 70) == 10);
  CHECK(fit_deficit(100, 40, 30, 70) == 10);  // own 30 is part of the 70
  CHECK(fit_deficit(100, 40, 80, 70) == 20);  // resident above need still counts
  CHECK(fit_deficit(100, 0, 0, 100) == 0);
}

TEST_CASE("eviction plan takes lowest priority, then least recently granted, exactly the deficit",
          "[arbiter][policy]") {
  std::vector<Resident> r = {{1, Priority::inference, 10, 50},
                             {2, Priority::batch, 30, 20},
                             {3, Priority::training, 5, 40},
                             {4, Priority::batch, 20, 15}};
  auto plan = plan_evictions(r, 45);
  REQUIRE(plan.size() == 3);
  CHECK(plan[0].client == 4);  // batch, granted earlier
  CHECK(plan[0].bytes == 15);
  CHECK(plan[1].client == 2);
  CHECK(plan[1].bytes == 20);
  CHECK(plan[2].client == 3);
  CHECK(plan[2].bytes == 10);  // only what is still missing
  CHECK(plan_evictions(r, 0).empty());
  std::uint64_t total = 0;
  for (const auto& e : plan_evictions(r, 1000)) total += e.bytes;
  CHECK(total == 125);  // everything evictable, no more
}

TEST_CASE("placement picks the least contended device that can hold the need",
          "[arbiter][policy]") {
  std::vector<DeviceLoad> loads = {{0, 100, false, 3, 1, 50},
                                   {1, 100, false, 1, 0, 10},
                                   {2, 100, true, 0, 0, 0},
                                   {3, 20, false, 0, 0, 0}};
  CHECK(choose_device(loads, 10) == 3);  // empty and large enough
  CHECK(choose_device(loads, 50) == 1);  // device 3 too small, 2 draining
  CHECK(choose_device(loads, 200) == std::nullopt);
  // Equal scores: lowest id.
  CHECK(choose_device({{5, 100, false, 0, 0, 0}, {4, 100, false, 0, 0, 0}}, 1) == 4);
  // Memory weighs in: same counts, less declared need wins.
  CHECK(choose_device({{0, 100, false, 1, 0, 90}, {1, 100, false, 1, 0, 10}}, 5) == 1);
}
