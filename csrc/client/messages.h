// messages: the client's side of docs/protocol.md as JSON <-> structs.
//
// Building hello, auth and the lease ops, and reading challenge, welcome,
// grant, revoke and evict with their members type-checked. A member of the wrong type or a
// missing member is a protocol error (BrokerError naming the op and member).
// Pure functions; no I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "client/broker_client.h"
#include "common/hex.h"

namespace acb::client::messages {

/// The handshake (docs/protocol.md, "Authentication and roles"): hello brings
/// the client's nonce, never the token; challenge brings the broker's nonce and
/// proof; auth answers with the client's proof.
struct Challenge {
  wire::Bytes32 broker_nonce{};
  wire::Bytes32 broker_proof{};
};
nlohmann::json hello(const ClientOptions& options, const wire::Bytes32& client_nonce, long pid);
/// Reads a challenge; an "error" reply becomes BrokerError with its reason.
Challenge parse_challenge(const nlohmann::json& message);
nlohmann::json auth(const wire::Bytes32& client_proof);
nlohmann::json acquire(std::optional<std::uint64_t> need_bytes);
/// `pinned`: the resident bytes cannot be offloaded (sent only when true).
nlohmann::json release(std::optional<std::uint64_t> resident_bytes, bool pinned = false);
nlohmann::json residency(std::uint64_t resident_bytes, bool pinned = false);
nlohmann::json heartbeat();

/// Reads a welcome; an "error" reply becomes BrokerError with its reason.
Welcome parse_welcome(const nlohmann::json& message);
Grant parse_grant(const nlohmann::json& message);
Revoke parse_revoke(const nlohmann::json& message);
Evict parse_evict(const nlohmann::json& message);

}  // namespace acb::client::messages
