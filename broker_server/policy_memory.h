// Memory arithmetic of the arbiter: does a grantee fit, and whom to evict.
//
// A device's bytes as the arbiter accounts them are the sum over its clients
// of their reported resident bytes, except the holder, who counts
// max(need, resident) because it may grow to its declared need while it holds.
// A grantee fits when others + max(need, own resident) <= capacity: its own
// resident memory counts toward its need and is never evicted for it.
//
// Victims are chosen lowest priority first (batch before training before
// inference), then least recently granted (never granted first), then by
// client id, and each is asked for no more than what is still missing, so the
// total asked is exactly the deficit.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <vector>

#include "broker_server/arbiter.h"

namespace acb::broker::policy {

/// Byte sums and differences that stop at the ends of the range: a client may
/// report any 64-bit count, and none may wrap the device's accounting.
inline std::uint64_t saturating_add(std::uint64_t a, std::uint64_t b) {
  return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}
inline std::uint64_t saturating_sub(std::uint64_t a, std::uint64_t b) {
  return a > b ? a - b : 0;
}

/// Bytes that must leave the device before a grantee fits; 0 when it fits.
std::uint64_t fit_deficit(std::uint64_t capacity_bytes, std::uint64_t others_bytes,
                          std::uint64_t own_resident_bytes, std::uint64_t need_bytes);

struct Resident {
  ClientId client;
  Priority priority;
  TimeUs last_grant_us;           ///< 0 when never granted
  std::uint64_t evictable_bytes;  ///< resident bytes not already asked for
};

struct EvictRequest {
  ClientId client;
  std::uint64_t bytes;
};

/// Requests whose bytes add up to min(deficit, all evictable bytes).
std::vector<EvictRequest> plan_evictions(std::vector<Resident> residents,
                                         std::uint64_t deficit_bytes);

}  // namespace acb::broker::policy
