// LazyCopyDriver: the emulated device, except that work on streams created
// through it (the arena's copy stream) runs late: such streams stay paused,
// and their queued copies run only when someone synchronises, or on every
// third event poll. So copies complete after they are enqueued, as on a GPU,
// and an arena that released or reused memory before its copies were done
// would fail the data checks (or the emulated driver's mapping checks).
// It counts the copies and bytes given to it (batches come through the
// contract's default, one copy call per range), records how many copies had
// been enqueued at each unmap, and can fail a later copy on request.
#pragma once

#include <algorithm>
#include <cerrno>
#include <mutex>
#include <vector>

#include "alloc/emulated_driver.h"

namespace acb::alloc::testing {

class LazyCopyDriver final : public Driver {
 public:
  explicit LazyCopyDriver(EmulatedDriver& inner) : inner_(inner) {}

  std::string name() const override { return inner_.name(); }
  int device_count() const override { return inner_.device_count(); }
  std::size_t granularity(int device) const override { return inner_.granularity(device); }
  MemoryInfo memory_info(int device) const override { return inner_.memory_info(device); }
  DevicePtr reserve(std::size_t bytes, int device) override {
    return inner_.reserve(bytes, device);
  }
  void free_reservation(DevicePtr base, std::size_t bytes) override {
    inner_.free_reservation(base, bytes);
  }
  PhysicalHandle create(std::size_t bytes, int device) override {
    return inner_.create(bytes, device);
  }
  void release(PhysicalHandle handle) override { inner_.release(handle); }
  void map(DevicePtr address, std::size_t bytes, PhysicalHandle handle, int device) override {
    inner_.map(address, bytes, handle, device);
  }
  void unmap(DevicePtr address, std::size_t bytes) override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      copies_at_unmap_.push_back(copies_);
    }
    inner_.unmap(address, bytes);
  }
  void* host_alloc(std::size_t bytes, int device) override { return inner_.host_alloc(bytes, device); }
  void host_free(void* ptr, std::size_t bytes) override { inner_.host_free(ptr, bytes); }

  StreamHandle create_stream(int device) override {
    StreamHandle stream = inner_.create_stream(device);
    inner_.pause_stream(stream);
    std::lock_guard<std::mutex> lock(mutex_);
    lazy_.push_back(stream);
    return stream;
  }
  void destroy_stream(StreamHandle stream) override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      lazy_.erase(std::remove(lazy_.begin(), lazy_.end(), stream), lazy_.end());
    }
    inner_.resume_stream(stream);
    inner_.destroy_stream(stream);
  }
  void synchronize_stream(StreamHandle stream) override {
    while_running([&] { inner_.synchronize_stream(stream); });
  }
  void synchronize_device(int device) override {
    while_running([&] { inner_.synchronize_device(device); });
  }
  EventHandle create_event(int device) override { return inner_.create_event(device); }
  void destroy_event(EventHandle event) override { inner_.destroy_event(event); }
  void record_event(EventHandle event, StreamHandle stream) override {
    inner_.record_event(event, stream);
  }
  bool event_done(EventHandle event) override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ++polls_;
    }
    if (polls_ % 3 == 0) while_running([] {});
    return inner_.event_done(event);
  }
  void synchronize_event(EventHandle event) override {
    while_running([&] { inner_.synchronize_event(event); });
  }
  void copy_to_host_async(void* dst, DevicePtr src, std::size_t bytes,
                          StreamHandle stream) override {
    count_copy(bytes);
    inner_.copy_to_host_async(dst, src, bytes, stream);
  }
  void copy_to_device_async(DevicePtr dst, const void* src, std::size_t bytes,
                            StreamHandle stream) override {
    count_copy(bytes);
    inner_.copy_to_device_async(dst, src, bytes, stream);
  }
  void detach_after_fork(DevicePtr address, std::size_t bytes, const void* contents) override {
    inner_.detach_after_fork(address, bytes, contents);
  }

  /// Copies that were enqueued on lazy streams and ran late.
  std::size_t flushes() const { return flushes_; }
  /// Copy calls (copy_to_host_async + copy_to_device_async) and their bytes so far.
  std::size_t copies() const { return copies_; }
  std::size_t copied_bytes() const { return copied_bytes_; }
  /// copies() as it was at each unmap so far, in order.
  std::vector<std::size_t> copies_at_unmap() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return copies_at_unmap_;
  }
  /// Makes the copy after the next `n` throw DriverError (once).
  void fail_copy_after(std::size_t n) {
    std::lock_guard<std::mutex> lock(mutex_);
    fail_at_ = copies_ + n + 1;
  }

 private:
  void count_copy(std::size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    ++copies_;
    if (copies_ == fail_at_) {
      fail_at_ = 0;
      throw DriverError("copy", EIO, "injected copy failure (LazyCopyDriver::fail_copy_after)");
    }
    copied_bytes_ += bytes;
  }

  /// Lets the lazy streams run their queues, calls `fn`, then holds them again.
  template <class Fn>
  void while_running(Fn&& fn) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (StreamHandle stream : lazy_) inner_.resume_stream(stream);
    ++flushes_;
    try {
      fn();
    } catch (...) {
      for (StreamHandle stream : lazy_) inner_.pause_stream(stream);
      throw;
    }
    for (StreamHandle stream : lazy_) inner_.pause_stream(stream);
  }

  EmulatedDriver& inner_;
  mutable std::mutex mutex_;
  std::vector<StreamHandle> lazy_;
  std::size_t polls_ = 0;
  std::size_t flushes_ = 0;
  std::size_t copies_ = 0;
  std::size_t copied_bytes_ = 0;
  std::size_t fail_at_ = 0;  // 0: none
  std::vector<std::size_t> copies_at_unmap_;
};

}  // namespace acb::alloc::testing
