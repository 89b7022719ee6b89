// Client-to-broker messages (docs/protocol.md, "Messages"), validated.
//
// validate_message turns a parsed frame (a JSON object with a string "op",
// see acb::wire::parse_message) into one typed message, or throws
// ProtocolError saying which member is missing or has the wrong type. Unknown
// members are ignored so that newer clients can add optional members; unknown
// ops, missing required members and wrong types are errors. It knows JSON,
// not sockets, and it is the fuzzer's target together with FrameParser.
//
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "broker_server/arbiter.h"
#include "common/hex.h"

namespace acb::broker {

/// A message that breaks the protocol; the connection that sent it is closed.
class ProtocolError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The longest string member of any message (hello's name and token,
/// add_device's name, ...), in bytes of UTF-8. Longer is a protocol error
/// naming the member: a name is stored and echoed in every status and trace,
/// so its size multiplies the cost of each request that reports it.
inline constexpr std::size_t kMaxStringBytes = 256;

/// Request sequence number, echoed in the reply ("seq").
using Seq = std::int64_t;

/// The hello names the role and brings the client's nonce; the token itself
/// never travels (docs/protocol.md, "Authentication and roles").
/// The handshake's members, and what the arbiter is told of the client
/// (`client`; its uid is the server's to fill in, from the socket, never the peer's word).
struct HelloMessage {
  std::vector<std::int64_t> versions;
  wire::Bytes32 client_nonce{};
  bool admin = false;  ///< role "admin"
  HelloInfo client;
  /// The client's GPU by UUID (or an unambiguous prefix; device_uuid.h),
  /// instead of a device id; the server resolves it into client.pinned_device. Empty: none.
  std::string device_uuid;
};
/// The client's proof that it holds the role's token, answering "challenge".
struct AuthMessage { wire::Bytes32 client_proof{}; };
struct AcquireMessage { std::optional<std::uint64_t> need_bytes; };
/// `pinned`: the resident bytes cannot be offloaded (a process that runs
/// without acb's gate after acb.disable()); never asked to evict.
struct ReleaseMessage { std::optional<std::uint64_t> resident_bytes; bool pinned = false; };
struct ResidencyMessage { std::uint64_t resident_bytes = 0; bool pinned = false; };
struct HeartbeatMessage {};
/// `after`: the page of clients after this id (the previous reply's next_after).
struct StatusMessage { Seq seq = 0; std::optional<ClientId> after; };
struct SetPriorityMessage { Seq seq = 0; Priority priority = Priority::training; std::optional<ClientId> client_id; };
struct SetQuotaMessage { Seq seq = 0; ClientId client_id = 0; std::uint64_t quota_bytes = 0; };
struct SetQuantumMessage { Seq seq = 0; std::uint64_t quantum_ms = 0; };
struct AddDeviceMessage { Seq seq = 0; std::uint64_t capacity_bytes = 0; std::string name; };
struct DrainDeviceMessage { Seq seq = 0; DeviceId device = 0; };
struct RemoveDeviceMessage { Seq seq = 0; DeviceId device = 0; };
struct TraceMessage { Seq seq = 0; };

using ClientMessage =
    std::variant<HelloMessage, AuthMessage, AcquireMessage, ReleaseMessage, ResidencyMessage, HeartbeatMessage,
                 StatusMessage, SetPriorityMessage, SetQuotaMessage, SetQuantumMessage,
                 AddDeviceMessage, DrainDeviceMessage, RemoveDeviceMessage, TraceMessage>;

/// Validates a message (a JSON object with a string "op"). Throws ProtocolError.
ClientMessage validate_message(const nlohmann::json& message);

/// The request's seq, for messages that carry one.
std::optional<Seq> seq_of(const ClientMessage& message);

/// The op name of a validated message, for logs.
const char* op_name(const ClientMessage& message);

/// The highest protocol version both sides speak; nullopt when none.
std::optional<int> negotiate_version(const std::vector<std::int64_t>& client_versions);

}  // namespace acb::broker
