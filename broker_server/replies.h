// Broker-to-client messages (docs/protocol.md, "Broker to client"), built as
// JSON. Arbiter decisions, snapshots and timelines become frames here and
// nowhere else, so the protocol document has one place to be checked against.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "broker_server/arbiter.h"
#include "broker_server/message.h"
#include "common/hex.h"

namespace acb::broker {

struct WelcomeInfo {
  int version = 1;
  ClientId client_id = 0;
  std::optional<DeviceId> device;  ///< nullopt for admin connections: -1 on the wire
  std::uint64_t device_capacity_bytes = 0;
  std::uint64_t heartbeat_interval_ms = 0;
  std::uint64_t heartbeat_timeout_ms = 0;
};

/// The broker's half of the handshake: its nonce and its proof (common/handshake.h).
nlohmann::json challenge_message(const wire::Bytes32& broker_nonce, const wire::Bytes32& broker_proof);
nlohmann::json welcome_message(const WelcomeInfo& info);

/// The frame for a decision addressed to its client. Disconnect becomes the
/// error sent before the close. `quantum_ms` is the current quantum (grants carry it).
nlohmann::json decision_message(const Decision& decision, std::uint64_t quantum_ms);

/// The client a decision is addressed to.
ClientId decision_client(const Decision& decision);

nlohmann::json error_message(const std::string& reason, std::optional<Seq> seq = std::nullopt);
nlohmann::json ok_message(Seq seq);
nlohmann::json status_message(Seq seq, const Snapshot& snapshot, std::uint64_t quantum_ms);
nlohmann::json trace_message(Seq seq, const std::vector<LeaseSlice>& slices);

}  // namespace acb::broker
