// status and trace replies stay within one frame, whatever the number of
// clients and leases and however their names encode.
#include <string>

#include "acb_catch.hpp"
#include "broker_server/replies.h"
#include "common/frame.h"

using namespace acb::broker;
using nlohmann::json;

namespace {

// The worst name for its size: every byte is escaped as \u00XX on the wire.
std::string worst_name() { return std::string(kMaxStringBytes, '\x01'); }

Arbiter crowded_arbiter(std::size_t clients, TimeUs now) {
  Arbiter arb;
  arb.add_device("gpu0", std::uint64_t{1} << 40);
  HelloInfo info;
  info.name = worst_name();
  for (ClientId id = 1; id <= clients; ++id) {
    REQUIRE(arb.on_hello(id, info, now).device);
    (void)arb.on_acquire(id, std::nullopt, now);
  }
  return arb;
}

}  // namespace

TEST_CASE("status with 2000 clients fits a frame, pages its clients and counts them all") {
  const TimeUs now = 1'000'000;
  const Arbiter arb = crowded_arbiter(2000, now);
  const json first = status_message(1, arb.snapshot(now, std::nullopt, kStatusMaxClients), 200);
  CHECK(acb::wire::encode_message(first).size() <= acb::wire::kMaxFrameBytes);
  CHECK(first["clients"].size() == kStatusMaxClients);
  CHECK(first["clients_total"] == 2000);
  CHECK(first["clients_truncated"] == true);
  CHECK(first["clients_by_state"]["holding"] == 1);
  CHECK(first["clients_by_state"]["waiting"] == 1999);
  CHECK(first["next_after"] == kStatusMaxClients);
  CHECK(first["devices"][0]["queue"].size() == 1999);

  // Following next_after visits every client once.
  std::size_t seen = first["clients"].size();
  json page = first;
  while (page["clients_truncated"] == true) {
    page = status_message(1, arb.snapshot(now, page["next_after"].get<ClientId>(), kStatusMaxClients), 200);
    seen += page["clients"].size();
  }
  CHECK(seen == 2000);
  CHECK_FALSE(page.contains("next_after"));
}

TEST_CASE("trace keeps the newest slices that fit a frame and says it left older ones out") {
  ArbiterConfig cfg;
  cfg.timeline_capacity = 10000;
  Arbiter arb(cfg);
  arb.add_device("gpu0", std::uint64_t{1} << 40);
  HelloInfo info;
  info.name = worst_name();
  REQUIRE(arb.on_hello(1, info, 0).device);
  TimeUs now = 1;
  for (int i = 0; i < 10000; ++i, now += 2) {
    (void)arb.on_acquire(1, std::nullopt, now);
    (void)arb.on_release(1, std::nullopt, now + 1);
  }
  const auto slices = arb.timeline();
  REQUIRE(slices.size() == 10000);
  const json trace = trace_message(7, slices);
  CHECK(acb::wire::encode_message(trace).size() <= acb::wire::kMaxFrameBytes);
  CHECK(trace["slices_truncated"] == true);
  REQUIRE(trace["slices"].size() > 100);
  CHECK(trace["slices"].back()["start_us"] == slices.back().start_us);

  const json small = trace_message(7, std::vector<LeaseSlice>(slices.end() - 3, slices.end()));
  CHECK(small["slices"].size() == 3);
  CHECK(small["slices_truncated"] == false);
}
