// The broker's configuration: command-line flags, the --config JSON file and
// the environment, merged into one BrokerConfig (docs/operations.md).
//
// Flags and the file use the same keys: every flag is turned into a JSON
// member and laid over the file's object, so a flag always wins over the file
// and both are validated by one function. On SIGHUP the server re-reads the
// file and merges the same flags again.
//
// Thread-safety: pure functions, except load_config, which reads a file and
// the environment.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "broker_server/arbiter.h"
#include "broker_server/connection_limits.h"
#include "broker_server/policy_priority.h"

namespace acb::broker {

/// A bad flag, file or value; the message names it.
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The arbiter needs a capacity; a device of unknown capacity (0) is given
/// this one, so that every need fits and nothing is ever evicted: the
/// memory-aware policy is off there. Replies and metrics report it as 0.
inline constexpr std::uint64_t kUnknownCapacityBytes = std::uint64_t{1} << 62;
/// Capacity as the arbiter sees it (0 -> kUnknownCapacityBytes).
inline std::uint64_t arbiter_capacity(std::uint64_t bytes) { return bytes == 0 ? kUnknownCapacityBytes : bytes; }
/// Capacity as clients and operators see it (kUnknownCapacityBytes -> 0).
inline std::uint64_t reported_capacity(std::uint64_t bytes) { return bytes >= kUnknownCapacityBytes ? 0 : bytes; }

/// A number the operator sets (file, flag or admin op) and the closed range it
/// must lie in. The ranges keep every duration far from overflowing when
/// turned into microseconds, and out of the values that make no sense (a zero
/// quantum, a heartbeat timeout of a year).
struct Bounded {
  const char* key;
  std::uint64_t min;
  std::uint64_t max;
};
inline constexpr Bounded kQuantumMs{"quantum_ms", 1, 3'600'000};
inline constexpr Bounded kHeartbeatTimeoutMs{"heartbeat_timeout_ms", 10, 3'600'000};
inline constexpr Bounded kPreemptDeadlineMs{"preempt_deadline_ms", 1, 600'000};
inline constexpr Bounded kQuantumDeadlineMs{"quantum_deadline_ms", 1, 600'000};
inline constexpr Bounded kRevokeGraceMs{"revoke_grace_ms", 0, 600'000};
inline constexpr Bounded kAgingMs{"aging_ms", 0, 86'400'000};  ///< 0: no aging
inline constexpr Bounded kIdleExitS{"idle_exit_s", 0, 31'536'000};  ///< 0: never
inline constexpr Bounded kBusyPollUs{"busy_poll_us", 0, 1'000'000};
inline constexpr Bounded kRevokePenaltyMs{"revoke_penalty_ms", 0, 86'400'000};  ///< 0: no penalty
inline constexpr Bounded kRevokeOffencesMax{"revoke_offences_max", 1, 1000};
inline constexpr Bounded kRevokeOffenceWindowMs{"revoke_offence_window_ms", 0, 86'400'000};  ///< 0: never disconnected for it
inline constexpr Bounded kMaxConnections{"max_connections", 1, 1'000'000};
inline constexpr Bounded kMaxConnectionsPerUid{"max_connections_per_uid", 1, 1'000'000};
inline constexpr Bounded kMaxQueuedOutputMib{"max_queued_output_mib", 1, 1'048'576};

/// "is 0, outside its bounds [1, 3600000]" (the caller names the key); empty when within them.
std::string out_of_bounds(const Bounded& bounds, std::uint64_t value);

struct DeviceSpec {
  std::string name;
  std::uint64_t capacity_bytes = 0;  ///< 0 = unknown: memory-aware placement is off
  /// The GPU's UUID (device_uuid.h); empty: synthetic_gpu_uuid(name) (not a probed GPU).
  std::string uuid = {};  // (an initializer: {name, capacity} stays a complete aggregate init)
};

struct BrokerConfig {
  std::string host = "127.0.0.1";
  std::uint16_t port = 43210;          ///< 0 = ephemeral
  std::uint16_t metrics_port = 43211;  ///< 0 = ephemeral
  std::vector<DeviceSpec> devices;     ///< empty after merging: see default_device()
  ArbiterConfig arbiter;
  ConnectionLimitsConfig connections;  ///< max_connections, max_connections_per_uid
  /// Bound on what all connections together may have queued for sending, in
  /// MiB; past it the connection with the largest backlog is closed.
  std::uint64_t max_queued_output_mib = 64;
  std::uint64_t idle_exit_s = 0;       ///< 0 = never exit for idleness
  std::uint64_t busy_poll_us = 50;     ///< keep polling this long after an event before blocking (0 = never)
  std::string port_file;               ///< where to write {"host","port","metrics_port","pid"}
  bool debug = false;                  ///< --log-level debug: one log line per message
  policy::PriorityRules priority;      ///< "priority_classes": who may claim which class
};

/// The parsed command line: the flags as a JSON object, and --config.
struct CommandLine {
  nlohmann::json flags = nlohmann::json::object();
  std::string config_file;
  bool help = false;
};

/// A byte size (common/byte_size.h: "80GiB", "512MiB", "1.5GB", "4096"). Throws ConfigError.
std::uint64_t parse_capacity(std::string_view text);

/// "NAME:CAPACITY" or "NAME" (capacity 0 = unknown). Throws ConfigError.
DeviceSpec parse_device_spec(std::string_view text);

/// Throws ConfigError on unknown flags or missing values.
CommandLine parse_command_line(int argc, const char* const* argv);

/// Validates a merged JSON object (file members overlaid with flags).
/// Throws ConfigError naming the member.
BrokerConfig config_from_json(const nlohmann::json& merged);

/// Finds the node's devices for a broker given none (device_probe.h); may return none.
using DeviceDetector = std::function<std::vector<DeviceSpec>()>;

/// Reads the file (if any), overlays the flags and validates. When neither
/// names a device: ACB_EMULATED_DEVICE's (default_device()) when that is
/// set, else what `detect` finds, else default_device(). Throws ConfigError.
BrokerConfig load_config(const CommandLine& command_line, const DeviceDetector& detect = nullptr);

/// The device used when neither flags nor file name one: "0", with the
/// capacity of ACB_EMULATED_DEVICE ("name[:capacity]") when it is set, else 0.
DeviceSpec default_device();

/// The text of --help.
const char* usage();

}  // namespace acb::broker
