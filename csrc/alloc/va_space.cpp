#include "alloc/va_space.h"

#include <algorithm>

#include "alloc/range_map.h"

namespace acb::alloc {

VaSpace::VaSpace(Driver& driver, std::size_t bytes, int device) : driver_(driver), bytes_(bytes) {
  base_ = driver_.reserve(bytes, device);
  free_.emplace(base_, bytes_);
}

VaSpace::~VaSpace() {
  try {
    driver_.free_reservation(base_, bytes_);
  } catch (...) {
    // Nothing can be reported from a destructor; the process keeps the VA.
  }
}

DevicePtr VaSpace::allocate(std::size_t bytes) {
  for (auto it = free_.begin(); it != free_.end(); ++it) {
    if (it->second < bytes) continue;
    DevicePtr address = it->first;
    std::size_t rest = it->second - bytes;
    free_.erase(it);
    if (rest != 0) free_.emplace(address + bytes, rest);
    return address;
  }
  return 0;
}

void VaSpace::release(DevicePtr address, std::size_t bytes) { insert_coalescing(free_, address, bytes); }

std::size_t VaSpace::free_bytes() const {
  std::size_t total = 0;
  for (const auto& [address, bytes] : free_) total += bytes;
  return total;
}

std::size_t VaSpace::largest_free_bytes() const {
  std::size_t largest = 0;
  for (const auto& [address, bytes] : free_) largest = std::max(largest, bytes);
  return largest;
}

}  // namespace acb::alloc
