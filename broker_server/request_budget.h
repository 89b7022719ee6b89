// RequestBudget: how much of the broker's time each local user's requests
// may take, as one token bucket per uid.
//
// Every frame a connection sends costs units: one for the frame, plus one
// per KiB of the replies it made the broker build (a `status` of 256 clients
// costs tens of units, a heartbeat one). A user's bucket refills at
// kUnitsPerSecond up to kBurstUnits; a frame is handled while the bucket of
// its connection's user is not in debt, and otherwise waits (the connection
// is not read meanwhile, so TCP flow control slows the sender) until the
// bucket has refilled. So no user, with however many connections, takes
// more than a bounded share of the broker's one thread, and requests stay
// answered in order: pipelining is slowed, never refused.
//
// The connections of one user that wait are woken one after the other, one
// unit of refill apart, so that none of them is starved and they do not all
// wake at once. Peers whose uid is unknown share one bucket. The broker's own uid (the
// operator, or the user whose job started an embedded broker) is not
// limited: its requests are the service's own.
//
// Pure policy: the caller passes the time; no I/O. Thread-safety: none.
#pragma once

#include <cstdint>
#include <optional>
#include <unordered_map>

#include "broker_server/arbiter.h"

namespace acb::broker {

class RequestBudget {
 public:
  /// Refill rate of each user's bucket. A torch job makes a few frames per
  /// lease (acquire, release, residency, heartbeats): far below this even
  /// for many processes of one user.
  static constexpr std::uint64_t kUnitsPerSecond = 20000;
  /// What a bucket holds when full: a burst of this many units is served at once.
  static constexpr std::uint64_t kBurstUnits = 20000;
  /// One unit per frame, and one per this many bytes of replies it caused.
  static constexpr std::uint64_t kReplyBytesPerUnit = 1024;

  /// `exempt_uid`: the broker's own uid, never limited.
  explicit RequestBudget(std::optional<std::uint32_t> exempt_uid) : exempt_uid_(exempt_uid) {}

  /// Microseconds until a frame of `uid` may be handled; 0: now. When it must
  /// wait, the caller is counted as one of the user's waiters until it calls
  /// waited(): each waiter is given a later time than the one before, so the
  /// user's connections take turns instead of waking together.
  /// `after_waiting`: the caller was told to wait, waited and called waited():
  /// it goes first if the bucket is not in debt, instead of behind the others.
  TimeUs wait_us(std::optional<std::uint32_t> uid, TimeUs now, bool after_waiting = false);
  /// A connection that was told to wait has waited.
  void waited(std::optional<std::uint32_t> uid);
  /// Charges one handled frame that made the broker queue `reply_bytes`.
  void charge(std::optional<std::uint32_t> uid, std::uint64_t reply_bytes, TimeUs now);

  /// The units one frame costs.
  static std::int64_t cost(std::uint64_t reply_bytes) {
    return 1 + static_cast<std::int64_t>(reply_bytes / kReplyBytesPerUnit);
  }

 private:
  struct Bucket {
    std::int64_t micro_units = static_cast<std::int64_t>(kBurstUnits) * 1'000'000;  ///< may go negative: debt
    TimeUs refilled_us = 0;
    std::uint64_t waiters = 0;  ///< connections told to wait and not yet woken
  };
  Bucket* bucket(std::optional<std::uint32_t> uid, TimeUs now);

  std::optional<std::uint32_t> exempt_uid_;
  std::unordered_map<std::uint64_t, Bucket> buckets_;  // key: uid, or kUnknownUid
};

}  // namespace acb::broker
