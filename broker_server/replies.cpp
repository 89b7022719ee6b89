#include "broker_server/replies.h"

#include <type_traits>

#include "broker_server/config.h"

namespace acb::broker {

using nlohmann::json;

json challenge_message(const wire::Bytes32& broker_nonce, const wire::Bytes32& broker_proof) {
  return {{"op", "challenge"}, {"broker_nonce", wire::to_hex(broker_nonce)}, {"broker_proof", wire::to_hex(broker_proof)}};
}

json welcome_message(const WelcomeInfo& info) {
  return {{"op", "welcome"},
          {"version", info.version},
          {"client_id", info.client_id},
          {"device", info.device ? *info.device : -1},
          {"device_capacity_bytes", info.device_capacity_bytes},
          {"heartbeat_interval_ms", info.heartbeat_interval_ms},
          {"heartbeat_timeout_ms", info.heartbeat_timeout_ms}};
}

json decision_message(const Decision& decision, std::uint64_t quantum_ms) {
  return std::visit(
      [&](const auto& d) -> json {
        using T = std::decay_t<decltype(d)>;
        if constexpr (std::is_same_v<T, Grant>) {
          return {{"op", "grant"}, {"device", d.device}, {"lease", d.lease}, {"quantum_ms", quantum_ms}};
        } else if constexpr (std::is_same_v<T, Revoke>) {
          json revoke = {{"op", "revoke"}, {"device", d.device}, {"lease", d.lease}, {"reason", to_string(d.reason)}};
          if (d.deadline_ms) revoke["deadline_ms"] = *d.deadline_ms;  // none: yield at the next idle gap
          return revoke;
        } else if constexpr (std::is_same_v<T, Evict>) {
          return {{"op", "evict"}, {"device", d.device}, {"bytes", d.bytes}};
        } else if constexpr (std::is_same_v<T, Reject>) {
          return {{"op", "reject"}, {"reason", d.reason}};
        } else {
          static_assert(std::is_same_v<T, Disconnect>);
          return error_message(d.reason);
        }
      },
      decision);
}

ClientId decision_client(const Decision& decision) {
  return std::visit([](const auto& d) { return d.client; }, decision);
}

json error_message(const std::string& reason, std::optional<Seq> seq) {
  json m = {{"op", "error"}, {"reason", reason}};
  if (seq) m["seq"] = *seq;
  return m;
}

json ok_message(Seq seq) { return {{"op", "ok"}, {"seq", seq}}; }

json status_message(Seq seq, const Snapshot& snapshot, std::uint64_t quantum_ms) {
  json devices = json::array();
  for (const auto& d : snapshot.devices) {
    devices.push_back({{"device", d.device},
                       {"name", d.name},
                       {"capacity_bytes", reported_capacity(d.capacity_bytes)},
                       {"resident_bytes", d.resident_bytes},
                       {"holder", d.holder ? json(*d.holder) : json(nullptr)},
                       {"queue", d.queue},
                       {"draining", d.draining}});
  }
  json clients = json::array();
  for (const auto& c : snapshot.clients) {
    clients.push_back({{"client_id", c.client_id},
                       {"name", c.name.str()},
                       {"pid", c.pid},
                       {"priority", to_string(c.priority)},
                       {"device", c.device},
                       {"state", to_string(c.state)},
                       {"resident_bytes", c.resident_bytes},
                       {"need_bytes", c.need_bytes},
                       {"quota_bytes", c.quota_bytes},
                       {"grants", c.grants},
                       {"waited_us_total", c.waited_us_total},
                       {"preemptions", c.preemptions}});
  }
  json by_state = json::object();
  for (ClientState st : {ClientState::idle, ClientState::waiting, ClientState::holding, ClientState::revoked})
    by_state[to_string(st)] = snapshot.clients_by_state[static_cast<int>(st)];
  json reply = {{"op", "status"},
                {"seq", seq},
                {"quantum_ms", quantum_ms},
                {"devices", devices},
                {"clients", clients},
                {"clients_total", snapshot.clients_total},
                {"clients_by_state", by_state},
                {"clients_truncated", snapshot.next_after.has_value()}};
  if (snapshot.next_after) reply["next_after"] = *snapshot.next_after;
  return reply;
}

json trace_message(Seq seq, const std::vector<LeaseSlice>& slices) {
  // Newest first until the budget is spent: the cost is bounded by what is sent.
  std::vector<json> kept;
  std::size_t bytes = 0;
  for (auto it = slices.rbegin(); it != slices.rend(); ++it) {
    json entry = {{"device", it->device},
                  {"client_id", it->client},
                  {"name", it->name.str()},
                  {"start_us", it->start_us},
                  {"end_us", it->end_us ? json(*it->end_us) : json(nullptr)}};
    bytes += entry.dump().size() + 1;  // the comma
    if (bytes > kTraceMaxBytes) break;
    kept.push_back(std::move(entry));
  }
  json out = json::array();
  for (auto it = kept.rbegin(); it != kept.rend(); ++it) out.push_back(std::move(*it));
  return {{"op", "trace"}, {"seq", seq}, {"slices", out}, {"slices_truncated", kept.size() < slices.size()}};
}

}  // namespace acb::broker
