// PhysicalMapping: RAII for device memory mapped at a fixed address.
// Construction creates `bytes` of physical memory and maps it at `address`
// (releasing it again if the map fails); destruction unmaps and releases, so
// the VA stays reserved and touching it faults. This is what "resident"
// means for a segment.
#pragma once

#include <cstddef>

#include "alloc/driver.h"

namespace acb::alloc {

class PhysicalMapping {
 public:
  /// Throws DriverError (out_of_memory() set when the device is full).
  PhysicalMapping(Driver& driver, DevicePtr address, std::size_t bytes, int device)
      : driver_(&driver), address_(address), bytes_(bytes) {
    handle_ = driver.create(bytes, device);
    try {
      driver.map(address, bytes, handle_, device);
    } catch (...) {
      driver.release(handle_);
      throw;
    }
  }
  ~PhysicalMapping() {
    // Unmap/release failures cannot be reported from a destructor; the
    // drivers only fail here on programming errors (wrong address).
    try {
      driver_->unmap(address_, bytes_);
      driver_->release(handle_);
    } catch (...) {
    }
  }
  PhysicalMapping(const PhysicalMapping&) = delete;
  PhysicalMapping& operator=(const PhysicalMapping&) = delete;

  DevicePtr address() const { return address_; }
  std::size_t bytes() const { return bytes_; }

 private:
  Driver* driver_;
  DevicePtr address_;
  std::size_t bytes_;
  PhysicalHandle handle_ = 0;
};

}  // namespace acb::alloc
