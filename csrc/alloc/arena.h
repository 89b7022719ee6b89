// Arena: one per device. A large VA reservation, physical memory mapped in
// segments (multiples of the driver granularity), a caching sub-allocator on
// top, and offload/restore of segments to pinned host backups at the same
// addresses.
//
// This header is the public C++ API of the memory manager; the torch layer
// and the C ABI (pluggable_allocator.cpp) use only what is declared here.
//
// Policies (docs/memory.md has the whole picture):
//   - Requests <= 1 MiB share 2 MiB segments (size-class lists); larger ones
//     get segments rounded up to the granularity (best fit, split, merge).
//   - Stream-ordered reuse: a block freed on stream S is reused on S at once;
//     another stream gets it only after an event recorded on S (and on every
//     stream given to record_stream) has completed.
//   - malloc while segments are offloaded never returns unmapped memory: the
//     free blocks of offloaded segments are skipped (new segments or free
//     blocks of resident ones are used); free() of a block in an offloaded
//     segment works, and a segment left without live blocks is dropped.
//   - A restore that does not fit throws OutOfMemory after undoing what it
//     mapped: nothing half-mapped, backups kept.
//   - Backups are kept after restore; an offload releases a segment whose
//     backup is current (no mark_written, no malloc in it since) without copying.
//
// Thread-safety: all public methods are thread-safe (one mutex per arena).
// offload() requires the caller to guarantee quiescence (no kernel or copy in
// flight touching the arena; the arena synchronises the device itself before
// copying).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>

#include "alloc/driver.h"
#include "alloc/stats.h"

namespace acb::alloc {

/// Thrown when device memory cannot be had. what() carries the sizes:
/// requested, free on the device, reserved and allocated by this arena.
class OutOfMemory : public std::runtime_error {
 public:
  OutOfMemory(const std::string& message, std::size_t requested_bytes, std::size_t free_bytes)
      : std::runtime_error(message), requested_bytes_(requested_bytes), free_bytes_(free_bytes) {}
  std::size_t requested_bytes() const { return requested_bytes_; }
  std::size_t free_bytes() const { return free_bytes_; }

 private:
  std::size_t requested_bytes_;
  std::size_t free_bytes_;
};

/// Thrown by offload() when the host backup limit cannot hold what must be
/// copied; nothing has been released when it is thrown.
class HostBackupLimitExceeded : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct ArenaOptions {
  /// VA reserved up front, in bytes (0: 4 x the device's total memory).
  std::size_t va_reserve_bytes = 0;
  /// Upper bound of pinned host memory for backups (ACB_HOST_BACKUP_LIMIT; 0: unbounded).
  std::size_t host_backup_limit_bytes = 0;
  /// Size of one copy chunk and number of chunks kept in flight.
  std::size_t copy_chunk_bytes = std::size_t{8} << 20;
  int copy_chunks_in_flight = 4;
  /// Free bytes between two allocated blocks that a copy includes rather
  /// than making two copies (copy_plan.h). 64 KiB take 1.3-2.6 us to move at
  /// 25-50 GB/s, no more than the fixed cost of one copy (a driver call and a
  /// DMA setup, a few microseconds; not yet measured on a GPU).
  std::size_t copy_merge_gap_bytes = std::size_t{64} << 10;
};

struct OffloadResult {
  std::size_t released_bytes = 0;       ///< physical bytes given back to the device
  std::size_t copied_bytes = 0;         ///< bytes copied to host backups
  std::size_t skipped_clean_bytes = 0;  ///< live bytes not copied because the backup was current
};

class Arena {
 public:
  /// Most out-of-memory handler calls one malloc makes (see set_out_of_memory_handler).
  static constexpr int kOomHandlerCalls = 8;

  Arena(Driver& driver, int device, ArenaOptions options = {});
  ~Arena();
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  /// Allocates `bytes` for use on `stream`. Throws OutOfMemory.
  void* malloc(std::size_t bytes, StreamHandle stream);
  /// Frees a pointer returned by malloc; reuse on another stream waits for `stream`.
  void free(void* ptr, StreamHandle stream);
  /// Notes that `ptr` is also used on `stream` (torch's record_stream).
  void record_stream(void* ptr, StreamHandle stream);
  /// Releases every fully free segment (torch's empty_cache).
  void empty_cache();
  /// Called (without the arena lock held) when an allocation finds no device
  /// memory even after releasing this arena's cached segments, with the
  /// shortfall: the bytes of the segment the arena must newly map (the
  /// request rounded to its segment size, not the request). If it returns
  /// true (it made room, e.g. by asking the broker to evict others), the
  /// allocation is retried; the handler is called again after a failed retry
  /// only while the device's free memory grew since the previous failure, and
  /// at most kOomHandlerCalls times per allocation. Otherwise OutOfMemory is
  /// thrown. Pass an empty function to remove it.
  void set_out_of_memory_handler(std::function<bool(std::size_t shortfall_bytes)> handler);

  /// Marks [ptr, ptr + bytes) as written since its last backup (and as
  /// recently used, for the LRU order of partial offload). Parts of the range
  /// outside this arena are ignored.
  void mark_written(const void* ptr, std::size_t bytes);
  /// Marks every segment as written since its last backup: for callers that
  /// let memory be written without marking it (acb.disable() ... enable()).
  void mark_all_written();

  /// Releases at least `budget_bytes` of physical memory (all with SIZE_MAX),
  /// fully free segments first, then least recently used segments, copying
  /// the allocated ranges of dirty segments to pinned host backups; the VA
  /// stays reserved. Throws HostBackupLimitExceeded (nothing released) when
  /// the backups would exceed ArenaOptions::host_backup_limit_bytes, and
  /// DriverError when a copy fails: the fully free segments are released
  /// then, every segment that needed copying stays resident (segments are
  /// released only once all copies are done).
  OffloadResult offload(std::size_t budget_bytes = SIZE_MAX);
  /// Keeps the segments overlapping [ptr, ptr + bytes) resident until the
  /// matching unpin(ptr, bytes): memory handed to code that reads and writes
  /// it without telling the arena (a numpy array, a DLPack consumer). Pins
  /// nest. Offload, empty_cache and the out-of-memory retry never release a
  /// pinned segment: it stays counted in resident_bytes(), so an offload
  /// asked for more than the unpinned segments hold releases less than
  /// asked. Offloaded segments of the range are restored first (the caller
  /// holds the device, as for restore; throws OutOfMemory as restore does).
  /// Parts of the range outside this arena are ignored. Returns the bytes of
  /// the segments the range overlaps (0: none of this arena's).
  std::size_t pin(const void* ptr, std::size_t bytes);
  /// Ends one pin(ptr, bytes) (same arguments). The segments are marked
  /// written, since the holder of the pin may have written them at any time
  /// up to now; once no pin is left on a segment, offload may release it
  /// again (copying it, as any written segment). Throws std::logic_error for
  /// a range with no pin.
  void unpin(const void* ptr, std::size_t bytes);

  /// Maps back and restores every offloaded segment. Throws OutOfMemory with
  /// the bytes needed and free; on failure the state stays consistent.
  std::size_t restore_all();
  /// Restores the segments overlapping [ptr, ptr + bytes).
  std::size_t restore(const void* ptr, std::size_t bytes);
  /// True when all of [ptr, ptr + bytes) is backed by device memory.
  bool is_resident(const void* ptr, std::size_t bytes) const;
  /// True when `ptr` lies in this arena's reservation.
  bool owns(const void* ptr) const;

  // --- fork() (process_arenas.cpp registers these with pthread_atfork) --------
  /// Before fork(): waits for any call in flight (an offload or restore
  /// finishes first) and holds off all others until one of the two below.
  void before_fork();
  /// In the parent after fork(): lets calls go again.
  void after_fork_in_parent();
  /// In the child after fork(): gives the child its own copy of every
  /// segment as it was at the fork (Driver::detach_after_fork): resident
  /// ones from their mapping, offloaded ones from their host backups (which
  /// the child inherited as ordinary memory), so the child reads what it
  /// forked with, offloaded or not, and its writes stay its own. Then lets
  /// calls go again. The arena's bookkeeping keeps working in the child
  /// (freeing inherited blocks), but the driver may not be used there:
  /// malloc that needs a new segment, offload and restore fail loudly.
  void after_fork_in_child();

  /// Physical bytes currently mapped on the device.
  std::size_t resident_bytes() const;
  /// ArenaOptions::host_backup_limit_bytes (0: unbounded).
  std::size_t host_backup_limit_bytes() const;
  Stats stats() const;
  /// Checks every invariant; throws std::logic_error naming the broken one.
  void validate() const;

  int device() const;
  Driver& driver() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace acb::alloc
