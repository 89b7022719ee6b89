// LeaseState: the client's side of one compute lease, as a small state
// machine shared by the user threads and the I/O thread.
//
//   idle --begin_acquire--> acquiring --on_grant--> holding --release--> idle
//                               |  on_reject / timeout / lost --> idle
//   holding --on_revoke--> revoked --release--> idle
//
// The user thread that calls acquire() waits on a condition variable that
// the I/O thread signals on grant, reject or connection loss, so a grant
// wakes it at once (no polling). It knows no sockets.
//
// Thread-safety: all methods lock one mutex; safe from any thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

#include "client/broker_client.h"

namespace acb::client {

class LeaseState {
 public:
  enum class Phase { idle, acquiring, holding, revoked };

  /// Starts an acquire. While holding (or revoked) it is allowed only as a
  /// growth request (`growth`: a larger need, answered by a re-grant).
  /// Throws BrokerError when one is already in flight, when holding without
  /// `growth`, or when the connection is lost.
  void begin_acquire(bool growth = false);
  /// Waits for the outcome of begin_acquire(). Throws LeaseRejected on
  /// reject, BrokerError on loss or when timeout passes (the phase is then
  /// idle again and the caller withdraws the request; a failed growth
  /// request leaves the lease held as before).
  Grant wait(std::optional<std::chrono::milliseconds> timeout);

  /// I/O thread: a grant arrived. Returns false for a stale grant (nobody
  /// is acquiring, e.g. it crossed a withdrawn request).
  bool on_grant(const Grant& grant);
  /// I/O thread: the acquire was rejected.
  void on_reject(const std::string& reason);
  /// I/O thread: the broker revoked the lease.
  void on_revoke(const Revoke& revoke);
  /// I/O thread: the connection is gone; wakes every waiter with `reason`.
  void on_lost(const std::string& reason);

  /// User thread: the lease is given back (or the request withdrawn).
  void on_release();

  Phase phase() const;
  /// True while the lease is held (holding or revoked, not yet released).
  bool holds() const;
  /// The reason the connection was lost, empty while connected.
  std::string lost_reason() const;

 private:
  void settle_failed_acquire();  // with mutex_ held

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  Phase phase_ = Phase::idle;
  std::optional<Grant> grant_;
  std::optional<std::pair<Phase, Grant>> held_before_growth_;  ///< set while a growth request waits
  std::optional<std::string> rejected_;
  std::string lost_;
};

}  // namespace acb::client
