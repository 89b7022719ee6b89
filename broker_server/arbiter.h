// The arbiter: the broker's policy, with no I/O in it.
//
// It is fed events (hello, acquire, release, residency report, heartbeat,
// disconnect, admin change, clock tick) and returns decisions (grant, revoke
// with a deadline, evict N bytes from a client, reject with a reason,
// disconnect). The server turns decisions into frames; tests feed events
// directly. Time is passed in (microseconds on any monotonic clock), never read.
//
// Policy (docs/scheduling.md states it precisely):
//  - one exclusive compute lease per device;
//  - priority classes inference > training > batch, FIFO inside a class;
//  - a higher class preempts the holder at once (revoke, short deadline);
//  - an equal-priority waiter asks the holder at once to give the device
//    away at its next idle gap (an idle holder yields at once); after
//    `quantum_ms` it preempts the holder even when busy;
//  - aging: a waiter that waited `aging_ms` counts one class higher, so the
//    lowest class is never starved;
//  - memory-aware grants: before granting, residents of the device are asked
//    to evict just enough bytes for the grantee's declared need; idle
//    residents stay on the device while everything fits;
//  - a need larger than the device capacity is rejected, never queued;
//  - a client that disconnects or misses heartbeats loses its lease and its
//    residency at once; one that ignores a revoke past deadline + grace, or
//    an evict past quantum_deadline + grace, is disconnected;
//  - a missed revoke deadline is an offence of the client's user: for a
//    penalty period that user's waits go behind their class, and a repeated
//    offender is disconnected at the deadline (policy_penalty.h);
//  - a declared need larger than the device is refused and never stored;
//  - a holder that asks for a larger need (growth) gets a fresh Grant with the
//    same lease once the residents have made room;
//  - gangs (the ranks of one multi-process job on this node, HelloInfo::gang)
//    are placed on distinct devices, granted all at once or not at all, and
//    revoked together; a rank that releases or leaves revokes the others, and
//    the gang's devices are handed on once the last rank has released.
//
// Thread-safety: none; the server calls it from its one io_context thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include "broker_server/shared_name.h"

namespace acb::broker {

using ClientId = std::uint64_t;
using DeviceId = int;
using TimeUs = std::uint64_t;  ///< monotonic microseconds

enum class Priority { inference = 0, training = 1, batch = 2 };
const char* to_string(Priority p);
/// Parses "inference" | "training" | "batch"; nullopt otherwise.
std::optional<Priority> parse_priority(const std::string& text);

/// Why a holder is asked to give its lease back. preempt: a better class
/// waits; quantum: an equal class waits and the lease used its quantum;
/// drain: the device is being drained; share: give the device away at the
/// next idle gap, without a deadline (an equal class waits and the lease is
/// inside its quantum, or only a worse class waits and the lease used its
/// quantum: a busy holder is not forced off until the quantum, and never by
/// a worse class).
/// gang: another rank of the holder's gang released its lease or left, so
/// the gang no longer holds all its devices (deadline quantum_deadline_ms).
enum class RevokeReason { preempt, quantum, drain, share, gang };
const char* to_string(RevokeReason r);

struct ArbiterConfig {
  std::uint64_t quantum_ms = 200;            ///< how long a busy holder keeps the device against an equal waiter
  std::uint64_t preempt_deadline_ms = 200;   ///< revoke deadline when a higher class waits
  std::uint64_t quantum_deadline_ms = 1000;  ///< revoke deadline at quantum expiry / drain / gang
  std::uint64_t revoke_grace_ms = 2000;      ///< after the deadline, before disconnecting
  std::uint64_t aging_ms = 5000;             ///< wait after which a waiter counts one class higher
  std::uint64_t heartbeat_timeout_ms = 5000; ///< silence after which a client is dead
  std::size_t timeline_capacity = 10000;     ///< lease slices kept for `acb trace` (oldest dropped)
  /// Revoke offences (policy_penalty.h): after a missed revoke deadline the
  /// offender's waits go behind its class for revoke_penalty_ms; with
  /// revoke_offences_max offences within revoke_offence_window_ms it is disconnected.
  std::uint64_t revoke_penalty_ms = 60000;
  std::uint64_t revoke_offences_max = 3;
  std::uint64_t revoke_offence_window_ms = 600000;
};

/// A request the arbiter cannot carry out (unknown device or client, bad
/// value); the message names the call and the offending id or value.
class ArbiterError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// ---- decisions ----------------------------------------------------------------
/// `waited_us`: how long the client waited in the queue for this lease (0 for
/// the re-grant that answers a holder's growth); the server's wait histogram.
struct Grant { ClientId client; DeviceId device; std::uint64_t lease; std::uint64_t waited_us = 0; };
/// deadline_ms: none for RevokeReason::share (yield at the next idle gap only).
struct Revoke { ClientId client; DeviceId device; std::uint64_t lease; std::optional<std::uint64_t> deadline_ms; RevokeReason reason; };
struct Evict { ClientId client; DeviceId device; std::uint64_t bytes; };
struct Reject { ClientId client; std::string reason; };
struct Disconnect { ClientId client; std::string reason; };
using Decision = std::variant<Grant, Revoke, Evict, Reject, Disconnect>;
using Decisions = std::vector<Decision>;

// ---- events' payloads and snapshots -------------------------------------------
/// The ranks of one job on this node (torch.distributed: the job is
/// TORCHELASTIC_RUN_ID or MASTER_ADDR:MASTER_PORT, the count LOCAL_WORLD_SIZE).
/// Gangs are per user (HelloInfo::uid): the same job key from another user
/// is another gang.
struct GangInfo {
  std::string job;                 ///< non-empty
  std::uint32_t local_world_size;  ///< ranks of the job on this node, >= 1
  std::optional<std::uint32_t> local_rank;  ///< < local_world_size, unique in the gang
};

struct HelloInfo {
  std::string name;
  int pid = 0;
  Priority priority = Priority::training;
  std::uint64_t need_bytes = 0;
  std::optional<DeviceId> pinned_device;  ///< nullopt: the arbiter places the client
  /// Stays on pinned_device: a drain never moves it (its acquires are
  /// rejected there instead); without it a pinned client may be moved.
  bool fixed = false;
  /// The user behind the connection (nullopt: unknown); revoke offences are
  /// counted per uid when it is known, else per client.
  std::optional<std::uint32_t> uid;
  /// A rank of a multi-process job: granted only with every other rank of
  /// its gang, on distinct devices (docs/scheduling.md, "Gangs").
  std::optional<GangInfo> gang;
};

/// Result of on_hello: the device the client was placed on, or why not.
struct Placement {
  std::optional<DeviceId> device;
  std::string error;
};

enum class ClientState { idle, waiting, holding, revoked };
const char* to_string(ClientState s);

struct ClientSnapshot {
  ClientId client_id; SharedName name; int pid; Priority priority; DeviceId device;
  ClientState state; std::uint64_t resident_bytes; std::uint64_t need_bytes;
  std::uint64_t quota_bytes; std::uint64_t grants; std::uint64_t waited_us_total;
  std::uint64_t preemptions;
  std::string gang;                         ///< the job key of its gang; empty: none
  std::optional<std::uint32_t> local_rank;  ///< its local rank in the gang, when it said it
};
struct DeviceSnapshot {
  DeviceId device; std::string name; std::uint64_t capacity_bytes; std::uint64_t resident_bytes;
  std::optional<ClientId> holder; std::vector<ClientId> queue; bool draining;
};
/// `clients` is every client, or one page of them in id order (snapshot with
/// a limit); the totals always count every client.
struct Snapshot {
  std::vector<DeviceSnapshot> devices;
  std::vector<ClientSnapshot> clients;
  std::size_t clients_total = 0;
  std::size_t clients_by_state[4] = {};  ///< indexed by ClientState
  std::optional<ClientId> next_after;     ///< the page's last id, when more clients follow
};

/// One lease in the timeline; end_us is nullopt while held. `name` is the
/// client's own stored name (shared, never a copy per lease).
struct LeaseSlice { DeviceId device; ClientId client; SharedName name; TimeUs start_us; std::optional<TimeUs> end_us; };

/// Counters the metrics endpoint exports.
struct ArbiterCounters {
  std::uint64_t grants = 0, preemptions = 0, revokes = 0, evict_requests = 0,
                evict_requested_bytes = 0, rejects = 0, disconnects = 0;
};

class Arbiter {
 public:
  explicit Arbiter(ArbiterConfig config = {});
  ~Arbiter();
  // One arbiter, one state: a copy would be a second arbiter of the same
  // devices and clients, so there is none. Moving hands the state over; a
  // moved-from arbiter may only be destroyed or assigned to.
  Arbiter(const Arbiter&) = delete;
  Arbiter& operator=(const Arbiter&) = delete;
  Arbiter(Arbiter&&) noexcept;
  Arbiter& operator=(Arbiter&&) noexcept;

  // devices (admin); an unknown device throws ArbiterError.
  DeviceId add_device(std::string name, std::uint64_t capacity_bytes);
  Decisions drain_device(DeviceId device, TimeUs now);
  /// Drains, and forgets the device once no client is placed on it.
  Decisions remove_device(DeviceId device, TimeUs now);

  // client events. An event naming a client the arbiter does not know (it
  // was disconnected by an earlier decision) is ignored: empty decisions.
  // A Disconnect decision has already reclaimed the client; the server's
  // later on_disconnect for it is a no-op.
  Placement on_hello(ClientId client, const HelloInfo& info, TimeUs now);
  Decisions on_acquire(ClientId client, std::optional<std::uint64_t> need_bytes, TimeUs now);
  /// `pinned` (both): the reported bytes cannot be offloaded (acb.disable()):
  /// they count on the device but the client is never asked to evict them. A
  /// report without it makes them evictable again.
  Decisions on_release(ClientId client, std::optional<std::uint64_t> resident_bytes, TimeUs now,
                       bool pinned = false);
  Decisions on_residency(ClientId client, std::uint64_t resident_bytes, TimeUs now,
                         bool pinned = false);
  void on_heartbeat(ClientId client, TimeUs now);
  Decisions on_disconnect(ClientId client, TimeUs now);
  /// Quantum expiry, revoke deadlines, heartbeat timeouts, aging.
  Decisions on_tick(TimeUs now);
  /// The earliest time at which on_tick could decide something (a heartbeat
  /// timeout, a revoke past its grace, a quantum expiry, an aging step);
  /// nullopt when nothing is pending. Never earlier than `now`.
  std::optional<TimeUs> next_wakeup(TimeUs now) const;

  // admin changes; an unknown client or device, or a bad value, throws ArbiterError.
  Decisions set_priority(ClientId client, Priority priority, TimeUs now);
  Decisions set_quota(ClientId client, std::uint64_t quota_bytes, TimeUs now);
  Decisions set_quantum(std::uint64_t quantum_ms, TimeUs now);

  bool has_client(ClientId client) const;
  std::optional<DeviceId> device_of(ClientId client) const;
  std::uint64_t capacity_of(DeviceId device) const;
  Snapshot snapshot(TimeUs now) const;
  /// At most `max_clients` clients, those with an id above `after` (nullopt:
  /// from the first); its cost is that of the page plus a count of every
  /// client, not a copy of every name.
  Snapshot snapshot(TimeUs now, std::optional<ClientId> after, std::size_t max_clients) const;
  /// The last `max_slices` leases (bounded history), oldest first.
  std::vector<LeaseSlice> timeline(std::size_t max_slices = 10000) const;
  const ArbiterCounters& counters() const;
  const ArbiterConfig& config() const;

  /// Checks every invariant (at most one holder per device, resident bytes
  /// never over capacity, queues consistent); throws std::logic_error.
  void validate() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace acb::broker
