// The emulated device: the driver contract (driver.h) backed by host memory,
// so that the memory manager and everything above it run and are tested on
// machines without a GPU. docs/drivers.md describes its semantics.
//
//   reserve      mmap(PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE),
//                aligned to the granularity; touching it faults (SIGSEGV).
//   create       charges the shared capacity ledger (EmulatedLedger), then
//                takes a range of the driver's memfd (EmulatedMemory): a
//                warm one from its free pool when one fits.
//   map          moves the range's page tables from its parking address to
//                the address (mremap), or maps the memfd there.
//   unmap        moves them back and leaves PROT_NONE: faults again.
//   release      returns the range to the pool (or punches it out of the
//                memfd past the pool's cap), uncharges the ledger.
//   copies       memcpy at enqueue time (EmulatedStreams), unless the stream
//                is paused; both ends are checked first: a device range that
//                is not wholly mapped is a DriverError, not a crash.
//   host memory  ordinary page-aligned heap memory.
//   after fork   the memfd is shared with a forked child, so the child gets
//                private anonymous copies instead (detach_after_fork):
//                without them its writes would land in the parent and it
//                would read whatever the parent later puts at those offsets.
//
// Misuse the CUDA driver would reject (unaligned sizes, mapping over a
// mapping, releasing a mapped allocation, freeing a reservation that still
// has mappings, unknown handles) throws DriverError naming the call, size,
// address and device, so tests catch it here rather than on a GPU.
//
// Thread-safety: every method is thread-safe. Do not use a driver in a child
// after fork(); the child makes its own.
#pragma once

#include <chrono>
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "alloc/driver.h"
#include "alloc/emulated_ledger.h"
#include "alloc/emulated_memory.h"
#include "alloc/emulated_streams.h"

namespace acb::alloc {

/// Options from ACB_EMULATED_DEVICE ("name[:capacity]"), defaults when unset.
/// Throws std::invalid_argument when it is set but malformed.
EmulatedDeviceOptions emulated_device_from_env();

class EmulatedDriver final : public Driver {
 public:
  /// Throws std::invalid_argument for bad options (granularity not a power of
  /// two multiple of the page size, device_count outside 1..16, empty name)
  /// and DriverError when the ledger or the memfd cannot be set up.
  explicit EmulatedDriver(const EmulatedDeviceOptions& options);
  ~EmulatedDriver() override;
  EmulatedDriver(const EmulatedDriver&) = delete;
  EmulatedDriver& operator=(const EmulatedDriver&) = delete;

  std::string name() const override { return "emulated"; }
  int device_count() const override { return options_.device_count; }
  std::size_t granularity(int device) const override;
  /// free = capacity - bytes held by all live processes on this emulated device.
  MemoryInfo memory_info(int device) const override;

  DevicePtr reserve(std::size_t bytes, int device) override;
  void free_reservation(DevicePtr base, std::size_t bytes) override;

  PhysicalHandle create(std::size_t bytes, int device) override;
  void release(PhysicalHandle handle) override;
  void map(DevicePtr address, std::size_t bytes, PhysicalHandle handle, int device) override;
  void unmap(DevicePtr address, std::size_t bytes) override;

  void* host_alloc(std::size_t bytes, int device) override;
  void host_free(void* ptr, std::size_t bytes) override;

  StreamHandle create_stream(int device) override;
  void destroy_stream(StreamHandle stream) override;
  void synchronize_stream(StreamHandle stream) override;
  void synchronize_device(int device) override;

  EventHandle create_event(int device) override;
  void destroy_event(EventHandle event) override;
  void record_event(EventHandle event, StreamHandle stream) override;
  bool event_done(EventHandle event) override;
  void synchronize_event(EventHandle event) override;

  void copy_to_host_async(void* dst, DevicePtr src, std::size_t bytes,
                          StreamHandle stream) override;
  void copy_to_device_async(DevicePtr dst, const void* src, std::size_t bytes,
                            StreamHandle stream) override;
  /// Copies the range into private anonymous memory moved over it (mremap),
  /// so the memfd's shared pages are no longer visible there. Refuses in the
  /// process that created the driver.
  void detach_after_fork(DevicePtr address, std::size_t bytes, const void* contents) override;

  // --- test hooks --------------------------------------------------------------
  /// Holds `stream` busy, as if running a long kernel, until resume_stream:
  /// copies enqueued on it wait and events recorded on it from now on are
  /// not done (see emulated_streams.h).
  void pause_stream(StreamHandle stream) { streams_.pause_stream(stream); }
  void resume_stream(StreamHandle stream) { streams_.resume_stream(stream); }
  /// How long synchronize_* waits on a paused stream before throwing.
  void set_wait_timeout(std::chrono::milliseconds timeout) { streams_.set_wait_timeout(timeout); }

  const EmulatedDeviceOptions& options() const { return options_; }
  /// Physical bytes this driver has created and not released.
  std::size_t created_bytes() const;

 private:
  struct Reservation {
    std::size_t bytes;
    int device;
  };
  struct Mapping {
    std::size_t bytes;
    PhysicalHandle handle;
  };
  struct Allocation {
    std::size_t offset;
    std::size_t bytes;
    int device;
    int mapped;  // how many mappings show it
  };

  void check_device(int device, const std::string& call) const;
  void check_size(std::size_t bytes, const std::string& call) const;
  /// Throws unless [address, address + bytes) is wholly covered by mappings.
  void check_mapped_locked(DevicePtr address, std::size_t bytes, const std::string& call) const;
  void check_mapped(DevicePtr address, std::size_t bytes, const std::string& call) const;

  EmulatedDeviceOptions options_;
  mutable EmulatedLedger ledger_;
  EmulatedMemory memory_;
  EmulatedStreams streams_;

  // Lock order: the streams' mutex before mutex_ (queued copies check their
  // mappings when they run), so nothing calls into streams_ holding mutex_.
  // The ledger takes only its own locks and may be called holding mutex_.
  mutable std::mutex mutex_;
  std::map<DevicePtr, Reservation> reservations_;
  std::map<DevicePtr, Mapping> mappings_;
  std::unordered_map<PhysicalHandle, Allocation> allocations_;
  PhysicalHandle next_handle_ = 1;
  std::size_t created_bytes_ = 0;
  std::unordered_map<void*, std::size_t> host_allocations_;
};

}  // namespace acb::alloc
