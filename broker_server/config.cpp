#include "broker_server/config.h"

#include "broker_server/config_file.h"
#include "broker_server/config_priority.h"
#include "common/byte_size.h"

#include <cctype>
#include <cstdlib>
#include <limits>

namespace acb::broker {
namespace {

using nlohmann::json;

struct Flag {
  const char* name;  ///< without the leading "--"
  const char* key;   ///< the JSON member it sets
  enum Kind { text, number, device, level } kind;
};

constexpr Flag kFlags[] = {
    {"host", "host", Flag::text},
    {"port", "port", Flag::number},
    {"metrics-port", "metrics_port", Flag::number},
    {"device", "devices", Flag::device},
    {"quantum-ms", "quantum_ms", Flag::number},
    {"heartbeat-timeout-ms", "heartbeat_timeout_ms", Flag::number},
    {"preempt-deadline-ms", "preempt_deadline_ms", Flag::number},
    {"quantum-deadline-ms", "quantum_deadline_ms", Flag::number},
    {"revoke-grace-ms", "revoke_grace_ms", Flag::number},
    {"aging-ms", "aging_ms", Flag::number},
    {"idle-exit-s", "idle_exit_s", Flag::number},
    {"busy-poll-us", "busy_poll_us", Flag::number},
    {"revoke-penalty-ms", "revoke_penalty_ms", Flag::number},
    {"revoke-offences-max", "revoke_offences_max", Flag::number},
    {"revoke-offence-window-ms", "revoke_offence_window_ms", Flag::number},
    {"max-connections", "max_connections", Flag::number},
    {"max-connections-per-uid", "max_connections_per_uid", Flag::number},
    {"max-queued-output-mib", "max_queued_output_mib", Flag::number},
    {"port-file", "port_file", Flag::text},
    {"log-level", "log_level", Flag::level},
};

std::uint64_t parse_unsigned(std::string_view text, const std::string& what) {
  if (text.empty()) throw ConfigError(what + ": empty value");
  std::uint64_t value = 0;
  for (char c : text) {
    if (!std::isdigit(static_cast<unsigned char>(c))) {
      throw ConfigError(what + ": \"" + std::string(text) + "\" is not a non-negative integer");
    }
    const std::uint64_t digit = static_cast<std::uint64_t>(c - '0');
    if (value > (std::numeric_limits<std::uint64_t>::max() - digit) / 10) {
      throw ConfigError(what + ": \"" + std::string(text) + "\" is too large");
    }
    value = value * 10 + digit;
  }
  return value;
}

std::uint64_t member_unsigned(const json& merged, const char* key, std::uint64_t fallback,
                              std::uint64_t max = std::numeric_limits<std::uint64_t>::max()) {
  auto it = merged.find(key);
  if (it == merged.end() || it->is_null()) return fallback;
  std::uint64_t value = 0;
  if (it->is_number_integer() && (it->is_number_unsigned() || it->get<std::int64_t>() >= 0)) {
    value = it->get<std::uint64_t>();
  } else if (it->is_string()) {
    value = parse_unsigned(it->get<std::string>(), key);
  } else {
    throw ConfigError(std::string("config member \"") + key + "\" must be a non-negative integer");
  }
  if (value > max) {
    throw ConfigError(std::string("config member \"") + key + "\" is " + std::to_string(value) +
                      ", above the maximum " + std::to_string(max));
  }
  return value;
}

std::uint64_t member_bounded(const json& merged, const Bounded& bounds, std::uint64_t fallback) {
  const std::uint64_t value = member_unsigned(merged, bounds.key, fallback);
  if (const std::string why = out_of_bounds(bounds, value); !why.empty())
    throw ConfigError(std::string("config member \"") + bounds.key + "\" " + why);
  return value;
}

std::string member_string(const json& merged, const char* key, std::string fallback) {
  auto it = merged.find(key);
  if (it == merged.end() || it->is_null()) return fallback;
  if (!it->is_string()) throw ConfigError(std::string("config member \"") + key + "\" must be a string");
  return it->get<std::string>();
}

DeviceSpec device_from_json(const json& entry) {
  if (entry.is_string()) return parse_device_spec(entry.get<std::string>());
  if (!entry.is_object()) {
    throw ConfigError("config \"devices\" entries must be \"NAME:CAPACITY\" or {\"name\",\"capacity\"}");
  }
  DeviceSpec spec;
  spec.name = member_string(entry, "name", "");
  if (spec.name.empty()) throw ConfigError("config \"devices\" entry without a \"name\"");
  auto cap = entry.find("capacity");
  if (cap != entry.end() && !cap->is_null()) {
    if (cap->is_number_integer() && (cap->is_number_unsigned() || cap->get<std::int64_t>() >= 0)) {
      spec.capacity_bytes = cap->get<std::uint64_t>();
    } else if (cap->is_string()) {
      spec.capacity_bytes = parse_capacity(cap->get<std::string>());
    } else {
      throw ConfigError("config device \"" + spec.name + "\": \"capacity\" must be bytes or a string like \"80GiB\"");
    }
  }
  return spec;
}

}  // namespace

std::string out_of_bounds(const Bounded& bounds, std::uint64_t value) {
  if (value >= bounds.min && value <= bounds.max) return {};
  return "is " + std::to_string(value) + ", outside its bounds [" +
         std::to_string(bounds.min) + ", " + std::to_string(bounds.max) + "]";
}

std::uint64_t parse_capacity(std::string_view text) {
  try {
    return parse_byte_size(text);
  } catch (const std::invalid_argument& e) {
    throw ConfigError(std::string("capacity ") + e.what());
  }
}

DeviceSpec parse_device_spec(std::string_view text) {
  DeviceSpec spec;
  const auto colon = text.rfind(':');
  spec.name = std::string(text.substr(0, colon));
  if (colon != std::string_view::npos) spec.capacity_bytes = parse_capacity(text.substr(colon + 1));
  if (spec.name.empty()) throw ConfigError("device \"" + std::string(text) + "\" has no name (use NAME:CAPACITY)");
  return spec;
}

CommandLine parse_command_line(int argc, const char* const* argv) {
  CommandLine cl;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      cl.help = true;
      continue;
    }
    if (arg.rfind("--", 0) != 0) throw ConfigError("unexpected argument \"" + arg + "\" (see --help)");
    std::string name = arg.substr(2);
    std::optional<std::string> value;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
    }
    auto take_value = [&]() -> std::string {
      if (value) return *value;
      if (i + 1 >= argc) throw ConfigError("flag --" + name + " needs a value");
      return argv[++i];
    };
    if (name == "config") {
      cl.config_file = take_value();
      continue;
    }
    const Flag* flag = nullptr;
    for (const auto& f : kFlags) {
      if (name == f.name) flag = &f;
    }
    if (!flag) throw ConfigError("unknown flag --" + name + " (see --help)");
    const std::string v = take_value();
    switch (flag->kind) {
      case Flag::text:
        cl.flags[flag->key] = v;
        break;
      case Flag::number:
        cl.flags[flag->key] = parse_unsigned(v, "--" + name);
        break;
      case Flag::device:
        parse_device_spec(v);  // fail at once on a bad spec
        cl.flags[flag->key].push_back(v);
        break;
      case Flag::level:
        if (v != "info" && v != "debug") throw ConfigError("--log-level must be info or debug, not \"" + v + "\"");
        cl.flags[flag->key] = v;
        break;
    }
  }
  return cl;
}

BrokerConfig config_from_json(const json& merged) {
  if (!merged.is_object()) throw ConfigError("the configuration must be a JSON object");
  static const char* kKnown[] = {"host", "port", "metrics_port", "devices", "quantum_ms",
                                 "heartbeat_timeout_ms", "preempt_deadline_ms", "quantum_deadline_ms",
                                 "revoke_grace_ms", "aging_ms", "idle_exit_s", "busy_poll_us", "port_file",
                                 "log_level", "priority_classes", "revoke_penalty_ms", "revoke_offences_max",
                                 "revoke_offence_window_ms", "max_connections", "max_connections_per_uid",
                                 "max_queued_output_mib"};
  for (const auto& [key, value] : merged.items()) {
    bool known = false;
    for (const char* k : kKnown) known = known || key == k;
    if (!known) throw ConfigError("unknown config member \"" + key + "\"");
  }
  BrokerConfig c;
  const ArbiterConfig defaults;
  c.host = member_string(merged, "host", c.host);
  c.port = static_cast<std::uint16_t>(member_unsigned(merged, "port", c.port, 65535));
  c.metrics_port = static_cast<std::uint16_t>(member_unsigned(merged, "metrics_port", c.metrics_port, 65535));
  c.arbiter.quantum_ms = member_bounded(merged, kQuantumMs, defaults.quantum_ms);
  c.arbiter.heartbeat_timeout_ms = member_bounded(merged, kHeartbeatTimeoutMs, defaults.heartbeat_timeout_ms);
  c.arbiter.preempt_deadline_ms = member_bounded(merged, kPreemptDeadlineMs, defaults.preempt_deadline_ms);
  c.arbiter.quantum_deadline_ms = member_bounded(merged, kQuantumDeadlineMs, defaults.quantum_deadline_ms);
  c.arbiter.revoke_grace_ms = member_bounded(merged, kRevokeGraceMs, defaults.revoke_grace_ms);
  c.arbiter.aging_ms = member_bounded(merged, kAgingMs, defaults.aging_ms);
  c.arbiter.revoke_penalty_ms = member_bounded(merged, kRevokePenaltyMs, defaults.revoke_penalty_ms);
  c.arbiter.revoke_offences_max = member_bounded(merged, kRevokeOffencesMax, defaults.revoke_offences_max);
  c.arbiter.revoke_offence_window_ms =
      member_bounded(merged, kRevokeOffenceWindowMs, defaults.revoke_offence_window_ms);
  c.idle_exit_s = member_bounded(merged, kIdleExitS, 0);
  c.busy_poll_us = member_bounded(merged, kBusyPollUs, c.busy_poll_us);
  c.connections.max_connections = member_bounded(merged, kMaxConnections, c.connections.max_connections);
  c.connections.max_connections_per_uid =
      member_bounded(merged, kMaxConnectionsPerUid, c.connections.max_connections_per_uid);
  c.max_queued_output_mib = member_bounded(merged, kMaxQueuedOutputMib, c.max_queued_output_mib);
  c.port_file = member_string(merged, "port_file", "");
  const std::string level = member_string(merged, "log_level", "info");
  if (level != "info" && level != "debug") throw ConfigError("log_level must be \"info\" or \"debug\"");
  c.debug = level == "debug";
  if (auto it = merged.find("priority_classes"); it != merged.end()) c.priority = priority_rules_from_json(*it);
  if (auto it = merged.find("devices"); it != merged.end() && !it->is_null()) {
    if (!it->is_array()) throw ConfigError("config member \"devices\" must be an array");
    for (const auto& entry : *it) c.devices.push_back(device_from_json(entry));
  }
  return c;
}

DeviceSpec default_device() {
  DeviceSpec spec{"0", 0};
  if (const char* env = std::getenv("ACB_EMULATED_DEVICE"); env && *env) {
    const std::string_view text(env);
    if (auto colon = text.rfind(':'); colon != std::string_view::npos) {
      try {
        spec.capacity_bytes = parse_capacity(text.substr(colon + 1));
      } catch (const ConfigError& e) {
        throw ConfigError(std::string("ACB_EMULATED_DEVICE=") + env + ": " + e.what());
      }
    }
  }
  return spec;
}

BrokerConfig load_config(const CommandLine& command_line, const DeviceDetector& detect) {
  json merged = json::object();
  if (!command_line.config_file.empty()) {
    merged = json::parse(read_config_file(command_line.config_file), nullptr, /*allow_exceptions=*/false,
                         /*ignore_comments=*/true);
    if (merged.is_discarded() || !merged.is_object()) {
      throw ConfigError("config file " + command_line.config_file + " is not a JSON object");
    }
  }
  for (const auto& [key, value] : command_line.flags.items()) merged[key] = value;
  BrokerConfig config;
  try {
    config = config_from_json(merged);
  } catch (const ConfigError& e) {
    if (command_line.config_file.empty()) throw;
    throw ConfigError(std::string(e.what()) + " (config file " + command_line.config_file + ")");
  }
  if (config.devices.empty()) {
    const char* emulated = std::getenv("ACB_EMULATED_DEVICE");
    if ((emulated == nullptr || *emulated == '\0') && detect) config.devices = detect();
    if (config.devices.empty()) config.devices.push_back(default_device());
  }
  return config;
}

const char* usage() {
  return "usage: acb-broker [--host 127.0.0.1] [--port 43210] [--metrics-port 43211]\n"
         "                  [--device NAME:CAPACITY]... [--config FILE] [--quantum-ms N]\n"
         "                  [--heartbeat-timeout-ms N] [--preempt-deadline-ms N]\n"
         "                  [--quantum-deadline-ms N] [--revoke-grace-ms N] [--aging-ms N]\n"
         "                  [--idle-exit-s N] [--busy-poll-us N] [--port-file FILE] [--log-level info|debug]\n"
         "                  [--revoke-penalty-ms N] [--revoke-offences-max N] [--revoke-offence-window-ms N]\n"
         "                  [--max-connections 1024] [--max-connections-per-uid 64]\n"
         "Capacities: 80GiB, 512MiB, 1.5GB or plain bytes. Port 0 picks a free port.\n"
         "Flags win over the --config file; SIGHUP re-reads the file. See docs/operations.md.\n";
}

}  // namespace acb::broker
