// RequestHandler: what the broker does with one validated message of a
// connection that has proven its token.
//
// It turns the message (message.h) into arbiter calls and replies: at
// admission, the placement of a client (an admin is placed nowhere) and the
// welcome; afterwards a client's lease ops (acquire, release, residency, any
// frame counting as a heartbeat) and the requests that carry a seq (status,
// set_priority, and the admin ops), each answered by ok, error, status or
// trace. It holds no sockets and no session table: replies go to the session
// in hand, the arbiter's decisions to RequestHost::apply, which delivers each
// to its own client's session. It keeps each device's UUID (device_uuid.h),
// since adding a device and pinning a client by UUID both pass through it.
//
// Roles: an admin connection holds no lease, so a lease op on it is a
// protocol error; every request but status and set_priority of itself needs
// the admin role, and a client may claim only the classes its uid is allowed
// (priority_claim.h).
//
// Errors: a request's bad argument (unknown client or device, a value the
// arbiter refuses) fails that request only, with an error that carries its
// seq. Whatever else a call throws is for the caller (the server's frame
// boundary), which closes that one connection.
//
// Thread-safety: none; it runs on the server's one io_context thread.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "broker_server/arbiter.h"
#include "broker_server/config.h"
#include "broker_server/message.h"
#include "broker_server/metrics.h"
#include "broker_server/session.h"

namespace acb::broker {

/// What the handler needs of the server; the server implements it.
class RequestHost {
 public:
  virtual ~RequestHost() = default;
  /// Delivers each decision to its client's session (a Disconnect closes it)
  /// and re-arms the tick for whatever the change brought due sooner.
  virtual void apply(const Decisions& decisions, TimeUs now) = 0;
  /// Sends `reason` as an error frame and closes `session`, counted and
  /// logged as a protocol error.
  virtual void protocol_error(Session& session, const std::string& reason) = 0;
};

class RequestHandler {
 public:
  /// `config` is the server's running configuration (priority claims, debug,
  /// heartbeat timeout), read at every call so that a reload applies at once.
  /// All four must outlive the handler.
  RequestHandler(Arbiter& arbiter, const BrokerConfig& config, BrokerMetrics& metrics, RequestHost& host);
  RequestHandler(const RequestHandler&) = delete;
  RequestHandler& operator=(const RequestHandler&) = delete;

  /// Adds a device to the arbiter with the UUID of its GPU (empty: the
  /// synthetic one of its name, device_uuid.h). `capacity_bytes` as the
  /// arbiter takes it (arbiter_capacity).
  DeviceId add_device(const std::string& name, std::uint64_t capacity_bytes, const std::string& uuid);

  /// A hello whose auth verified: places a client (and marks it in_arbiter)
  /// and returns its welcome, to be sent once the server has counted the
  /// session as authenticated; an admin gets a welcome without a device.
  /// nullopt: refused (a class its uid may not claim, an unknown device UUID,
  /// no device that takes it), the session already closing with the reason.
  std::optional<nlohmann::json> admit(Session& session, const HelloMessage& hello, int version, TimeUs now);

  /// One message of an authenticated session, other than hello and auth.
  void handle(Session& session, const ClientMessage& message, TimeUs now);

 private:
  void handle_request(Session& session, const ClientMessage& message, Seq seq, TimeUs now);
  void request_error(Session& session, Seq seq, const std::string& reason);
  void note_residency(Session& session, std::optional<std::uint64_t> resident_bytes);
  /// The device whose UUID a hello's device_uuid names; nullopt with `why` (it names the known ones).
  std::optional<DeviceId> device_by_uuid(const std::string& wanted, TimeUs now, std::string& why) const;

  Arbiter& arbiter_;
  const BrokerConfig& config_;
  BrokerMetrics& metrics_;
  RequestHost& host_;
  /// Device name -> its UUID (device_uuid.h): the probe's, else synthetic. Names are unique.
  std::map<std::string, std::string> device_uuids_;
};

}  // namespace acb::broker
