// What SIGHUP changes in a running broker: the difference between the
// running configuration and the one just reloaded (config.h), decided
// without I/O; the server applies it (Server::reload).
//
// At run time the quantum changes, devices of new names are added (a device
// is never removed nor resized by a reload: clients are placed on it), and
// the settings read at each use (priority claims, idle exit, debug logging,
// the output bound) are taken over. The listeners, the deadlines and the
// heartbeat timeout stay as they started: the arbiter and the sockets were
// built with them, so a change there needs a restart, and says so.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "broker_server/config.h"

namespace acb::broker {

struct ReloadChanges {
  std::optional<std::uint64_t> quantum_ms;  ///< the new quantum, when it is not the running one
  std::vector<DeviceSpec> added_devices;    ///< in file order, each new name once
  bool needs_restart = false;               ///< host, ports, deadlines or heartbeat differ
};

/// `running_quantum_ms`: the arbiter's, which set_quantum may have changed
/// since `running` was read. `known_devices`: the names the broker has now.
ReloadChanges reload_changes(const BrokerConfig& running, std::uint64_t running_quantum_ms,
                             const std::vector<std::string>& known_devices, const BrokerConfig& next);

/// Copies into `running` the settings of `next` that apply from the next use
/// on: priority claims (classes already granted stay), idle exit, debug, and
/// max_queued_output_mib (the caller sets its OutputBudget from it).
void take_run_time_settings(BrokerConfig& running, const BrokerConfig& next);

}  // namespace acb::broker
