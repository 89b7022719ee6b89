#include "client/messages.h"

#include "common/frame.h"

namespace acb::client::messages {
namespace {

const nlohmann::json& member(const nlohmann::json& message, const char* name) {
  const auto it = message.find(name);
  if (it == message.end()) {
    throw BrokerError("protocol error: '" + message.value("op", std::string("?")) + "' from the acb broker lacks '" +
                      name + "'");
  }
  return *it;
}

std::uint64_t unsigned_member(const nlohmann::json& message, const char* name) {
  const auto& value = member(message, name);
  if (!value.is_number_unsigned() && !(value.is_number_integer() && value.get<std::int64_t>() >= 0)) {
    throw BrokerError("protocol error: '" + message.value("op", std::string("?")) + "." + name +
                      "' is not a non-negative integer: " + value.dump());
  }
  return value.get<std::uint64_t>();
}

int device_member(const nlohmann::json& message, const char* name) {
  const auto& value = member(message, name);
  if (!value.is_number_integer()) {
    throw BrokerError("protocol error: '" + message.value("op", std::string("?")) + "." + name +
                      "' is not an integer: " + value.dump());
  }
  return value.get<int>();
}

wire::Bytes32 hex32_member(const nlohmann::json& message, const char* name) {
  const auto& value = member(message, name);
  const auto bytes = value.is_string() ? wire::parse_hex32(value.get<std::string>()) : std::nullopt;
  if (!bytes) {
    throw BrokerError("protocol error: '" + message.value("op", std::string("?")) + "." + name +
                      "' is not 64 lowercase hex digits: " + value.dump().substr(0, 80));
  }
  return *bytes;
}

// The first reply of the broker: an error ends the connection there.
void throw_if_refused(const nlohmann::json& message) {
  if (message.value("op", std::string()) == "error") {
    throw BrokerError("the acb broker refused the connection: " +
                      message.value("reason", std::string("no reason given")));
  }
}

}  // namespace

nlohmann::json hello(const ClientOptions& options, const wire::Bytes32& client_nonce, long pid) {
  nlohmann::json m{{"op", "hello"},
                   {"versions", {wire::kProtocolVersion}},
                   {"client_nonce", wire::to_hex(client_nonce)},
                   {"name", options.name},
                   {"pid", pid},
                   {"role", options.admin ? "admin" : "client"},
                   {"priority", options.priority},
                   {"need_bytes", options.need_bytes},
                   {"device", options.device}};
  if (!options.device_uuid.empty() && options.device < 0) m["device_uuid"] = options.device_uuid;
  if (options.fixed && (options.device >= 0 || m.contains("device_uuid"))) m["fixed"] = true;
  if (!options.gang.job.empty()) {
    m["gang"] = options.gang.job;
    m["local_world_size"] = options.gang.local_world_size;
    if (options.gang.local_rank >= 0) m["local_rank"] = options.gang.local_rank;
  }
  return m;
}

Challenge parse_challenge(const nlohmann::json& message) {
  throw_if_refused(message);
  const std::string op = message.value("op", std::string());
  if (op != "challenge") {
    throw BrokerError("protocol error: expected 'challenge' from the acb broker, got '" + op.substr(0, 64) + "'");
  }
  return Challenge{hex32_member(message, "broker_nonce"), hex32_member(message, "broker_proof")};
}

nlohmann::json auth(const wire::Bytes32& client_proof) {
  return {{"op", "auth"}, {"client_proof", wire::to_hex(client_proof)}};
}

nlohmann::json acquire(std::optional<std::uint64_t> need_bytes) {
  nlohmann::json m{{"op", "acquire"}};
  if (need_bytes) m["need_bytes"] = *need_bytes;
  return m;
}

nlohmann::json release(std::optional<std::uint64_t> resident_bytes, bool pinned) {
  nlohmann::json m{{"op", "release"}};
  if (resident_bytes) m["resident_bytes"] = *resident_bytes;
  if (pinned) m["pinned"] = true;
  return m;
}

nlohmann::json residency(std::uint64_t resident_bytes, bool pinned) {
  nlohmann::json m{{"op", "residency"}, {"resident_bytes", resident_bytes}};
  if (pinned) m["pinned"] = true;
  return m;
}

nlohmann::json heartbeat() { return {{"op", "heartbeat"}}; }

Welcome parse_welcome(const nlohmann::json& message) {
  throw_if_refused(message);
  const std::string op = message.value("op", std::string());
  if (op != "welcome") throw BrokerError("protocol error: expected 'welcome' from the acb broker, got '" + op + "'");
  Welcome w;
  w.client_id = unsigned_member(message, "client_id");
  w.device = device_member(message, "device");
  w.device_capacity_bytes = unsigned_member(message, "device_capacity_bytes");
  w.heartbeat_interval_ms = unsigned_member(message, "heartbeat_interval_ms");
  w.heartbeat_timeout_ms = unsigned_member(message, "heartbeat_timeout_ms");
  return w;
}

Grant parse_grant(const nlohmann::json& message) {
  Grant g;
  g.device = device_member(message, "device");
  g.lease = unsigned_member(message, "lease");
  g.quantum_ms = message.contains("quantum_ms") ? unsigned_member(message, "quantum_ms") : 0;
  return g;
}

Revoke parse_revoke(const nlohmann::json& message) {
  Revoke r;
  r.device = device_member(message, "device");
  r.lease = unsigned_member(message, "lease");
  if (message.contains("deadline_ms")) r.deadline_ms = unsigned_member(message, "deadline_ms");
  const auto it = message.find("reason");
  r.reason = (it != message.end() && it->is_string()) ? it->get<std::string>() : std::string();
  return r;
}

Evict parse_evict(const nlohmann::json& message) {
  Evict e;
  e.device = device_member(message, "device");
  e.bytes = unsigned_member(message, "bytes");
  return e;
}

}  // namespace acb::client::messages
