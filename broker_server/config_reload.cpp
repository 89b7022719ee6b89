#include "broker_server/config_reload.h"

#include <set>

namespace acb::broker {

ReloadChanges reload_changes(const BrokerConfig& running, std::uint64_t running_quantum_ms,
                             const std::vector<std::string>& known_devices, const BrokerConfig& next) {
  ReloadChanges changes;
  if (next.arbiter.quantum_ms != running_quantum_ms) changes.quantum_ms = next.arbiter.quantum_ms;
  std::set<std::string> known(known_devices.begin(), known_devices.end());
  for (const auto& d : next.devices) {
    if (known.insert(d.name).second) changes.added_devices.push_back(d);
  }
  const auto& a = running.arbiter;
  const auto& b = next.arbiter;
  changes.needs_restart = next.host != running.host || next.port != running.port ||
                          next.metrics_port != running.metrics_port ||
                          a.heartbeat_timeout_ms != b.heartbeat_timeout_ms ||
                          a.preempt_deadline_ms != b.preempt_deadline_ms ||
                          a.quantum_deadline_ms != b.quantum_deadline_ms || a.revoke_grace_ms != b.revoke_grace_ms ||
                          a.aging_ms != b.aging_ms || a.revoke_penalty_ms != b.revoke_penalty_ms ||
                          a.revoke_offences_max != b.revoke_offences_max ||
                          a.revoke_offence_window_ms != b.revoke_offence_window_ms;
  return changes;
}

void take_run_time_settings(BrokerConfig& running, const BrokerConfig& next) {
  running.priority = next.priority;
  running.idle_exit_s = next.idle_exit_s;
  running.debug = next.debug;
  // A lower bound closes the largest backlogs at the next frame queued, as any crossing does.
  running.max_queued_output_mib = next.max_queued_output_mib;
}

}  // namespace acb::broker
