// The arbiter's internal state and the scheduling steps shared by its events.
//
// Private to the arbiter's .cpp files. Records:
//  - ClientRec: one per client that said hello; `device` is where it is placed
//    and where its resident bytes live.
//  - DeviceRec: capacity, holder, queue of waiting clients (arrival order; the
//    grant order is computed by policy::order_waiters at each decision), and
//    the set of clients placed on it.
//  - GangRec: the connected ranks of one job (arbiter_gang.cpp).
// Invariants (checked by Arbiter::validate): a device's holder is a member in
// state holding/revoked and is the only such member; every waiting client is
// in its device's queue exactly once and nothing else is; the device's
// accounted bytes (policy_memory.h) never exceed its capacity; the ranks of a
// gang are on distinct devices, and when some of them hold, either all do or
// every one that holds is revoked with a deadline; when one holder of a gang
// is revoked, all are.
//
// Thread-safety: none (see arbiter.h).
#pragma once

#include <algorithm>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "broker_server/arbiter.h"
#include "broker_server/policy_penalty.h"
#include "broker_server/policy_placement.h"
#include "broker_server/policy_queue.h"

namespace acb::broker {

/// ClientRec::revoke_deadline_us of a holder revoked without a deadline (share).
inline constexpr TimeUs kNoRevokeDeadline = ~TimeUs{0};

/// A gang's identity: the user (HelloInfo::uid) and the job key, so that
/// another user's process cannot join (or break) a gang by naming its job.
using GangKey = std::pair<std::optional<std::uint32_t>, std::string>;

struct GangRec {
  std::uint32_t size = 0;         ///< GangInfo::local_world_size of its first rank
  std::set<ClientId> members;     ///< connected ranks, at most `size`
  std::set<std::uint32_t> ranks;  ///< local ranks taken by members that said theirs
};

struct ClientRec {
  ClientId id = 0;
  SharedName name;  ///< stored once; its lease slices share it
  int pid = 0;
  Priority priority = Priority::training;
  DeviceId device = 0;
  ClientState state = ClientState::idle;
  std::uint64_t resident_bytes = 0;  ///< as accounted (reports clamped to what fits)
  std::uint64_t need_bytes = 0;      ///< declared need; the holder's reservation
  std::uint64_t quota_bytes = 0;     ///< 0: none
  std::optional<std::uint64_t>
      growth_need_bytes;                  ///< holder asked for more; re-granted once it fits
  std::uint64_t pending_evict_bytes = 0;  ///< asked to evict, not yet reported
  /// Resident bytes it kept when last asked to evict and released nothing
  /// (memory it must keep, e.g. exported to another library, or an evict
  /// that crossed its own release): not asked for again before
  /// unevictable_until_us, or until it reports unasked or holds a lease
  /// (else ask and answer would loop as fast as they can).
  std::uint64_t unevictable_bytes = 0;
  TimeUs unevictable_until_us = 0;
  TimeUs evict_deadline_us = 0;           ///< report due by then (0: nothing asked)
  TimeUs last_heard_us = 0;
  TimeUs wait_since_us = 0;
  std::uint64_t wait_seq = 0;
  TimeUs last_grant_us = 0;
  std::uint64_t lease = 0;
  TimeUs lease_start_us = 0;
  int lease_class = 0;  ///< effective class it was granted with
  bool fixed = false;  ///< HelloInfo::fixed: never moved to another device
  bool pinned = false;  ///< its resident bytes cannot be offloaded: never asked to evict
  TimeUs revoke_deadline_us = 0;  ///< kNoRevokeDeadline after a share revoke
  std::optional<std::uint64_t> slice;  ///< index of its open LeaseSlice
  std::optional<std::uint32_t> uid;    ///< HelloInfo::uid: who answers for its revoke offences
  std::uint64_t overdue_lease = 0;     ///< the lease whose missed revoke deadline was counted
  /// Why a need declared at hello was refused (larger than the device): its
  /// next acquire without a need is rejected with it. Never stored as need_bytes.
  std::string refused_need;
  /// Reported beyond what fit the device as accounted (apply_residency): not
  /// in resident_bytes, asked back, but really there until a report says
  /// otherwise, so no grant may count on them (make_room).
  std::uint64_t unaccounted_bytes = 0;
  std::optional<GangKey> gang;              ///< HelloInfo::gang: granted only with its gang
  std::optional<std::uint32_t> local_rank;  ///< GangInfo::local_rank
  std::uint64_t grants = 0, waited_us_total = 0, preemptions = 0;

  bool holds() const { return state == ClientState::holding || state == ClientState::revoked; }
  /// Revoked with a deadline (preempt, quantum, drain): disconnected past it plus the grace.
  bool revoked_with_deadline() const {
    return state == ClientState::revoked && revoke_deadline_us != kNoRevokeDeadline;
  }
  /// Revoked without a deadline (share): yields at its next idle gap, however long that takes.
  bool revoked_without_deadline() const {
    return state == ClientState::revoked && revoke_deadline_us == kNoRevokeDeadline;
  }
};

struct DeviceRec {
  DeviceId id = 0;
  std::string name;
  std::uint64_t capacity_bytes = 0;
  bool draining = false;
  bool removing = false;  ///< forget once no client is placed here
  std::optional<ClientId> holder;
  std::vector<ClientId> queue;  ///< waiting clients, arrival order
  std::set<ClientId> members;   ///< clients placed here
  TimeUs free_since_us = 0;     ///< when the last lease here ended
  /// Released by a rank of this gang while another of its ranks still
  /// holds: only that rank is granted here until the gang's last rank has
  /// released (serve_reserved).
  std::optional<GangKey> held_for;
};

struct Arbiter::State {
  ArbiterConfig config;
  std::map<DeviceId, DeviceRec> devices;
  std::map<ClientId, ClientRec> clients;
  std::map<GangKey, GangRec> gangs;  ///< gangs with at least one connected rank
  DeviceId next_device = 0;
  std::uint64_t next_lease = 0;
  std::uint64_t next_wait_seq = 0;
  std::deque<LeaseSlice> slices;
  std::uint64_t first_slice = 0;  ///< global index of slices.front()
  ArbiterCounters counters;
  policy::RevokeOffences offences;
  TimeUs last_schedule_us = 0;  ///< the last schedule_all: what changed since is due at the next tick

  explicit State(const ArbiterConfig& c)
      : config(c),
        offences(c.revoke_penalty_ms * 1000, c.revoke_offence_window_ms * 1000, c.revoke_offences_max) {}
  policy::OffenderKey offender(const ClientRec& c) const { return policy::offender_key(c.uid, c.id); }
  bool penalized(const ClientRec& c, TimeUs now) const { return offences.penalized(offender(c), now); }
  /// A penalised head waits for the device to have been free a quantum
  /// (nobody else came back for it): until then; nullopt when `head` may be
  /// granted now.
  std::optional<TimeUs> penalty_hold_until(const DeviceRec& d, const ClientRec& head, TimeUs now) const {
    const TimeUs until = d.free_since_us + config.quantum_ms * 1000;
    if (now >= until || !penalized(head, now)) return std::nullopt;
    return until;
  }
  /// Counts the missed revoke deadline of `c`'s lease once, dated at the
  /// deadline (however late it is noticed); returns the offender's offences
  /// within the window, or 0 when there is nothing new to count. A release
  /// at the deadline itself is in time.
  /// Counting the offence is a decision only when it reaches
  /// revoke_offences_max (a disconnect); the others are counted when the
  /// holder releases or leaves, so that no tick changes the queue order at a
  /// time next_wakeup did not name.
  bool deciding_offence(const ClientRec& c) const {
    return c.revoked_with_deadline() && c.overdue_lease != c.lease &&
           offences.recent(offender(c), c.revoke_deadline_us) + 1 >= offences.max_offences();
  }
  std::size_t count_overdue(ClientRec& c, TimeUs now) {
    if (!c.revoked_with_deadline() || now <= c.revoke_deadline_us || c.overdue_lease == c.lease) return 0;
    c.overdue_lease = c.lease;
    return offences.record(offender(c), c.revoke_deadline_us);
  }

  ClientRec* find_client(ClientId id);
  DeviceRec& device(DeviceId id, const char* call);
  ClientRec& client(ClientId id, const char* call);

  /// What a client counts on its device (policy_memory.h).
  std::uint64_t reserved_bytes(const ClientRec& c) const;
  std::uint64_t device_bytes(const DeviceRec& d,
                             std::optional<ClientId> except = std::nullopt) const;
  /// Every device as placement sees it (policy_placement.h), but `except`.
  std::vector<policy::DeviceLoad> device_loads(std::optional<DeviceId> except = std::nullopt) const;
  /// How `c` competes in its device's queue (policy_queue.h).
  policy::Waiter waiter_of(const ClientRec& c, TimeUs now) const;
  std::vector<policy::Waiter> waiters_of(const DeviceRec& d, TimeUs now) const;
  std::vector<ClientId> ordered_queue(const DeviceRec& d, TimeUs now) const;
  /// The waiter granted next on `d`, as policy_queue.h orders them.
  std::optional<ClientId> queue_head(const DeviceRec& d, TimeUs now) const;
  int waiter_class(const ClientRec& c, TimeUs now) const;

  void touch(ClientRec& c, TimeUs now) { c.last_heard_us = std::max(c.last_heard_us, now); }
  /// Accounts a residency report. What does not fit the device is not accounted
  /// and is asked back; what exceeds the quota is accounted and asked back.
  void apply_residency(ClientRec& c, std::uint64_t reported, TimeUs now, Decisions& out,
                       bool pinned = false);
  void enqueue(ClientRec& c, TimeUs now);
  void dequeue(ClientRec& c);
  /// Asks `c` to evict `bytes` more; it must report by its evict deadline.
  void evict(ClientRec& c, std::uint64_t bytes, TimeUs now, Decisions& out);
  void arm_evict(ClientRec& c, std::uint64_t bytes, TimeUs now);
  void reject(ClientRec& c, std::string reason, Decisions& out);
  /// The lease ends (release, disconnect): frees the device, closes the slice.
  void end_lease(ClientRec& c, TimeUs now);
  /// Asks the device's residents (all but `requester`) for what the requester
  /// still misses; true when it fits now.
  /// `pinned_blocking` (when given) is set to the pinned bytes of the others
  /// when they leave too little room for the need ever to fit.
  bool make_room(DeviceRec& d, ClientRec& requester, std::uint64_t need_bytes, TimeUs now,
                 Decisions& out, std::uint64_t* pinned_blocking = nullptr);
  /// Grants, revokes, or asks for memory on one device, as the policy says now.
  void schedule(DeviceRec& d, TimeUs now, Decisions& out);
  /// Gives `c` (waiting, on free `d`, room made) the lease of `d`, judged
  /// from now on by `lease_class`.
  void grant(ClientRec& c, DeviceRec& d, int lease_class, TimeUs now, Decisions& out);
  /// Asks the holder `h` to give its lease back (counted as a preemption for
  /// reason preempt), and with it every other holder of its gang that has no
  /// earlier deadline.
  void revoke_holder(ClientRec& h, RevokeReason reason, std::optional<std::uint64_t> deadline_ms, TimeUs now,
                     Decisions& out);
  void revoke_one(ClientRec& h, RevokeReason reason, std::optional<std::uint64_t> deadline_ms, TimeUs now,
                  Decisions& out);

  // ---- gangs (arbiter_gang.cpp) ----
  GangRec* gang_of(const ClientRec& c);
  const GangRec* gang_of(const ClientRec& c) const;
  /// Why `info` cannot join the gang `key`; empty when it can.
  std::string gang_refusal(const GangKey& key, const GangInfo& info) const;
  /// The devices of the ranks of gang `key` (but `except`): no other rank is placed there.
  std::set<DeviceId> gang_devices(const GangKey& key, std::optional<ClientId> except = std::nullopt) const;
  void join_gang(ClientRec& c, const GangKey& key, const GangInfo& info);
  void leave_gang(const ClientRec& c);
  /// Every rank connected and waiting: only then do its ranks compete for their devices.
  bool gang_ready(const GangRec& g) const;
  /// A waiter that may be granted now: alone, or a rank of a ready gang.
  bool eligible(const ClientRec& c) const;
  /// Grants every rank of the ready gang `g` at once when each is first in
  /// the queue of its free device and fits there; else asks for the room
  /// and grants nothing.
  void grant_gang(GangRec& g, TimeUs now, Decisions& out);
  /// `c`'s lease has just ended (`left`: it disconnected): while other ranks
  /// of its gang hold, its device is reserved for the gang (DeviceRec::held_for),
  /// and when it left they are revoked (reason gang).
  void gang_rank_released(const ClientRec& c, bool left, TimeUs now, Decisions& out);
  /// A device reserved for a gang: its rank that asks again gets it back at
  /// once (revoked as the gang's holders are); a waiter of anyone else there
  /// has the gang's holders revoked with the quantum deadline.
  void serve_reserved(DeviceRec& d, TimeUs now, Decisions& out);
  /// Revokes every holder of `g` with the quantum deadline, but those that have an earlier one.
  void revoke_gang_holders(const GangRec& g, TimeUs now, Decisions& out);
  /// Arbiter::validate's part for gangs (arbiter_inspect.cpp).
  void validate_gangs() const;
  /// Schedules every device, then forgets removed devices left empty.
  void schedule_all(TimeUs now, Decisions& out);
  /// Moves a client off a draining device when it can (see docs/scheduling.md);
  /// returns false when no other device can take it.
  bool relocate(ClientRec& c, TimeUs now, Decisions& out);
  /// A non-holder on a draining device moves away; one that waits and cannot is rejected.
  void leave_draining(ClientRec& c, TimeUs now, Decisions& out);
  std::optional<DeviceId> move_target(const ClientRec& c, std::uint64_t need_bytes) const;
  /// Drops a client's lease, wait and residency (counted as a disconnect).
  void forget_client(ClientId id, TimeUs now, Decisions& out);
  /// forget_client, then schedules what its leaving allows.
  void drop_client(ClientId id, TimeUs now, Decisions& out);
  /// Decides a disconnect and forgets the client; the caller schedules afterwards.
  void kill(ClientId id, std::string reason, TimeUs now, Decisions& out);
  void reap_devices();
  void open_slice(ClientRec& c, TimeUs now);
  void close_slice(ClientRec& c, TimeUs now);
};

}  // namespace acb::broker
