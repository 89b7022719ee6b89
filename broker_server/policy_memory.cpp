#include "broker_server/policy_memory.h"

#include <algorithm>
#include <tuple>

namespace acb::broker::policy {

std::uint64_t fit_deficit(std::uint64_t capacity_bytes, std::uint64_t others_bytes,
                          std::uint64_t own_resident_bytes, std::uint64_t need_bytes) {
  // Saturating: reports beyond the capacity may be near 2^64 (make_room counts them).
  const std::uint64_t want = saturating_add(others_bytes, std::max(need_bytes, own_resident_bytes));
  return want > capacity_bytes ? want - capacity_bytes : 0;
}

std::vector<EvictRequest> plan_evictions(std::vector<Resident> residents,
                                         std::uint64_t deficit_bytes) {
  // Higher class number = lower priority = evicted first.
  std::sort(residents.begin(), residents.end(), [](const Resident& a, const Resident& b) {
    return std::make_tuple(-static_cast<int>(a.priority), a.last_grant_us, a.client) <
           std::make_tuple(-static_cast<int>(b.priority), b.last_grant_us, b.client);
  });
  std::vector<EvictRequest> out;
  for (const Resident& r : residents) {
    if (deficit_bytes == 0) break;
    if (r.evictable_bytes == 0) continue;
    const std::uint64_t bytes = std::min(r.evictable_bytes, deficit_bytes);
    out.push_back({r.client, bytes});
    deficit_bytes -= bytes;
  }
  return out;
}

}  // namespace acb::broker::policy
