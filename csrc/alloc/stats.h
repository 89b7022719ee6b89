// The memory manager's statistics: one list (an X-macro), each a counter in
// bytes, a count or nanoseconds as its name says. Gauges are current values
// and also keep their peak as <name>_peak; counters only grow.
//
//   allocated_bytes      bytes of allocated blocks (rounded sizes), resident or not
//   reserved_bytes       physical bytes mapped on the device (resident segments)
//   active_segments      resident segments
//   offloaded_bytes      bytes of segments whose data sits in host backups
//   host_backup_bytes    pinned host bytes held by segment backups
//   host_pinned_bytes    pinned host bytes held in all (backups plus the reuse cache)
//   export_pinned_bytes  bytes of segments kept resident by Arena::pin (exports)
//   offload_copied_bytes bytes copied device -> host by offloads
//   restored_bytes       bytes copied host -> device by restores
//   skipped_clean_bytes  live bytes an offload did not copy because the backup was current
//   copy_range_count     copies (ranges) offloads and restores gave the driver, after
//                        coalescing adjacent blocks (copy_plan.h) and cutting at chunks
//   copy_batch_count     driver batch calls those ranges went in (Driver::copy_batch_async)
//   segment_create_count / segment_release_count: physical segments created / released
//   oom_count            allocations that found no memory before the handler ran
#pragma once

#include <cstdint>

namespace acb::alloc {

// X(name, kind) with kind gauge (current value, peak kept as name_peak) or counter.
#define ACB_ALLOC_STATS(X)          \
  X(allocated_bytes, gauge)         \
  X(reserved_bytes, gauge)          \
  X(active_segments, gauge)         \
  X(offloaded_bytes, gauge)         \
  X(host_backup_bytes, gauge)       \
  X(host_pinned_bytes, gauge)       \
  X(export_pinned_bytes, gauge)     \
  X(alloc_count, counter)           \
  X(free_count, counter)            \
  X(offload_count, counter)         \
  X(offload_copied_bytes, counter)  \
  X(restore_count, counter)         \
  X(restored_bytes, counter)        \
  X(skipped_clean_bytes, counter)   \
  X(copy_range_count, counter)      \
  X(copy_batch_count, counter)      \
  X(segment_create_count, counter)  \
  X(segment_release_count, counter) \
  X(oom_count, counter)             \
  X(offload_ns, counter)            \
  X(restore_ns, counter)

struct Stats {
#define ACB_STAT_FIELD_gauge(name) \
  std::uint64_t name = 0;          \
  std::uint64_t name##_peak = 0;
#define ACB_STAT_FIELD_counter(name) std::uint64_t name = 0;
#define ACB_STAT_FIELD(name, kind) ACB_STAT_FIELD_##kind(name)
  ACB_ALLOC_STATS(ACB_STAT_FIELD)
#undef ACB_STAT_FIELD
#undef ACB_STAT_FIELD_counter
#undef ACB_STAT_FIELD_gauge
};

}  // namespace acb::alloc
