#include "broker_server/message.h"

#include <limits>

#include "broker_server/config.h"
#include "broker_server/peer_text.h"
#include "common/frame.h"
#include "common/hex.h"

namespace acb::broker {
namespace {

using nlohmann::json;

// Each op's reader pulls members out of one message and names the op in errors.
class Reader {
 public:
  Reader(const json& message, const std::string& op) : message_(message), op_(op) {}

  const json* find(const char* key) const {
    auto it = message_.find(key);
    if (it == message_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  [[noreturn]] void fail(const char* key, const std::string& expected) const {
    throw ProtocolError("\"" + op_ + "\": member \"" + key + "\" " + expected);
  }

  std::optional<std::int64_t> opt_int(const char* key, std::int64_t lo, std::int64_t hi) const {
    const json* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_number_integer()) fail(key, "must be an integer");
    if (v->is_number_unsigned()) {
      const auto u = v->get<std::uint64_t>();
      if (u > static_cast<std::uint64_t>(hi)) fail(key, "is out of range");
      return static_cast<std::int64_t>(u);
    }
    const auto i = v->get<std::int64_t>();
    if (i < lo || i > hi) fail(key, "is out of range");
    return i;
  }

  std::int64_t req_int(const char* key, std::int64_t lo, std::int64_t hi) const {
    auto v = opt_int(key, lo, hi);
    if (!v) fail(key, "is missing (integer expected)");
    return *v;
  }

  std::optional<std::uint64_t> opt_bytes(const char* key) const {
    const json* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_number_integer()) fail(key, "must be a non-negative integer");
    if (v->is_number_unsigned()) return v->get<std::uint64_t>();
    const auto i = v->get<std::int64_t>();
    if (i < 0) fail(key, "must be a non-negative integer");
    return static_cast<std::uint64_t>(i);
  }

  std::uint64_t req_bytes(const char* key) const {
    auto v = opt_bytes(key);
    if (!v) fail(key, "is missing (non-negative integer expected)");
    return *v;
  }

  std::optional<bool> opt_bool(const char* key) const {
    const json* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_boolean()) fail(key, "must be true or false");
    return v->get<bool>();
  }

  std::optional<std::string> opt_string(const char* key) const {
    const json* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_string()) fail(key, "must be a string");
    const auto& text = v->get_ref<const std::string&>();
    if (text.size() > kMaxStringBytes)
      fail(key, ("is " + std::to_string(text.size()) + " bytes, longer than the limit of " +
                 std::to_string(kMaxStringBytes) + " bytes (docs/protocol.md, \"Limits\")"));
    return text;
  }

  std::string req_string(const char* key) const {
    auto v = opt_string(key);
    if (!v) fail(key, "is missing (string expected)");
    return *v;
  }

  /// A nonce or proof of the handshake: exactly 64 lowercase hex digits.
  wire::Bytes32 req_hex32(const char* key) const {
    const auto text = opt_string(key);
    if (!text) fail(key, "is missing (64 lowercase hex digits expected)");
    const auto bytes = wire::parse_hex32(*text);
    if (!bytes) fail(key, "must be 64 lowercase hex digits (32 bytes)");
    return *bytes;
  }

  std::optional<Priority> opt_priority(const char* key) const {
    auto text = opt_string(key);
    if (!text) return std::nullopt;
    auto p = parse_priority(*text);
    if (!p) fail(key, "must be \"inference\", \"training\" or \"batch\"");
    return p;
  }

  Seq seq() const {
    return req_int("seq", std::numeric_limits<Seq>::min(), std::numeric_limits<Seq>::max());
  }
  ClientId client_id(const char* key) const {
    return static_cast<ClientId>(req_int(key, 0, std::numeric_limits<std::int64_t>::max()));
  }
  DeviceId device(const char* key) const {
    return static_cast<DeviceId>(req_int(key, 0, std::numeric_limits<DeviceId>::max()));
  }

 private:
  const json& message_;
  const std::string& op_;
};

/// A rank of a multi-process job: "gang" (the job key) with
/// "local_world_size", and optionally "local_rank" below it.
std::optional<GangInfo> read_gang(const Reader& r) {
  const std::optional<std::string> job = r.opt_string("gang");
  constexpr std::int64_t kMaxRanks = std::numeric_limits<std::uint32_t>::max();
  const std::optional<std::int64_t> size = r.opt_int("local_world_size", 1, kMaxRanks);
  const std::optional<std::int64_t> rank = r.opt_int("local_rank", 0, kMaxRanks);
  if (!job) {
    if (size) r.fail("local_world_size", "needs a \"gang\"");
    if (rank) r.fail("local_rank", "needs a \"gang\"");
    return std::nullopt;
  }
  if (job->empty()) r.fail("gang", "must not be empty (the job key)");
  if (!size) r.fail("local_world_size", "is missing (integer >= 1 expected with \"gang\")");
  if (rank && *rank >= *size) r.fail("local_rank", "must be below \"local_world_size\"");
  GangInfo gang{*job, static_cast<std::uint32_t>(*size), std::nullopt};
  if (rank) gang.local_rank = static_cast<std::uint32_t>(*rank);
  return gang;
}

HelloMessage read_hello(const Reader& r) {
  HelloMessage hello;
  const json* versions = r.find("versions");
  if (!versions) r.fail("versions", "is missing (array of integers expected)");
  if (!versions->is_array()) r.fail("versions", "must be an array of integers");
  for (const auto& v : *versions) {
    if (!v.is_number_integer()) r.fail("versions", "must be an array of integers");
    hello.versions.push_back(v.is_number_unsigned()
                                 ? static_cast<std::int64_t>(std::min<std::uint64_t>(
                                       v.get<std::uint64_t>(), std::numeric_limits<std::int64_t>::max()))
                                 : v.get<std::int64_t>());
  }
  if (r.find("token")) {
    // Refused before anything else: a token in clear is never accepted again.
    throw ProtocolError(
        "\"hello\" carries a token in clear, as protocol version 1 did; this broker speaks version " +
        std::to_string(wire::kProtocolVersion) +
        ", whose handshake proves the token without sending it: upgrade this client (docs/protocol.md)");
  }
  hello.client_nonce = r.req_hex32("client_nonce");
  hello.client.name = r.opt_string("name").value_or("");
  hello.client.pid = static_cast<int>(r.opt_int("pid", 0, std::numeric_limits<int>::max()).value_or(0));
  const std::string role = r.opt_string("role").value_or("client");
  if (role != "client" && role != "admin") r.fail("role", "must be \"client\" or \"admin\"");
  hello.admin = role == "admin";
  hello.client.priority = r.opt_priority("priority").value_or(Priority::training);
  hello.client.need_bytes = r.opt_bytes("need_bytes").value_or(0);
  const auto device = r.opt_int("device", -1, std::numeric_limits<DeviceId>::max());
  if (device && *device >= 0) hello.client.pinned_device = static_cast<DeviceId>(*device);
  hello.device_uuid = r.opt_string("device_uuid").value_or("");
  if (!hello.device_uuid.empty() && hello.client.pinned_device)
    r.fail("device_uuid", "and \"device\" cannot both be given");
  hello.client.fixed = r.opt_bool("fixed").value_or(false);
  if (hello.client.fixed && !hello.client.pinned_device && hello.device_uuid.empty())
    r.fail("fixed", "needs a \"device\" or \"device_uuid\" to stay on");
  hello.client.gang = read_gang(r);
  return hello;
}

}  // namespace

ClientMessage validate_message(const json& message) {
  if (!message.is_object()) throw ProtocolError("message is not a JSON object");
  auto op_it = message.find("op");
  if (op_it == message.end() || !op_it->is_string()) {
    throw ProtocolError("message has no string member \"op\"");
  }
  const std::string& op = op_it->get_ref<const std::string&>();
  const Reader r(message, op);

  if (op == "hello") return read_hello(r);
  if (op == "auth") return AuthMessage{r.req_hex32("client_proof")};
  if (op == "acquire") return AcquireMessage{r.opt_bytes("need_bytes")};
  if (op == "release") return ReleaseMessage{r.opt_bytes("resident_bytes"), r.opt_bool("pinned").value_or(false)};
  if (op == "residency")
    return ResidencyMessage{r.req_bytes("resident_bytes"), r.opt_bool("pinned").value_or(false)};
  if (op == "heartbeat") return HeartbeatMessage{};
  if (op == "status") {
    StatusMessage m{r.seq(), std::nullopt};
    if (r.find("after")) m.after = r.client_id("after");
    return m;
  }
  if (op == "set_priority") {
    SetPriorityMessage m{r.seq(), Priority::training, std::nullopt};
    auto p = r.opt_priority("priority");
    if (!p) r.fail("priority", "is missing (string expected)");
    m.priority = *p;
    if (r.find("client_id")) m.client_id = r.client_id("client_id");
    return m;
  }
  if (op == "set_quota") return SetQuotaMessage{r.seq(), r.client_id("client_id"), r.req_bytes("quota_bytes")};
  if (op == "set_quantum") {
    const auto quantum_ms = r.req_bytes("quantum_ms");
    if (const std::string why = out_of_bounds(kQuantumMs, quantum_ms); !why.empty())
      r.fail("quantum_ms", why);
    return SetQuantumMessage{r.seq(), quantum_ms};
  }
  if (op == "add_device") {
    AddDeviceMessage m{r.seq(), r.req_bytes("capacity_bytes"), ""};
    m.name = r.opt_string("name").value_or("");
    return m;
  }
  if (op == "drain_device") return DrainDeviceMessage{r.seq(), r.device("device")};
  if (op == "remove_device") return RemoveDeviceMessage{r.seq(), r.device("device")};
  if (op == "trace") return TraceMessage{r.seq()};

  // Bound the echoed name so a huge bogus op does not become a huge reply or log line.
  throw ProtocolError("unknown op \"" + bounded_text(op) + "\"");
}

std::optional<Seq> seq_of(const ClientMessage& message) {
  return std::visit(
      [](const auto& m) -> std::optional<Seq> {
        if constexpr (requires { m.seq; }) {
          return m.seq;
        } else {
          return std::nullopt;
        }
      },
      message);
}

const char* op_name(const ClientMessage& message) {
  static constexpr const char* kNames[] = {"hello",       "auth",       "acquire",      "release",
                                           "residency",   "heartbeat",  "status",       "set_priority",
                                           "set_quota",   "set_quantum", "add_device",  "drain_device",
                                           "remove_device", "trace"};
  static_assert(std::size(kNames) == std::variant_size_v<ClientMessage>);
  return kNames[message.index()];
}

std::optional<int> negotiate_version(const std::vector<std::int64_t>& client_versions) {
  std::optional<int> best;
  for (auto v : client_versions) {
    if (v >= acb::wire::kOldestProtocolVersion && v <= acb::wire::kProtocolVersion && (!best || v > *best)) best = static_cast<int>(v);
  }
  return best;
}

}  // namespace acb::broker
