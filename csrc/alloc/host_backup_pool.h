// HostBackupPool: pinned host buffers for segment backups, allocated once and
// reused (pinning is slow: never pin per offload), with the bytes held
// accounted against a limit (ArenaOptions::host_backup_limit_bytes).
//
// Buffers come in size classes (class_bytes): 2 MiB steps up to 16 MiB, then
// 8 classes per doubling, so a buffer is at most 1/8 larger than asked. A
// backup of a segment of another size in the same class (dynamic shapes make
// segments of ever new sizes) reuses a cached buffer instead of pinning one
// more. In-use and pinned bytes are counted in class bytes, the memory really
// held.
//
// A HostBuffer is a move-only handle; destroying it returns the buffer to the
// pool's cache. Cached buffers are freed only to make room under the limit, by
// trim(), or when the pool is destroyed.
//
// At the limit nothing is lost: acquire() throws HostBackupLimitExceeded and
// the arena's offload, which takes every buffer before it copies or releases
// anything, then releases nothing (the memory stays on the device).
//
// Not thread-safe: used under the arena's mutex. The pool must outlive its
// buffers.
#pragma once

#include <cstddef>
#include <map>

#include "alloc/driver.h"

namespace acb::alloc {

class HostBackupPool;

class HostBuffer {
 public:
  HostBuffer() = default;
  HostBuffer(HostBackupPool* pool, void* data, std::size_t bytes)
      : pool_(pool), data_(data), bytes_(bytes) {}
  HostBuffer(HostBuffer&& other) noexcept { swap(other); }
  HostBuffer& operator=(HostBuffer&& other) noexcept {
    HostBuffer tmp(std::move(other));
    swap(tmp);
    return *this;
  }
  ~HostBuffer() { reset(); }

  void reset();
  explicit operator bool() const { return data_ != nullptr; }
  std::byte* data() const { return static_cast<std::byte*>(data_); }
  std::size_t bytes() const { return bytes_; }

 private:
  void swap(HostBuffer& other) noexcept {
    std::swap(pool_, other.pool_);
    std::swap(data_, other.data_);
    std::swap(bytes_, other.bytes_);
  }
  HostBackupPool* pool_ = nullptr;
  void* data_ = nullptr;
  std::size_t bytes_ = 0;
};

class HostBackupPool {
 public:
  /// Buffers for backups of `device`'s memory (pinned in its context); `limit_bytes` 0: unbounded.
  HostBackupPool(Driver& driver, int device, std::size_t limit_bytes)
      : driver_(driver), device_(device), limit_bytes_(limit_bytes) {}
  ~HostBackupPool();
  HostBackupPool(const HostBackupPool&) = delete;
  HostBackupPool& operator=(const HostBackupPool&) = delete;

  /// The size class of `bytes`: the bytes of the buffer acquire(bytes) hands out.
  static std::size_t class_bytes(std::size_t bytes);

  /// A buffer of class_bytes(`bytes`) (HostBuffer::bytes()), from the cache
  /// or newly pinned (freeing cached buffers first when the limit requires).
  /// Throws HostBackupLimitExceeded when in-use bytes plus that exceed the
  /// limit; DriverError when pinning fails.
  HostBuffer acquire(std::size_t bytes);
  /// True when `class_bytes` more (a sum of class_bytes()) can be in use within the limit.
  bool fits(std::size_t class_bytes) const {
    return limit_bytes_ == 0 || in_use_bytes_ + class_bytes <= limit_bytes_;
  }

  std::size_t limit_bytes() const { return limit_bytes_; }
  /// Bytes held by live HostBuffers.
  std::size_t in_use_bytes() const { return in_use_bytes_; }
  /// Bytes of pinned memory held (in use plus cached).
  std::size_t pinned_bytes() const { return pinned_bytes_; }
  /// Frees every cached (unused) buffer.
  void trim();

 private:
  friend class HostBuffer;
  void give_back(void* data, std::size_t bytes);
  void free_cached_until_fits(std::size_t bytes);

  Driver& driver_;
  int device_;
  std::size_t limit_bytes_;
  std::size_t in_use_bytes_ = 0;
  std::size_t pinned_bytes_ = 0;
  std::multimap<std::size_t, void*> cached_;
};

}  // namespace acb::alloc
