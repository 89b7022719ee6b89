// The Prometheus text: counters from the arbiter, histogram and residency moves from the server.
#include <cmath>
#include <string>

#include "acb_catch.hpp"
#include "broker_server/metrics.h"

using namespace acb::broker;

TEST_CASE("the wait histogram is cumulative and counts everything in +Inf") {
  WaitHistogram h;
  h.observe(0.00005);
  h.observe(0.003);
  h.observe(0.003);
  h.observe(100.0);
  CHECK(h.count() == 4);
  CHECK(h.cumulative(0) == 1);                   // <= 0.1 ms
  CHECK(h.cumulative(3) == 3);                   // <= 5 ms
  CHECK(h.cumulative(WaitHistogram::kBoundsSeconds.size() - 1) == 3);  // 100 s is only in +Inf
  CHECK(std::abs(h.sum_seconds() - 100.00605) < 1e-9);
}

TEST_CASE("residency reports move the evicted and restored totals") {
  BrokerMetrics m;
  m.on_residency_report(0, 100);
  m.on_residency_report(100, 40);
  m.on_residency_report(40, 40);
  m.on_residency_report(40, 90);
  CHECK(m.restored_bytes_total == 150u);
  CHECK(m.evicted_bytes_total == 60u);
}

TEST_CASE("render_prometheus exports every required family with device labels") {
  BrokerMetrics m;
  m.lease_wait.observe(0.002);
  m.on_residency_report(0, 4096);
  ArbiterCounters counters;
  counters.grants = 7;
  counters.preemptions = 2;
  counters.evict_requested_bytes = 1234;
  Snapshot snap;
  snap.devices.push_back(DeviceSnapshot{0, "gpu\"0", 1ull << 30, 4096, ClientId{5}, {6, 7}, false});
  snap.devices.push_back(DeviceSnapshot{1, "spare", 1ull << 62, 0, std::nullopt, {}, true});
  const std::string text = render_prometheus(m, counters, snap, 3);
  auto has = [&](const std::string& line) {
    INFO(line);
    CHECK(text.find(line + "\n") != std::string::npos);
  };
  has("acb_leases_granted_total 7");
  has("acb_preemptions_total 2");
  has("acb_evict_requested_bytes_total 1234");
  has("acb_restored_bytes_total 4096");
  has("acb_evicted_bytes_total 0");
  has("acb_clients 3");
  has("# TYPE acb_lease_wait_seconds histogram");
  has("acb_lease_wait_seconds_bucket{le=\"0.001\"} 0");
  has("acb_lease_wait_seconds_bucket{le=\"0.005\"} 1");
  has("acb_lease_wait_seconds_bucket{le=\"+Inf\"} 1");
  has("acb_lease_wait_seconds_count 1");
  has("acb_device_holder{device=\"0\",name=\"gpu\\\"0\"} 5");
  has("acb_device_holder{device=\"1\",name=\"spare\"} -1");
  has("acb_device_resident_bytes{device=\"0\",name=\"gpu\\\"0\"} 4096");
  has("acb_device_capacity_bytes{device=\"0\",name=\"gpu\\\"0\"} 1073741824");
  has("acb_device_capacity_bytes{device=\"1\",name=\"spare\"} 0");  // unknown capacity
  has("acb_device_queue_length{device=\"0\",name=\"gpu\\\"0\"} 2");
}
