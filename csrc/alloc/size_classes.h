// Size rounding and the small/large split of the caching sub-allocator.
//
// Requests are rounded up to kMinBlockBytes. Requests of at most
// kSmallRequestBytes are "small": they share small segments (2 MiB, or the
// driver granularity when that is larger) and are found through exact-size
// class lists. Larger requests get their own segments, rounded up to the
// granularity, and are found by best fit (like torch's caching allocator).
#pragma once

#include <cstddef>
#include <limits>

namespace acb::alloc {

/// Every block size and block address offset is a multiple of this.
inline constexpr std::size_t kMinBlockBytes = 512;
/// Requests up to this size are served from small segments.
inline constexpr std::size_t kSmallRequestBytes = std::size_t{1} << 20;
/// Preferred size of a small segment (raised to the driver granularity).
inline constexpr std::size_t kSmallSegmentBytes = std::size_t{2} << 20;

/// Rounds `value` up to a multiple of `align` (a power of two). Returns 0 when
/// the result does not fit in size_t, which callers treat as "too large".
constexpr std::size_t round_up(std::size_t value, std::size_t align) {
  if (value > std::numeric_limits<std::size_t>::max() - (align - 1)) return 0;
  return (value + align - 1) & ~(align - 1);
}

/// The size class of a small free block (bytes is a multiple of kMinBlockBytes).
constexpr std::size_t size_class(std::size_t bytes) { return bytes / kMinBlockBytes - 1; }

/// Smallest remainder worth splitting off a block: any for small segments,
/// only more than kSmallRequestBytes for large ones (a smaller tail would be
/// unusable by large requests and would pin the segment).
constexpr std::size_t min_split_remainder(bool small_segment) {
  return small_segment ? kMinBlockBytes : kSmallRequestBytes + 1;
}

}  // namespace acb::alloc
