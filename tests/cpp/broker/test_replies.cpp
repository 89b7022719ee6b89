// status and trace replies stay within one frame, whatever the number of
// clients and leases and however their names encode.
#include <optional>
#include <string>

#include "acb_catch.hpp"
#include "broker_server/replies.h"
#include "common/frame.h"

using namespace acb::broker;
using nlohmann::json;

namespace {

json parsed_status(const Arbiter& arb, TimeUs now, std::optional<ClientId> after) {
  const std::string payload = status_reply(1, arb.snapshot(now, after, kStatusMaxClients), 200);
  CHECK(payload.size() + acb::wire::kHeaderBytes <= acb::wire::kMaxFrameBytes);
  return json::parse(payload);  // throws, failing the test, on text that is not JSON
}

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
  const json first = parsed_status(arb, now, std::nullopt);
  CHECK(first["clients"].size() == kStatusMaxClients);
  CHECK(first["clients_total"] == 2000);
  CHECK(first["clients_truncated"] == true);
  // The first is granted and, with equal waiters behind it, revoked at once (share).
  CHECK(first["clients_by_state"]["revoked"] == 1);
  CHECK(first["clients_by_state"]["waiting"] == 1999);
  CHECK(first["next_after"] == kStatusMaxClients);
  CHECK(first["devices"][0]["queue"].size() == 1999);

  // Following next_after visits every client once.
  std::size_t seen = first["clients"].size();
  json page = first;
  while (page["clients_truncated"] == true) {
    page = parsed_status(arb, now, page["next_after"].get<ClientId>());
    seen += page["clients"].size();
  }
  CHECK(seen == 2000);
  CHECK_FALSE(page.contains("next_after"));
}

TEST_CASE("status carries every field of the snapshot, names escaped as JSON") {
  Snapshot snapshot;
  snapshot.devices.push_back({3, "gpu\"3\xff", 5u << 20, 1u << 20, 7, {8, 9}, true});
  snapshot.devices.push_back({4, "idle", 1u << 20, 0, std::nullopt, {}, false});
  const std::string tricky = std::string("a\"b\\c\n\x01 \u00e9 ") + "\xc3";  // quote, backslash, controls, UTF-8, a cut sequence
  snapshot.clients.push_back({7, SharedName(tricky), 1234, Priority::inference, 3, ClientState::holding, 10, 20, 30,
                              40, 50, 60, "", std::nullopt});
  // A rank of a gang: its job key (escaped like any text) and local rank.
  snapshot.clients.push_back(
      {8, SharedName("plain"), 1, Priority::batch, 3, ClientState::waiting, 0, 0, 0, 0, 0, 0, "run\"1", 1});
  snapshot.clients_total = 9;
  snapshot.clients_by_state[static_cast<int>(ClientState::waiting)] = 1;
  snapshot.clients_by_state[static_cast<int>(ClientState::holding)] = 1;
  snapshot.next_after = 8;
  const json s = json::parse(status_reply(-5, snapshot, 250));

  // The same text a json tree dumps, with bytes that are not UTF-8 replaced.
  const auto as_json = [](const std::string& text) {
    return json::parse(json(text).dump(-1, ' ', false, json::error_handler_t::replace)).get<std::string>();
  };
  CHECK(s["op"] == "status");
  CHECK(s["seq"] == -5);
  CHECK(s["quantum_ms"] == 250);
  REQUIRE(s["devices"].size() == 2);
  CHECK(s["devices"][0] == json{{"device", 3}, {"name", as_json("gpu\"3\xff")}, {"capacity_bytes", 5u << 20},
                                {"resident_bytes", 1u << 20}, {"holder", 7}, {"queue", {8, 9}}, {"draining", true}});
  CHECK(s["devices"][1]["holder"].is_null());
  CHECK(s["devices"][1]["queue"] == json::array());
  REQUIRE(s["clients"].size() == 2);
  CHECK(s["clients"][0] == json{{"client_id", 7}, {"name", as_json(tricky)}, {"pid", 1234}, {"priority", "inference"},
                                {"device", 3}, {"state", "holding"}, {"resident_bytes", 10}, {"need_bytes", 20},
                                {"quota_bytes", 30}, {"grants", 40}, {"waited_us_total", 50}, {"preemptions", 60}});
  CHECK(s["clients"][0]["name"].get<std::string>().substr(0, 8) == "a\"b\\c\n\x01 ");
  CHECK(s["clients"][1]["name"] == "plain");
  CHECK(s["clients"][1]["priority"] == "batch");
  CHECK_FALSE(s["clients"][0].contains("gang"));  // not a rank: no gang members at all
  CHECK(s["clients"][1]["gang"] == "run\"1");
  CHECK(s["clients"][1]["local_rank"] == 1);
  CHECK(s["clients_total"] == 9);
  CHECK(s["clients_by_state"] == json{{"idle", 0}, {"waiting", 1}, {"holding", 1}, {"revoked", 0}});
  CHECK(s["clients_truncated"] == true);
  CHECK(s["next_after"] == 8);

  snapshot.next_after.reset();
  const json last = json::parse(status_reply(1, snapshot, 250));
  CHECK(last["clients_truncated"] == false);
  CHECK_FALSE(last.contains("next_after"));
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
