// BrokerClient: the broker connection that lives in each user process.
//
// It connects, proves the token and checks that the peer proves it too
// (client/handshake.h), and then owns a background I/O thread
// that reads the broker's frames (grants, revokes, evicts) and sends
// heartbeats, so a revoke is heard while the user's threads compute and
// whatever the GIL does. acquire() blocks the calling thread until the
// broker grants the lease or rejects the request.
//
// Thread-safety: every method may be called from any thread. Callbacks run on
// the I/O thread and must not block on acquire() (acquire() and request()
// called there throw BrokerError rather than deadlock).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

namespace acb::client {

/// A rank of a multi-process job whose ranks on this node the broker grants
/// together (docs/scheduling.md, "Gangs"); an empty job: no gang.
struct GangMembership {
  std::string job;            ///< the job key, the same in every rank (e.g. TORCHELASTIC_RUN_ID)
  int local_world_size = 0;   ///< the job's ranks on this node (>= 1 with a job)
  int local_rank = -1;        ///< this rank among them; -1: not said

  bool operator==(const GangMembership&) const = default;
};

struct ClientOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;
  std::string token;                   ///< empty: read with acb::auth::read_token
  std::string name;
  std::string priority = "training";  ///< "inference" | "training" | "batch"
  std::uint64_t need_bytes = 0;        ///< declared device memory need
  int device = -1;                     ///< pin to a device; -1 lets the broker place
  /// Instead of `device`: pin to the device of the GPU with this UUID (or UUID prefix); empty: none.
  std::string device_uuid;
  bool fixed = false;                  ///< with device: never be moved off it (a process bound to its GPU)
  GangMembership gang;                 ///< the job this process is a rank of; none by default
  bool admin = false;                  ///< role admin: prove the admin token instead of the client token
  std::chrono::milliseconds connect_timeout{5000};
};

/// Connection, authentication or protocol failure. The connection is closed.
class BrokerError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
/// The broker rejected an acquire (e.g. need above the device capacity).
class LeaseRejected : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Welcome {
  std::uint64_t client_id = 0;
  int device = -1;
  std::uint64_t device_capacity_bytes = 0;
  std::uint64_t heartbeat_interval_ms = 0;
  std::uint64_t heartbeat_timeout_ms = 0;
};
struct Grant { int device = -1; std::uint64_t lease = 0; std::uint64_t quantum_ms = 0; };
/// deadline_ms: none when the broker only asks for the device at the next
/// idle gap (reason "share": an equal class waits inside the quantum, or a
/// lower class after it).
struct Revoke { int device = -1; std::uint64_t lease = 0; std::optional<std::uint64_t> deadline_ms; std::string reason; };
struct Evict { int device = -1; std::uint64_t bytes = 0; };

class BrokerClient {
 public:
  /// Connects, authenticates and starts the I/O thread. Throws BrokerError.
  explicit BrokerClient(ClientOptions options);
  /// Closes the connection (the broker reclaims anything still held).
  ~BrokerClient();
  BrokerClient(const BrokerClient&) = delete;
  BrokerClient& operator=(const BrokerClient&) = delete;

  const Welcome& welcome() const;

  /// Blocks until the lease is granted. Throws LeaseRejected, or BrokerError
  /// when the connection is lost or `timeout` passes (nullopt: wait forever).
  /// While holding, only with a larger `need_bytes` (growth after an
  /// out-of-memory): it returns at the broker's re-grant, which comes once
  /// the larger need fits; a need not above the declared one is never
  /// answered. Without need_bytes while holding it throws BrokerError.
  Grant acquire(std::optional<std::uint64_t> need_bytes = std::nullopt,
                std::optional<std::chrono::milliseconds> timeout = std::nullopt);
  /// Gives the lease back; `resident_bytes` stay on the device. `pinned`:
  /// they cannot be offloaded (this process runs without the gate from now
  /// on); the broker counts them and never asks for them.
  void release(std::optional<std::uint64_t> resident_bytes = std::nullopt, bool pinned = false);
  /// Reports what is resident; `pinned` as for release().
  void report_residency(std::uint64_t resident_bytes, bool pinned = false);

  /// Called on the I/O thread when the broker revokes the lease.
  void on_revoke(std::function<void(const Revoke&)> handler);
  /// Called on the I/O thread when the broker asks for memory back.
  void on_evict(std::function<void(const Evict&)> handler);
  /// Called on the I/O thread when the connection ends other than by this
  /// client closing it (the broker stopped, crashed or disconnected us),
  /// with the reason. Any lease is gone then: the broker reclaims it.
  void on_lost(std::function<void(const std::string& reason)> handler);

  /// Sends a request op with a fresh "seq" and waits for the reply with the
  /// same seq (status, admin ops). Throws BrokerError on error replies.
  nlohmann::json request(nlohmann::json message,
                         std::chrono::milliseconds timeout = std::chrono::milliseconds{5000});

  bool connected() const;
  /// True from the moment the I/O thread has read a grant until release():
  /// read on the I/O thread (in a callback) no grant can arrive meanwhile.
  bool holds() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace acb::client
