#include "broker_server/request_handler.h"

#include <algorithm>
#include <cstdio>
#include <type_traits>
#include <vector>

#include "broker_server/device_uuid.h"
#include "broker_server/peer_text.h"
#include "broker_server/priority_claim.h"
#include "broker_server/replies.h"
#include "common/frame.h"

namespace acb::broker {

using nlohmann::json;

namespace {

std::uint64_t heartbeat_interval_ms(std::uint64_t timeout_ms) {
  // Three beats per timeout: one lost or late beat does not kill a client.
  return std::max<std::uint64_t>(1, timeout_ms / 3);
}

void send(Session& session, const json& message) { session.send_frame(wire::encode_message(message)); }

}  // namespace

RequestHandler::RequestHandler(Arbiter& arbiter, const BrokerConfig& config, BrokerMetrics& metrics,
                               RequestHost& host)
    : arbiter_(arbiter), config_(config), metrics_(metrics), host_(host) {}

DeviceId RequestHandler::add_device(const std::string& name, std::uint64_t capacity_bytes, const std::string& uuid) {
  const DeviceId device = arbiter_.add_device(name, capacity_bytes);
  device_uuids_[name] = uuid.empty() ? synthetic_gpu_uuid(name) : uuid;
  return device;
}

std::optional<json> RequestHandler::admit(Session& session, const HelloMessage& hello, int version, TimeUs now) {
  auto& state = session.state();
  WelcomeInfo welcome;
  welcome.version = version;
  welcome.client_id = session.id();
  welcome.heartbeat_timeout_ms = config_.arbiter.heartbeat_timeout_ms;
  welcome.heartbeat_interval_ms = heartbeat_interval_ms(config_.arbiter.heartbeat_timeout_ms);
  if (!hello.admin) {
    if (const std::string why = priority_claim_refusal(config_.priority, state.uid, hello.client.priority); !why.empty()) {
      std::fprintf(stderr, "acb-broker: refusing client %llu from %s: %s\n",
                   static_cast<unsigned long long>(session.id()), session.peer().c_str(), why.c_str());
      session.close_after_error(wire::encode_message(error_message(why)));
      return std::nullopt;
    }
    HelloInfo info = hello.client;
    if (!hello.device_uuid.empty()) {
      std::string why;
      info.pinned_device = device_by_uuid(hello.device_uuid, now, why);
      if (!info.pinned_device) {
        std::fprintf(stderr, "acb-broker: refusing client %llu from %s: %s\n",
                     static_cast<unsigned long long>(session.id()), session.peer().c_str(), log_text(why).c_str());
        session.close_after_error(wire::encode_message(error_message(why)));
        return std::nullopt;
      }
    }
    info.uid = state.uid;
    Placement placement;
    try {
      placement = arbiter_.on_hello(session.id(), info, now);
    } catch (const std::exception& e) {
      placement.device.reset();
      placement.error = e.what();
    }
    if (!placement.device) {
      std::fprintf(stderr, "acb-broker: cannot place client %llu from %s: %s\n",
                   static_cast<unsigned long long>(session.id()), session.peer().c_str(),
                   log_text(placement.error).c_str());
      session.close_after_error(wire::encode_message(error_message(placement.error)));
      return std::nullopt;
    }
    state.in_arbiter = true;
    welcome.device = *placement.device;
    welcome.device_capacity_bytes = reported_capacity(arbiter_.capacity_of(*placement.device));
  }
  return welcome_message(welcome);
}

std::optional<DeviceId> RequestHandler::device_by_uuid(const std::string& wanted, TimeUs now, std::string& why) const {
  std::vector<DeviceId> ids;
  std::vector<std::string> uuids;
  std::string known;
  for (const auto& d : arbiter_.snapshot(now, std::nullopt, 0).devices) {
    auto it = device_uuids_.find(d.name);
    ids.push_back(d.device);
    uuids.push_back(it != device_uuids_.end() ? it->second : synthetic_gpu_uuid(d.name));
    known += (known.empty() ? "" : ", ") + std::to_string(d.device) + "=" + uuids.back();
  }
  const int index = match_gpu_uuid(wanted, uuids);
  if (index >= 0) return ids[static_cast<std::size_t>(index)];
  why = "device with UUID " + log_text(wanted, 96) +
        (index == kAmbiguousUuid ? " is ambiguous (several devices' UUIDs start with it)" : " does not exist") +
        " at this broker (its devices: " + known + ")";
  return std::nullopt;
}

void RequestHandler::note_residency(Session& session, std::optional<std::uint64_t> resident_bytes) {
  if (!resident_bytes) return;
  auto& state = session.state();
  metrics_.on_residency_report(state.reported_resident_bytes, *resident_bytes);
  state.reported_resident_bytes = *resident_bytes;
}

void RequestHandler::handle(Session& session, const ClientMessage& message, TimeUs now) {
  auto& state = session.state();
  const ClientId id = session.id();
  // Any frame is proof of life (docs/protocol.md, "Liveness").
  if (state.in_arbiter) arbiter_.on_heartbeat(id, now);
  std::visit(
      [&](const auto& m) {
        using T = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<T, AcquireMessage> || std::is_same_v<T, ReleaseMessage> ||
                      std::is_same_v<T, ResidencyMessage>) {
          if (!state.in_arbiter) {
            host_.protocol_error(session, std::string("\"") + op_name(message) +
                                              "\" on an admin connection, which holds no lease");
            return;
          }
          if constexpr (std::is_same_v<T, AcquireMessage>) {
            if (!state.waiting_since_us) state.waiting_since_us = now;
            host_.apply(arbiter_.on_acquire(id, m.need_bytes, now), now);
          } else if constexpr (std::is_same_v<T, ReleaseMessage>) {
            state.waiting_since_us.reset();
            note_residency(session, m.resident_bytes);
            host_.apply(arbiter_.on_release(id, m.resident_bytes, now, m.pinned), now);
          } else {
            note_residency(session, m.resident_bytes);
            host_.apply(arbiter_.on_residency(id, m.resident_bytes, now, m.pinned), now);
          }
        } else if constexpr (std::is_same_v<T, HeartbeatMessage>) {
          // Counted above, as every frame is.
        } else if constexpr (std::is_same_v<T, HelloMessage> || std::is_same_v<T, AuthMessage>) {
          // The server handles the handshake before dispatching.
        } else {
          handle_request(session, message, m.seq, now);
        }
      },
      message);
}

void RequestHandler::handle_request(Session& session, const ClientMessage& message, Seq seq, TimeUs now) {
  auto& state = session.state();
  const bool admin_only = !std::holds_alternative<StatusMessage>(message) &&
                          !std::holds_alternative<SetPriorityMessage>(message);
  if (admin_only && !state.admin) {
    request_error(session, seq, std::string("\"") + op_name(message) + "\" requires the admin role");
    return;
  }
  // Bad arguments of a request (unknown client or device) fail that request only.
  try {
    if (const auto* st = std::get_if<StatusMessage>(&message)) {
      session.send_frame(wire::encode_frame(status_reply(seq, arbiter_.snapshot(now, st->after, kStatusMaxClients),
                                                         arbiter_.config().quantum_ms, device_uuids_)));
    } else if (const auto* sp = std::get_if<SetPriorityMessage>(&message)) {
      if (sp->client_id && *sp->client_id != session.id() && !state.admin) {
        request_error(session, seq, "\"set_priority\" of another client requires the admin role");
        return;
      }
      if (!sp->client_id && !state.in_arbiter) {
        request_error(session, seq, "\"set_priority\" on an admin connection needs \"client_id\"");
        return;
      }
      // The admin role is the operator's: it may set any class; a client only what its uid may claim.
      if (const std::string why = state.admin ? "" : priority_claim_refusal(config_.priority, state.uid, sp->priority);
          !why.empty()) {
        request_error(session, seq, why);
        return;
      }
      const ClientId target = sp->client_id.value_or(session.id());
      if (!arbiter_.has_client(target)) {
        request_error(session, seq, "no client " + std::to_string(target));
        return;
      }
      host_.apply(arbiter_.set_priority(target, sp->priority, now), now);
      send(session, ok_message(seq));
    } else if (const auto* sq = std::get_if<SetQuotaMessage>(&message)) {
      if (!arbiter_.has_client(sq->client_id)) {
        request_error(session, seq, "no client " + std::to_string(sq->client_id));
        return;
      }
      host_.apply(arbiter_.set_quota(sq->client_id, sq->quota_bytes, now), now);
      send(session, ok_message(seq));
    } else if (const auto* squ = std::get_if<SetQuantumMessage>(&message)) {
      host_.apply(arbiter_.set_quantum(squ->quantum_ms, now), now);
      send(session, ok_message(seq));
    } else if (const auto* add = std::get_if<AddDeviceMessage>(&message)) {
      const std::string name =
          add->name.empty() ? std::to_string(arbiter_.snapshot(now, std::nullopt, 0).devices.size()) : add->name;
      auto reply = ok_message(seq);
      reply["device"] = add_device(name, arbiter_capacity(add->capacity_bytes), "");
      send(session, reply);
    } else if (const auto* drain = std::get_if<DrainDeviceMessage>(&message)) {
      host_.apply(arbiter_.drain_device(drain->device, now), now);
      send(session, ok_message(seq));
    } else if (const auto* rm = std::get_if<RemoveDeviceMessage>(&message)) {
      host_.apply(arbiter_.remove_device(rm->device, now), now);
      send(session, ok_message(seq));
    } else if (std::holds_alternative<TraceMessage>(message)) {
      send(session, trace_message(seq, arbiter_.timeline()));
    }
  } catch (const std::exception& e) {
    request_error(session, seq, e.what());
  }
}

void RequestHandler::request_error(Session& session, Seq seq, const std::string& reason) {
  if (config_.debug) {
    std::fprintf(stderr, "acb-broker: request %lld from client %llu failed: %s\n", static_cast<long long>(seq),
                 static_cast<unsigned long long>(session.id()), log_text(reason).c_str());
  }
  send(session, error_message(reason, seq));
}

}  // namespace acb::broker
