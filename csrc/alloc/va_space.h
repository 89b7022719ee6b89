// VaSpace: the arena's one VA reservation (RAII: reserved in the constructor,
// freed in the destructor) and a first-fit allocator of granularity-aligned
// ranges inside it for segments. Free ranges are coalesced on release.
//
// Not thread-safe: used under the arena's mutex.
#pragma once

#include <cstddef>
#include <map>

#include "alloc/driver.h"

namespace acb::alloc {

class VaSpace {
 public:
  /// Throws DriverError when the reservation fails.
  VaSpace(Driver& driver, std::size_t bytes, int device);
  ~VaSpace();
  VaSpace(const VaSpace&) = delete;
  VaSpace& operator=(const VaSpace&) = delete;

  DevicePtr base() const { return base_; }
  std::size_t bytes() const { return bytes_; }
  bool contains(DevicePtr ptr) const { return ptr >= base_ && ptr - base_ < bytes_; }

  /// A free range of `bytes` (a multiple of the granularity), or 0 when none is large enough.
  DevicePtr allocate(std::size_t bytes);
  /// Returns a range obtained from allocate().
  void release(DevicePtr address, std::size_t bytes);
  /// Bytes not handed out.
  std::size_t free_bytes() const;
  /// Largest free range.
  std::size_t largest_free_bytes() const;
  /// Free ranges by address (for validate()).
  const std::map<DevicePtr, std::size_t>& free_ranges() const { return free_; }

 private:
  Driver& driver_;
  DevicePtr base_ = 0;
  std::size_t bytes_ = 0;
  std::map<DevicePtr, std::size_t> free_;  // address -> bytes, never adjacent
};

}  // namespace acb::alloc
