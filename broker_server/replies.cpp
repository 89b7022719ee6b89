#include "broker_server/replies.h"

#include <type_traits>

#include "broker_server/config.h"
#include "broker_server/json_text.h"

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

std::string status_reply(Seq seq, const Snapshot& snapshot, std::uint64_t quantum_ms,
                         const std::map<std::string, std::string>& device_uuids) {
  JsonText out;
  out.begin_object().key("op").string("status").key("seq").number(seq).key("quantum_ms").number(quantum_ms);
  out.key("devices").begin_array();
  for (const auto& d : snapshot.devices) {
    out.begin_object()
        .key("device").number(d.device)
        .key("name").string(d.name);
    if (auto it = device_uuids.find(d.name); it != device_uuids.end()) out.key("uuid").string(it->second);
    out.key("capacity_bytes").number(reported_capacity(d.capacity_bytes))
        .key("resident_bytes").number(d.resident_bytes)
        .key("holder");
    if (d.holder) out.number(*d.holder); else out.null();
    out.key("queue").begin_array();
    for (const ClientId waiter : d.queue) out.number(waiter);
    out.end_array().key("draining").boolean(d.draining).end_object();
  }
  out.end_array().key("clients").begin_array();
  for (const auto& c : snapshot.clients) {
    out.begin_object()
        .key("client_id").number(c.client_id)
        .key("name").string(c.name.str())
        .key("pid").number(c.pid)
        .key("priority").string(to_string(c.priority))
        .key("device").number(c.device)
        .key("state").string(to_string(c.state))
        .key("resident_bytes").number(c.resident_bytes)
        .key("need_bytes").number(c.need_bytes)
        .key("quota_bytes").number(c.quota_bytes)
        .key("grants").number(c.grants)
        .key("waited_us_total").number(c.waited_us_total)
        .key("preemptions").number(c.preemptions);
    if (!c.gang.empty()) {
      out.key("gang").string(c.gang);
      if (c.local_rank) out.key("local_rank").number(*c.local_rank);
    }
    out.end_object();
  }
  out.end_array().key("clients_total").number(snapshot.clients_total).key("clients_by_state").begin_object();
  for (ClientState st : {ClientState::idle, ClientState::waiting, ClientState::holding, ClientState::revoked})
    out.key(to_string(st)).number(snapshot.clients_by_state[static_cast<int>(st)]);
  out.end_object().key("clients_truncated").boolean(snapshot.next_after.has_value());
  if (snapshot.next_after) out.key("next_after").number(*snapshot.next_after);
  return out.end_object().take();
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
