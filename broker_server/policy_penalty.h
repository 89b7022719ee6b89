// Revoke offences: who missed a revoke deadline, and what it costs them.
//
// A holder that lets a revoke deadline pass keeps the device from whoever
// the revoke was for. Each missed deadline is an offence of its offender:
// the user (uid) when the broker knows it, so that a job cannot shed its
// record by reconnecting or by running as many processes; else the client
// alone. For `penalty_us` after an offence, the offender's waits go behind
// every waiter of their class (policy_queue.h) and a free device goes to it
// only after a quantum nobody else wanted it (the arbiter), and an offender with
// `max_offences` offences within `window_us` is disconnected
// (docs/scheduling.md, "Revoke offences").
//
// Memory is bounded: an offender keeps its last `max_offences` times, and
// offenders with nothing left in the window or the penalty are forgotten.
//
// Thread-safety: none (the arbiter's thread).
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <utility>

#include "broker_server/arbiter.h"

namespace acb::broker::policy {

/// The uid when known, else the client: (true, uid) or (false, client id).
using OffenderKey = std::pair<bool, std::uint64_t>;
OffenderKey offender_key(std::optional<std::uint32_t> uid, ClientId client);

class RevokeOffences {
 public:
  RevokeOffences(TimeUs penalty_us, TimeUs window_us, std::size_t max_offences);

  /// Records a deadline missed at `now` (the deadline's time); returns the
  /// offender's offences within the window, this one included.
  std::size_t record(OffenderKey offender, TimeUs now);
  /// The offender's offences within the window before `at`.
  std::size_t recent(OffenderKey offender, TimeUs at) const;
  /// True within penalty_us of the offender's last offence.
  bool penalized(OffenderKey offender, TimeUs now) const { return penalty_end(offender, now).has_value(); }
  /// When the offender's penalty ends; nullopt when it is not penalised at `now`.
  std::optional<TimeUs> penalty_end(OffenderKey offender, TimeUs now) const;
  /// When the offender's latest penalty ends or ended; nullopt when it has none on record.
  std::optional<TimeUs> last_penalty_end(OffenderKey offender) const;
  std::size_t max_offences() const { return max_offences_; }
  std::size_t offenders() const { return times_.size(); }

 private:
  void forget_stale(TimeUs now);

  TimeUs penalty_us_, window_us_;
  std::size_t max_offences_;
  std::map<OffenderKey, std::deque<TimeUs>> times_;  ///< newest last
};

}  // namespace acb::broker::policy
