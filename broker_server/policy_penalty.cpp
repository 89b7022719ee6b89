#include "broker_server/policy_penalty.h"

#include <algorithm>

namespace acb::broker::policy {

OffenderKey offender_key(std::optional<std::uint32_t> uid, ClientId client) {
  return uid ? OffenderKey{true, *uid} : OffenderKey{false, client};
}

RevokeOffences::RevokeOffences(TimeUs penalty_us, TimeUs window_us, std::size_t max_offences)
    : penalty_us_(penalty_us), window_us_(window_us), max_offences_(std::max<std::size_t>(1, max_offences)) {}

std::size_t RevokeOffences::record(OffenderKey offender, TimeUs now) {
  forget_stale(now);
  auto& times = times_[offender];
  times.insert(std::upper_bound(times.begin(), times.end(), now), now);  // kept in time order
  while (times.size() > max_offences_) times.pop_front();
  return recent(offender, now);
}

std::size_t RevokeOffences::recent(OffenderKey offender, TimeUs at) const {
  auto it = times_.find(offender);
  if (it == times_.end()) return 0;
  return static_cast<std::size_t>(std::count_if(it->second.begin(), it->second.end(), [&](TimeUs t) {
    return t <= at && at - t < window_us_;
  }));
}

std::optional<TimeUs> RevokeOffences::penalty_end(OffenderKey offender, TimeUs now) const {
  const auto end = last_penalty_end(offender);
  if (!end || now >= *end) return std::nullopt;
  return end;
}

std::optional<TimeUs> RevokeOffences::last_penalty_end(OffenderKey offender) const {
  auto it = times_.find(offender);
  if (it == times_.end()) return std::nullopt;
  return it->second.back() + penalty_us_;
}

void RevokeOffences::forget_stale(TimeUs now) {
  const TimeUs keep_us = std::max(penalty_us_, window_us_);
  std::erase_if(times_, [&](const auto& kv) { return now - std::min(now, kv.second.back()) >= keep_us; });
}

}  // namespace acb::broker::policy
