// The emulated device's physical memory: one memfd per driver, sparse and
// far larger than the device, carved into offset ranges (first fit, merged on
// release). A physical allocation is such a range; mapping it is
// mmap(MAP_SHARED | MAP_FIXED) of the memfd at that offset, so its contents
// survive unmap and remap exactly as a CUDA allocation's do. Releasing punches
// a hole (FALLOC_FL_PUNCH_HOLE) so the pages really go back to the system.
//
// One fd for the whole device, whatever the number of allocations. Capacity is
// not enforced here (that is the shared ledger's job); running out of offset
// space, which needs heavy fragmentation, is reported as out of memory.
//
// Thread-safety: none; the driver serialises calls.
#pragma once

#include <cstddef>
#include <map>
#include <string>

namespace acb::alloc {

class EmulatedMemory {
 public:
  /// Creates the memfd with `span_bytes` of (sparse) offset space.
  EmulatedMemory(const std::string& name, std::size_t span_bytes);
  ~EmulatedMemory();
  EmulatedMemory(const EmulatedMemory&) = delete;
  EmulatedMemory& operator=(const EmulatedMemory&) = delete;

  /// Returns the offset of a free range of `bytes`. Throws DriverError
  /// (out_of_memory) when no range is large enough.
  std::size_t allocate(std::size_t bytes);
  /// Gives the range back and drops its pages.
  void deallocate(std::size_t offset, std::size_t bytes);
  /// Maps [offset, offset + bytes) of the memfd read-write at `address` (MAP_FIXED).
  void map(void* address, std::size_t offset, std::size_t bytes);

  int fd() const { return fd_; }

 private:
  int fd_ = -1;
  std::size_t span_bytes_;
  std::map<std::size_t, std::size_t> free_;  // offset -> bytes, disjoint, not adjacent
};

}  // namespace acb::alloc
