#include "alloc/host_backup_pool.h"

#include <algorithm>
#include <cstdint>
#include <string>

#include "alloc/arena.h"

namespace acb::alloc {

void HostBuffer::reset() {
  if (data_ != nullptr && pool_ != nullptr) pool_->give_back(data_, bytes_);
  pool_ = nullptr;
  data_ = nullptr;
  bytes_ = 0;
}

std::size_t HostBackupPool::class_bytes(std::size_t bytes) {
  constexpr std::size_t kStep = std::size_t{2} << 20;
  constexpr std::size_t kLinearUpTo = std::size_t{16} << 20;
  if (bytes <= kLinearUpTo) return (std::max<std::size_t>(bytes, 1) + kStep - 1) / kStep * kStep;
  // 8 classes per doubling: steps of 1/8 of the power of two at or below `bytes`.
  std::size_t power = kLinearUpTo;
  while (power <= bytes / 2) power *= 2;
  const std::size_t step = power / 8;
  if (bytes > SIZE_MAX - step) return bytes;  // no class above: exactly what is asked
  return (bytes + step - 1) / step * step;
}

HostBackupPool::~HostBackupPool() { trim(); }

void HostBackupPool::trim() {
  for (auto& [bytes, data] : cached_) {
    driver_.host_free(data, bytes);
    pinned_bytes_ -= bytes;
  }
  cached_.clear();
}

void HostBackupPool::free_cached_until_fits(std::size_t bytes) {
  // Largest cached buffers first: fewest frees for the room needed.
  while (limit_bytes_ != 0 && pinned_bytes_ + bytes > limit_bytes_ && !cached_.empty()) {
    auto it = std::prev(cached_.end());
    driver_.host_free(it->second, it->first);
    pinned_bytes_ -= it->first;
    cached_.erase(it);
  }
}

HostBuffer HostBackupPool::acquire(std::size_t requested_bytes) {
  const std::size_t bytes = class_bytes(requested_bytes);
  if (!fits(bytes)) {
    throw HostBackupLimitExceeded("host backup pool: " + std::to_string(requested_bytes) +
                                  " bytes requested (a buffer of " + std::to_string(bytes) +
                                  ") with " + std::to_string(in_use_bytes_) +
                                  " in use of a limit of " + std::to_string(limit_bytes_) +
                                  " bytes");
  }
  auto it = cached_.find(bytes);
  void* data = nullptr;
  if (it != cached_.end()) {
    data = it->second;
    cached_.erase(it);
  } else {
    free_cached_until_fits(bytes);
    data = driver_.host_alloc(bytes, device_);
    pinned_bytes_ += bytes;
  }
  in_use_bytes_ += bytes;
  return HostBuffer(this, data, bytes);
}

void HostBackupPool::give_back(void* data, std::size_t bytes) {
  in_use_bytes_ -= bytes;
  cached_.emplace(bytes, data);
}

}  // namespace acb::alloc
