// What a SIGHUP reload changes at run time, and what it leaves for a restart.
#include <string>
#include <vector>

#include "acb_catch.hpp"
#include "broker_server/config_reload.h"

using namespace acb::broker;

namespace {

BrokerConfig running_config() {
  BrokerConfig c;
  c.devices = {DeviceSpec{"0", 1 << 20}, DeviceSpec{"1", 1 << 20}};
  c.arbiter.quantum_ms = 200;
  return c;
}

}  // namespace

TEST_CASE("a reload of the same file changes nothing") {
  const BrokerConfig running = running_config();
  const auto changes = reload_changes(running, 200, {"0", "1"}, running);
  CHECK_FALSE(changes.quantum_ms);
  CHECK(changes.added_devices.empty());
  CHECK_FALSE(changes.needs_restart);
}

TEST_CASE("the quantum is compared with the arbiter's, which set_quantum may have changed") {
  const BrokerConfig running = running_config();
  BrokerConfig next = running;
  // set_quantum made it 50 since the start; the file still says 200: back to 200.
  CHECK(reload_changes(running, 50, {"0", "1"}, next).quantum_ms == 200u);
  next.arbiter.quantum_ms = 50;
  CHECK_FALSE(reload_changes(running, 50, {"0", "1"}, next).quantum_ms);
}

TEST_CASE("devices of new names are added once each, in file order; known ones are left as they are") {
  const BrokerConfig running = running_config();
  BrokerConfig next = running;
  next.devices = {DeviceSpec{"1", 2 << 20}, DeviceSpec{"b", 1 << 20, "GPU-b"}, DeviceSpec{"a", 0},
                  DeviceSpec{"b", 4 << 20}};
  // "x" was added by an admin's add_device: known too.
  const auto changes = reload_changes(running, 200, {"0", "1", "x"}, next);
  REQUIRE(changes.added_devices.size() == 2);
  CHECK(changes.added_devices[0].name == "b");
  CHECK(changes.added_devices[0].capacity_bytes == 1u << 20);
  CHECK(changes.added_devices[0].uuid == "GPU-b");
  CHECK(changes.added_devices[1].name == "a");
  CHECK_FALSE(changes.needs_restart);
}

TEST_CASE("listeners, deadlines and the heartbeat timeout need a restart") {
  const BrokerConfig running = running_config();
  const auto needs_restart = [&](auto change) {
    BrokerConfig next = running;
    change(next);
    return reload_changes(running, 200, {"0", "1"}, next).needs_restart;
  };
  CHECK(needs_restart([](BrokerConfig& c) { c.host = "0.0.0.0"; }));
  CHECK(needs_restart([](BrokerConfig& c) { c.port = 1; }));
  CHECK(needs_restart([](BrokerConfig& c) { c.metrics_port = 1; }));
  CHECK(needs_restart([](BrokerConfig& c) { c.arbiter.heartbeat_timeout_ms = 1; }));
  CHECK(needs_restart([](BrokerConfig& c) { c.arbiter.preempt_deadline_ms = 1; }));
  CHECK(needs_restart([](BrokerConfig& c) { c.arbiter.quantum_deadline_ms = 1; }));
  CHECK(needs_restart([](BrokerConfig& c) { c.arbiter.revoke_grace_ms = 1; }));
  CHECK(needs_restart([](BrokerConfig& c) { c.arbiter.aging_ms = 1; }));
  CHECK(needs_restart([](BrokerConfig& c) { c.arbiter.revoke_penalty_ms = 1; }));
  CHECK(needs_restart([](BrokerConfig& c) { c.arbiter.revoke_offences_max = 1; }));
  CHECK(needs_restart([](BrokerConfig& c) { c.arbiter.revoke_offence_window_ms = 1; }));
  // What applies at run time does not.
  CHECK_FALSE(needs_restart([](BrokerConfig& c) { c.arbiter.quantum_ms = 5; }));
  CHECK_FALSE(needs_restart([](BrokerConfig& c) { c.idle_exit_s = 5; }));
  CHECK_FALSE(needs_restart([](BrokerConfig& c) { c.max_queued_output_mib = 5; }));
}

TEST_CASE("the settings read at each use are taken over; the rest stays") {
  BrokerConfig running = running_config();
  BrokerConfig next = running;
  next.idle_exit_s = 30;
  next.debug = true;
  next.max_queued_output_mib = 7;
  next.port = 9;
  next.arbiter.revoke_grace_ms = 1;
  take_run_time_settings(running, next);
  CHECK(running.idle_exit_s == 30u);
  CHECK(running.debug);
  CHECK(running.max_queued_output_mib == 7u);
  CHECK(running.port != 9);
  CHECK(running.arbiter.revoke_grace_ms != 1);
}
