// The emulated device's physical memory: one memfd per driver, sparse and
// far larger than the device, carved into offset ranges. A physical
// allocation is such a range; its contents live in the memfd, so they survive
// unmap and remap exactly as a CUDA allocation's do.
//
// Page tables are moved, not rebuilt. Every range is also mapped read-write
// at a private "parking" address (park_base + offset, in a reservation as
// large as the span, 1 GiB aligned). map() moves the range's page tables from
// parking to the device address with mremap(MREMAP_FIXED | MREMAP_DONTUNMAP),
// and unmap() moves them back, then covers the device address with a
// PROT_NONE reservation again so that touching it faults. With 2 MiB aligned
// addresses and ranges the kernel moves whole page-table pages (one entry per
// 2 MiB), so mapping or unmapping 256 MiB costs microseconds instead of the
// ~20 ms (unmap) and ~45 ms (refault) of tearing down and rebuilding 4 KiB
// entries. A second mapping of a range already shown elsewhere is an ordinary
// mmap(MAP_SHARED | MAP_POPULATE) of the memfd.
//
// Free pool. A released range keeps its pages and its parked page tables in
// a pool (up to `pool_cap_bytes`); allocate() takes pooled ("warm") ranges
// first, so a later create of the same or a smaller size costs neither a
// hole punch nor zero-filling fresh pages. What exceeds the cap is punched out
// (FALLOC_FL_PUNCH_HOLE) so the pages really go back to the system; closing
// the memfd at destruction gives back the rest. A reused range holds whatever
// its last owner wrote (cuMemCreate does not zero memory either). Capacity is
// not enforced here (that is the shared ledger's job); running out of offset
// space, which needs heavy fragmentation, is reported as out of memory.
//
// Thread-safety: none; the driver serialises calls.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

namespace acb::alloc {

class EmulatedMemory {
 public:
  /// Creates the memfd with `span_bytes` of (sparse) offset space, and its
  /// parking reservation. Released ranges up to `pool_cap_bytes` stay warm.
  EmulatedMemory(const std::string& name, std::size_t span_bytes, std::size_t pool_cap_bytes);
  ~EmulatedMemory();
  EmulatedMemory(const EmulatedMemory&) = delete;
  EmulatedMemory& operator=(const EmulatedMemory&) = delete;

  /// Returns the offset of a range of `bytes` whose pages exist and are
  /// parked: a pooled one when one is large enough, else a fresh one (its
  /// pages faulted in now). Throws DriverError (out_of_memory) when no range
  /// is large enough or the pages cannot be had.
  std::size_t allocate(std::size_t bytes);
  /// Gives back a range that is mapped nowhere: into the pool, or punched out
  /// when the pool is full.
  void deallocate(std::size_t offset, std::size_t bytes);
  /// Shows [offset, offset + bytes) of the memfd read-write at `address`
  /// (2 MiB aligned for the fast path), replacing what is there.
  void map(void* address, std::size_t offset, std::size_t bytes);
  /// Hides the range shown at `address` (mapped there by map()) and leaves a
  /// PROT_NONE reservation there, so touching it faults.
  void unmap(void* address, std::size_t offset, std::size_t bytes);

  int fd() const { return fd_; }
  /// Released bytes kept warm in the pool.
  std::size_t pooled_bytes() const { return pooled_bytes_; }

 private:
  using Ranges = std::map<std::size_t, std::size_t>;  // offset -> bytes, disjoint, not adjacent
  static bool take_range(Ranges& ranges, std::size_t bytes, std::size_t* offset);
  void* parked(std::size_t offset) const { return reinterpret_cast<void*>(park_base_ + offset); }
  void park_fresh(std::size_t offset, std::size_t bytes);

  int fd_ = -1;
  std::size_t span_bytes_;
  std::size_t pool_cap_bytes_;
  void* park_raw_ = nullptr;  // the whole parking reservation, for munmap
  std::size_t park_raw_bytes_ = 0;
  std::uintptr_t park_base_ = 0;
  Ranges cold_;  // never used or punched out: no pages
  Ranges warm_;  // released into the pool: pages and parked page tables kept
  std::size_t pooled_bytes_ = 0;
  // Ranges whose page tables were moved out of parking to a device address
  // (offset -> bytes); a further mapping of one of them is a plain mmap.
  std::map<std::size_t, std::size_t> shown_;
};

}  // namespace acb::alloc
