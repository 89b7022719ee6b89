// Broker-to-client messages (docs/protocol.md, "Broker to client"): built as
// json trees, except the `status` reply, written as JSON text. Arbiter
// decisions, snapshots and timelines become frames here and nowhere else, so
// the protocol document has one place to be checked against.
//
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "broker_server/arbiter.h"
#include "broker_server/message.h"
#include "common/frame.h"
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
/// Clients listed in one `status` reply: with names of at most
/// kMaxStringBytes, the reply stays far below a frame whatever the number of
/// clients; the rest are counted and paged (docs/protocol.md, "Limits").
inline constexpr std::size_t kStatusMaxClients = 256;
/// The share of a frame a `trace` reply may fill with slices (the rest is
/// headroom for its envelope).
inline constexpr std::size_t kTraceMaxBytes = wire::kMaxFrameBytes - 4096;

/// The `status` reply's payload (JSON text, to be framed). `snapshot` is one
/// page (Arbiter::snapshot with kStatusMaxClients): the reply carries the
/// totals and, when more follow, the cursor of the next page. Written as text
/// rather than built as a json tree, since clients may ask for it often and
/// the broker's one thread serves everyone else meanwhile (json_text.h).
/// `device_uuids`: device name -> UUID, shown as each device's "uuid" (omitted for a name it lacks).
std::string status_reply(Seq seq, const Snapshot& snapshot, std::uint64_t quantum_ms,
                         const std::map<std::string, std::string>& device_uuids = {});
/// The newest of `slices` (oldest first) whose encoding fits kTraceMaxBytes;
/// `slices_truncated` says whether older ones were left out.
nlohmann::json trace_message(Seq seq, const std::vector<LeaseSlice>& slices);

}  // namespace acb::broker
