// Segment: a granularity-aligned range of the arena's reservation, carved
// into blocks. Resident when its physical memory is mapped (`mapping`);
// offloaded when the physical memory was released and the live data sits in
// `backup` (the VA stays reserved, so addresses are kept).
//
// Backup currency: `backup_current` is true when `backup` holds every live
// byte as it is now: set after a copy out or a restore, cleared by
// mark_written and by any allocation in the segment. An offload releases a
// current segment without copying.
//
// Pins: while `pins` > 0 the segment stays resident (offload and cache
// release skip it) because memory of it was exported to code acb cannot see
// (a numpy array, a DLPack capsule); see Arena::pin.
//
// Not thread-safe: owned and mutated under the arena's mutex.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "alloc/block.h"
#include "alloc/host_backup_pool.h"
#include "alloc/physical_mapping.h"

namespace acb::alloc {

struct Segment {
  DevicePtr address = 0;
  std::size_t bytes = 0;
  /// Small segments hold only small blocks (size-class lists).
  bool small = false;
  /// First block in address order.
  Block* first_block = nullptr;

  std::size_t allocated_bytes = 0;
  std::size_t allocated_blocks = 0;

  /// Engaged while resident.
  std::optional<PhysicalMapping> mapping;
  /// Host copy of the live ranges (same offsets as on the device).
  HostBuffer backup;
  bool backup_current = false;
  /// Logical clock of the last malloc / mark_written / restore (LRU order).
  std::uint64_t last_use_tick = 0;
  /// Live Arena::pin calls overlapping this segment.
  std::size_t pins = 0;

  bool resident() const { return mapping.has_value(); }
  bool pinned() const { return pins > 0; }
  bool contains(DevicePtr ptr) const { return ptr >= address && ptr - address < bytes; }
};

}  // namespace acb::alloc
