#include "broker_server/request_budget.h"

#include <algorithm>

namespace acb::broker {
namespace {

// Beyond every uid_t, so that unknown peers never share a real user's bucket.
constexpr std::uint64_t kUnknownUid = std::uint64_t{1} << 32;
// Units are kept in millionths, so that the refill of one microsecond is an integer.
constexpr std::int64_t kMicro = 1'000'000;

}  // namespace

RequestBudget::Bucket* RequestBudget::bucket(std::optional<std::uint32_t> uid, TimeUs now) {
  if (uid && exempt_uid_ && *uid == *exempt_uid_) return nullptr;
  Bucket& b = buckets_[uid ? *uid : kUnknownUid];
  if (b.refilled_us == 0) b.refilled_us = now;  // a new bucket starts full
  if (now > b.refilled_us) {
    const auto elapsed_us = static_cast<std::int64_t>(std::min<TimeUs>(now - b.refilled_us, 3'600'000'000ull));
    b.micro_units = std::min(b.micro_units + elapsed_us * static_cast<std::int64_t>(kUnitsPerSecond),
                             static_cast<std::int64_t>(kBurstUnits) * kMicro);
    b.refilled_us = now;
  }
  return &b;
}

TimeUs RequestBudget::wait_us(std::optional<std::uint32_t> uid, TimeUs now, bool after_waiting) {
  Bucket* b = bucket(uid, now);
  if (!b || (b->micro_units >= 0 && (b->waiters == 0 || after_waiting))) return 0;
  // Until the debt is paid back, and one more unit for each connection of
  // this user already waiting, rounded up to a whole microsecond.
  const std::int64_t rate = static_cast<std::int64_t>(kUnitsPerSecond);
  const std::int64_t owed = std::max<std::int64_t>(0, -b->micro_units) +
                            static_cast<std::int64_t>(b->waiters + 1) * kMicro;
  ++b->waiters;
  return static_cast<TimeUs>((owed + rate - 1) / rate);
}

void RequestBudget::waited(std::optional<std::uint32_t> uid) {
  if (uid && exempt_uid_ && *uid == *exempt_uid_) return;
  auto it = buckets_.find(uid ? *uid : kUnknownUid);
  if (it != buckets_.end() && it->second.waiters > 0) --it->second.waiters;
}

void RequestBudget::charge(std::optional<std::uint32_t> uid, std::uint64_t reply_bytes, TimeUs now) {
  Bucket* b = bucket(uid, now);
  if (b) b->micro_units -= cost(reply_bytes) * kMicro;
}

}  // namespace acb::broker
