// Arena::Impl: the arena's state, shared by arena.cpp (sub-allocator),
// arena_offload.cpp (offload/restore) and arena_validate.cpp (invariants).
// Private to the library.
//
// Stream-ordered reuse:
//   - A block freed on stream S goes to S's free pool and is reused by the
//     next malloc on S at once (the stream orders the work): no event work.
//   - A block that record_stream tied to other streams waits in `pending`
//     with one event per other stream, then returns to S's pool.
//   - A malloc on T that misses T's pool and the ready pool "reclaims" the
//     best-fitting block of another stream's pool: it moves to `pending`
//     behind an event recorded on that stream and enters the ready pool
//     (usable by any stream) once the event is done.
//   - Before device memory is released (empty_cache, OOM, offload) the
//     device is synchronised, so all pending blocks become free.
//
// Offloaded segments: their free blocks are unlisted (no pool), so malloc
// never hands out memory that is not mapped; after restore they enter the
// ready pool.
//
// All members are guarded by `mutex`.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "alloc/arena.h"
#include "alloc/block.h"
#include "alloc/block_pool.h"
#include "alloc/copy_engine.h"
#include "alloc/event_pool.h"
#include "alloc/host_backup_pool.h"
#include "alloc/ptr_map.h"
#include "alloc/segment.h"
#include "alloc/size_classes.h"
#include "alloc/va_space.h"

namespace acb::alloc {

struct Arena::Impl {
  Impl(Driver& driver, int device, ArenaOptions options);
  ~Impl();

  // --- sub-allocator (arena.cpp) ---------------------------------------------
  /// A block of `rounded` bytes allocated on `stream`, or nullptr when the
  /// device (or the reservation) has no room even after releasing cached segments.
  Block* allocate(std::size_t rounded, StreamHandle stream);
  void deallocate(Block* block, StreamHandle stream);
  BlockPool& pool_for(StreamHandle stream);
  /// Lists a free block in `pool`, merging it with free neighbours of the same pool.
  void insert_free(Block* block, BlockPool& pool);
  /// Merges a free block of an offloaded segment with its free neighbours.
  Block* merge_unlisted(Block* block);
  /// Cuts the tail beyond `rounded` off `block` when it is large enough.
  void split(Block* block, std::size_t rounded, BlockPool& remainder_pool);
  /// A new resident segment for a request of `rounded` bytes, its one free
  /// block unlisted; nullptr when the device or the VA is full.
  Block* grow(std::size_t rounded, bool small);
  /// Bytes grow() maps for such a request: the out-of-memory shortfall.
  std::size_t segment_bytes_for(std::size_t rounded, bool small) const;
  /// Forgets a segment whose blocks are all free and not pending.
  void release_segment(Segment* segment);
  /// Synchronises the device and releases every resident segment with no
  /// allocated block. Returns the bytes released.
  std::size_t release_free_segments();
  /// Moves pending blocks whose events are done (all of them when `wait`) to their pools.
  void process_pending(bool wait);
  /// Moves a free block of another stream's pool that could serve the
  /// request behind an event on that stream. Returns true when one moved.
  bool reclaim_other_streams(std::size_t rounded, bool small, StreamHandle stream);
  Segment* segment_at(DevicePtr ptr) const;
  /// The segments overlapping [address, address + bytes), in address order.
  std::vector<Segment*> segments_overlapping(DevicePtr address, std::size_t bytes) const;
  std::string memory_summary() const;
  void sync_host_stats();
  void update_peaks();

  // --- offload/restore (arena_offload.cpp) -----------------------------------
  OffloadResult offload(std::size_t budget_bytes);
  std::size_t restore_segments(std::vector<Segment*> wanted);
  void make_offloaded(Segment* segment);
  void make_resident(Segment* segment);

  // --- invariants (arena_validate.cpp) ---------------------------------------
  void validate() const;

  Driver& driver;
  const int device;
  const ArenaOptions options;
  const std::size_t granularity;
  const std::size_t small_segment_bytes;

  mutable std::mutex mutex;
  // Declaration order is destruction order reversed: segments (mappings,
  // backups) go before the pools and the reservation they live in.
  VaSpace va;
  HostBackupPool host_pool;
  EventPool events;
  CopyEngine copier;
  BlockStore blocks;
  std::vector<std::unique_ptr<Segment>> segments;
  /// Segment of each granule of the reservation (nullptr where none).
  std::vector<Segment*> segment_table;
  PtrMap ptr_map;
  std::vector<std::unique_ptr<BlockPool>> stream_pools;
  BlockPool* last_pool = nullptr;
  BlockPool ready_pool;

  struct Pending {
    std::vector<EventHandle> events;
    std::vector<Block*> blocks;
    /// Where the blocks go once the events are done: the pool of
    /// `target_stream`, or the ready pool.
    StreamHandle target_stream = nullptr;
    bool to_ready = false;
  };
  std::vector<Pending> pending;

  Stats stats;
  std::uint64_t tick = 0;
  std::function<bool(std::size_t)> oom_handler;
};

inline std::uint64_t elapsed_ns(std::chrono::steady_clock::time_point since) {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - since)
          .count());
}

}  // namespace acb::alloc
