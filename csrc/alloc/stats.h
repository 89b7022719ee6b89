// The memory manager's statistics: one list (an X-macro), each a counter in
// bytes, a count or nanoseconds as its name says. Current/peak are kept for
// the gauges; the others only grow.
#pragma once

#include <cstdint>

namespace acb::alloc {

// X(name, kind) with kind gauge (current value, peak kept as name_peak) or counter.
#define ACB_ALLOC_STATS(X)            \
  X(allocated_bytes, gauge)           \
  X(reserved_bytes, gauge)            \
  X(active_segments, gauge)           \
  X(offloaded_bytes, gauge)           \
  X(host_backup_bytes, gauge)         \
  X(alloc_count, counter)             \
  X(free_count, counter)              \
  X(offload_count, counter)           \
  X(offload_copied_bytes, counter)    \
  X(restore_count, counter)           \
  X(restored_bytes, counter)          \
  X(skipped_clean_bytes, counter)     \
  X(offload_ns, counter)              \
  X(restore_ns, counter)

struct Stats {
#define ACB_STAT_FIELD(name, kind) std::uint64_t name = 0;
  ACB_ALLOC_STATS(ACB_STAT_FIELD)
#undef ACB_STAT_FIELD
  std::uint64_t allocated_bytes_peak = 0;
  std::uint64_t reserved_bytes_peak = 0;
};

}  // namespace acb::alloc
