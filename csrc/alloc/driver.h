// The driver contract: every device call acb makes goes through this header.
//
// Two implementations:
//   - cuda_driver.cpp: the CUDA driver API (cuMemAddressReserve, cuMemCreate,
//     cuMemMap, ...), with libcuda.so.1 opened by dlopen at run time so that
//     acb loads and its non-GPU tests run on machines without a GPU.
//   - emulated_driver.cpp: a device emulated in host memory. Reservations are
//     mmap(PROT_NONE) ranges; physical allocations are real pages mapped at
//     the reserved addresses (MAP_FIXED); unmapped ranges go back to
//     PROT_NONE so that touching offloaded memory faults; the capacity is
//     shared by all processes that name the same emulated device.
//
// Thread-safety: every method may be called from any thread; implementations
// serialise what needs it. Handles are plain values; ownership is explicit
// (create/release, reserve/free) and wrapped in RAII by the arena.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

namespace acb::alloc {

/// A device virtual address (the same number the process dereferences).
using DevicePtr = std::uintptr_t;
/// Opaque physical allocation handle (CUmemGenericAllocationHandle on CUDA).
using PhysicalHandle = std::uint64_t;
/// Opaque stream (CUstream on CUDA; 0 is the legacy default stream).
using StreamHandle = void*;
/// Opaque event (CUevent on CUDA).
using EventHandle = void*;

/// A failed driver call. what() names the call, the size, the address and
/// the device, e.g. "cuMemCreate(size=2097152, device=0) failed: out of memory (2)".
class DriverError : public std::runtime_error {
 public:
  DriverError(std::string call, int code, const std::string& message)
      : std::runtime_error(message), call_(std::move(call)), code_(code) {}
  const std::string& call() const { return call_; }
  /// Driver status code (CUresult on CUDA, errno on the emulated driver).
  int code() const { return code_; }
  /// True when the failure means "no device memory left" (retryable after freeing).
  bool out_of_memory() const { return out_of_memory_; }
  DriverError& set_out_of_memory(bool oom) {
    out_of_memory_ = oom;
    return *this;
  }

 private:
  std::string call_;
  int code_;
  bool out_of_memory_ = false;
};

/// One copy of a batch: `bytes` between device address `device` and host
/// address `host` (pinned, from host_alloc), in the batch's direction.
struct CopyRange {
  DevicePtr device = 0;
  void* host = nullptr;
  std::size_t bytes = 0;
};

enum class CopyDirection { to_host, to_device };

/// Device memory figures, in bytes.
struct MemoryInfo {
  std::size_t free_bytes = 0;
  std::size_t total_bytes = 0;
};

class Driver {
 public:
  virtual ~Driver() = default;

  /// "cuda" or "emulated".
  virtual std::string name() const = 0;
  virtual int device_count() const = 0;

  /// Physical allocation granularity in bytes (a power of two, 2 MiB on CUDA).
  /// Every size and address passed to reserve/create/map is a multiple of it.
  virtual std::size_t granularity(int device) const = 0;
  virtual MemoryInfo memory_info(int device) const = 0;

  // --- virtual address space -------------------------------------------------
  /// Reserves `bytes` of VA (no memory behind it). Returns its base, aligned
  /// to the granularity. Accessing it faults until something is mapped.
  virtual DevicePtr reserve(std::size_t bytes, int device) = 0;
  /// Frees a whole reservation. Nothing may be mapped in it.
  virtual void free_reservation(DevicePtr base, std::size_t bytes) = 0;

  // --- physical memory -------------------------------------------------------
  /// Creates `bytes` of physical memory on `device`. Throws DriverError with
  /// out_of_memory() set when the device has no room.
  virtual PhysicalHandle create(std::size_t bytes, int device) = 0;
  /// Releases physical memory. It must not be mapped anywhere.
  virtual void release(PhysicalHandle handle) = 0;
  /// Maps the whole of `handle` (created with `bytes`) at `address`, which lies
  /// in a reservation and has nothing mapped, and makes it readable and
  /// writable from `device`.
  virtual void map(DevicePtr address, std::size_t bytes, PhysicalHandle handle, int device) = 0;
  /// Unmaps [address, address + bytes). The reservation stays; access faults again.
  virtual void unmap(DevicePtr address, std::size_t bytes) = 0;

  // --- pinned host memory ----------------------------------------------------
  /// Page-locked host memory usable by async copies with any device, allocated
  /// in `device`'s context (the device whose memory it will back: no other
  /// device's context is created for it). Slow to allocate: callers pool it.
  virtual void* host_alloc(std::size_t bytes, int device) = 0;
  virtual void host_free(void* ptr, std::size_t bytes) = 0;

  // --- streams, events, copies -----------------------------------------------
  virtual StreamHandle create_stream(int device) = 0;
  virtual void destroy_stream(StreamHandle stream) = 0;
  virtual void synchronize_stream(StreamHandle stream) = 0;
  /// Waits until all work on the device is done (the offload safe point).
  virtual void synchronize_device(int device) = 0;

  virtual EventHandle create_event(int device) = 0;
  virtual void destroy_event(EventHandle event) = 0;
  /// Records `event` at the current end of `stream`.
  virtual void record_event(EventHandle event, StreamHandle stream) = 0;
  /// True when all work before the event's record point has completed.
  virtual bool event_done(EventHandle event) = 0;
  virtual void synchronize_event(EventHandle event) = 0;

  /// Enqueues a copy of `bytes` from device `src` to host `dst` on `stream`.
  virtual void copy_to_host_async(void* dst, DevicePtr src, std::size_t bytes,
                                  StreamHandle stream) = 0;
  /// Enqueues a copy of `bytes` from host `src` to device `dst` on `stream`.
  virtual void copy_to_device_async(DevicePtr dst, const void* src, std::size_t bytes,
                                    StreamHandle stream) = 0;
  /// Enqueues `count` copies in `direction` on `stream` as one batch: the
  /// batch runs in stream order, the copies within it in any order, so the
  /// ranges must not overlap. Cheaper than one call per range where the
  /// driver batches (the CUDA driver uses cuMemcpyBatchAsync when libcuda has
  /// it and the stream is not the null stream); this default makes one
  /// copy_to_host_async / copy_to_device_async per range, in order.
  virtual void copy_batch_async(const CopyRange* ranges, std::size_t count,
                                CopyDirection direction, StreamHandle stream);

  // --- fork --------------------------------------------------------------------
  /// In a forked child only, on its single thread, with no call of this driver
  /// in flight at the fork (the arena holds its lock across fork()): makes
  /// [address, address + bytes) the child's own memory with the bytes it held
  /// at the fork, so that the child's writes never reach the parent and the
  /// parent's later changes (or reuse of the physical memory) never reach the
  /// child, as for ordinary copy-on-write memory. With `contents` null the
  /// range is one whole mapping and keeps its bytes; otherwise it is reserved
  /// but unmapped (offloaded) and gets `bytes` bytes from host memory
  /// `contents` (its backup). The driver must not be used in the child
  /// afterwards. Throws DriverError.
  virtual void detach_after_fork(DevicePtr address, std::size_t bytes, const void* contents) = 0;
};

/// Options of the emulated device (ACB_EMULATED_DEVICE="name[:capacity]").
struct EmulatedDeviceOptions {
  /// Processes that use the same name share the capacity (an accounting file
  /// /dev/shm/acb-emulated-<name>).
  std::string name = "default";
  std::size_t capacity_bytes = std::size_t{1} << 30;
  std::size_t granularity_bytes = std::size_t{2} << 20;
  int device_count = 1;
};

/// Parses "name[:capacity]" (capacity like 512MiB, 2GiB, 1048576). Throws
/// std::invalid_argument with the offending text.
EmulatedDeviceOptions parse_emulated_device(const std::string& spec);

std::unique_ptr<Driver> make_emulated_driver(const EmulatedDeviceOptions& options);

/// Opens libcuda.so.1. Throws DriverError when it is missing or no device exists.
std::unique_ptr<Driver> make_cuda_driver();

}  // namespace acb::alloc
