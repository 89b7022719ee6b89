#include "alloc/emulated_driver.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <stdexcept>

namespace acb::alloc {

namespace {

constexpr std::size_t kPageBytes = 4096;
constexpr std::size_t kMinSpanBytes = std::size_t{1} << 40;  // sparse memfd offset space
// Keeps span_for's arithmetic (capacity x 16 devices x 4) far from overflow.
constexpr std::size_t kMaxCapacityBytes = std::size_t{1} << 52;
constexpr std::size_t kMaxPoolBytes = std::size_t{4} << 30;

std::string hex(std::uintptr_t value) {
  std::ostringstream out;
  out << "0x" << std::hex << value;
  return out.str();
}

DriverError error(const std::string& call, int code, const std::string& args,
                  const std::string& why) {
  return DriverError(call, code, "emulated " + call + "(" + args + ") failed: " + why);
}

std::string errno_text(int err) {
  return std::string(std::strerror(err)) + " (" + std::to_string(err) + ")";
}

// glibc picks its memcpy strategy by size (rep movsb below 1 MiB, a vector
// loop above, non-temporal stores past ~3/4 of the L3), and which one is
// fastest differs between machines. Copying in fixed pieces makes a copy cost
// the same per byte whether the caller sends it whole or in chunks, so the
// arena's chunked copies and one raw copy of the same bytes compare fairly.
constexpr std::size_t kCopyPieceBytes = std::size_t{256} << 10;

void copy_in_pieces(void* dst, const void* src, std::size_t bytes) {
  auto* out = static_cast<unsigned char*>(dst);
  const auto* in = static_cast<const unsigned char*>(src);
  for (std::size_t done = 0; done < bytes; done += kCopyPieceBytes)
    std::memcpy(out + done, in + done, std::min(kCopyPieceBytes, bytes - done));
}

bool is_power_of_two(std::size_t value) { return value != 0 && (value & (value - 1)) == 0; }

const EmulatedDeviceOptions& validated(const EmulatedDeviceOptions& options) {
  if (options.name.empty() || options.name.size() > 200)
    throw std::invalid_argument("emulated device: the name must have 1 to 200 characters");
  for (char c : options.name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '.')
      throw std::invalid_argument("emulated device '" + options.name +
                                  "': the name may hold only letters, digits, '_', '-' and '.'");
  if (options.capacity_bytes == 0 || options.capacity_bytes > kMaxCapacityBytes)
    throw std::invalid_argument("emulated device '" + options.name + "': capacity " +
                                std::to_string(options.capacity_bytes) + " is outside 1.." +
                                std::to_string(kMaxCapacityBytes) + " bytes");
  if (!is_power_of_two(options.granularity_bytes) || options.granularity_bytes < kPageBytes)
    throw std::invalid_argument("emulated device '" + options.name + "': granularity " +
                                std::to_string(options.granularity_bytes) +
                                " is not a power of two of at least 4096 bytes");
  if (options.device_count < 1 || options.device_count > EmulatedLedger::kMaxDevices)
    throw std::invalid_argument("emulated device '" + options.name + "': device_count " +
                                std::to_string(options.device_count) + " is outside 1.." +
                                std::to_string(EmulatedLedger::kMaxDevices));
  return options;
}

std::size_t span_for(const EmulatedDeviceOptions& options) {
  // Room for every device's capacity four times over: first fit never runs out
  // in practice, and the memfd is sparse so the span costs nothing.
  const std::size_t wanted =
      options.capacity_bytes * static_cast<std::size_t>(options.device_count) * 4;
  return std::max(kMinSpanBytes, wanted);
}

std::size_t pool_cap_for(const EmulatedDeviceOptions& options) {
  // A real device's memory exists whether allocated or not; keeping up to its
  // capacity warm costs no more than the peak this process already used. The
  // bound spares a shared machine when a test declares a huge device.
  return std::min(kMaxPoolBytes,
                  options.capacity_bytes * static_cast<std::size_t>(options.device_count));
}

}  // namespace

EmulatedDriver::EmulatedDriver(const EmulatedDeviceOptions& options)
    : options_(validated(options)),
      ledger_(options.name),
      memory_(options.name, span_for(options), pool_cap_for(options)) {}

EmulatedDriver::~EmulatedDriver() {
  // Give back whatever the owner leaked so the shared capacity is not lost.
  for (auto& [base, reservation] : reservations_)
    ::munmap(reinterpret_cast<void*>(base), reservation.bytes);
  // A forked child's copy of the driver holds none of the ledger's charges.
  if (ledger_.owned_by_this_process()) {
    try {
      for (auto& [handle, allocation] : allocations_)
        ledger_.uncharge(allocation.device, allocation.bytes);
    } catch (const DriverError&) {
      // Nothing to report to from a destructor; the slot dies with the process.
    }
  }
  for (auto& [ptr, bytes] : host_allocations_) std::free(ptr);
}

void EmulatedDriver::check_device(int device, const std::string& call) const {
  if (device < 0 || device >= options_.device_count)
    throw error(call, ENODEV, "device=" + std::to_string(device),
                "no such device: emulated device '" + options_.name + "' has " +
                    std::to_string(options_.device_count) + " device(s)");
}

void EmulatedDriver::check_size(std::size_t bytes, const std::string& call) const {
  if (bytes == 0 || bytes % options_.granularity_bytes != 0)
    throw error(call, EINVAL, "size=" + std::to_string(bytes),
                "size is not a positive multiple of the granularity " +
                    std::to_string(options_.granularity_bytes));
}

std::size_t EmulatedDriver::granularity(int device) const {
  check_device(device, "granularity");
  return options_.granularity_bytes;
}

MemoryInfo EmulatedDriver::memory_info(int device) const {
  check_device(device, "memory_info");
  const std::size_t used = ledger_.used_bytes(device);
  MemoryInfo info;
  info.total_bytes = options_.capacity_bytes;
  info.free_bytes = used >= options_.capacity_bytes ? 0 : options_.capacity_bytes - used;
  return info;
}

std::size_t EmulatedDriver::created_bytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return created_bytes_;
}

// --- virtual address space ---------------------------------------------------

DevicePtr EmulatedDriver::reserve(std::size_t bytes, int device) {
  check_device(device, "reserve");
  check_size(bytes, "reserve");
  const std::size_t align = options_.granularity_bytes;
  const std::string args = "size=" + std::to_string(bytes) + ", device=" + std::to_string(device);
  if (bytes > SIZE_MAX - align) throw error("reserve", ENOMEM, args, "size too large");
  // Over-reserve by one granule, then trim both ends so the base is aligned.
  void* raw =
      ::mmap(nullptr, bytes + align, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (raw == MAP_FAILED) throw error("reserve", errno, args, errno_text(errno));
  const auto start = reinterpret_cast<std::uintptr_t>(raw);
  const std::uintptr_t base = (start + align - 1) & ~(std::uintptr_t{align} - 1);
  if (base > start) ::munmap(raw, base - start);
  const std::uintptr_t tail = start + bytes + align - (base + bytes);
  if (tail > 0) ::munmap(reinterpret_cast<void*>(base + bytes), tail);
  std::lock_guard<std::mutex> lock(mutex_);
  reservations_.emplace(base, Reservation{bytes, device});
  return base;
}

void EmulatedDriver::free_reservation(DevicePtr base, std::size_t bytes) {
  const std::string args = "address=" + hex(base) + ", size=" + std::to_string(bytes);
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = reservations_.find(base);
  if (it == reservations_.end() || it->second.bytes != bytes)
    throw error("free_reservation", EINVAL, args,
                "not a reservation (base and size must match reserve)");
  auto mapped = mappings_.lower_bound(base);
  if (mapped != mappings_.end() && mapped->first < base + bytes)
    throw error("free_reservation", EBUSY, args,
                "memory is still mapped at " + hex(mapped->first) + " (unmap it first)");
  if (::munmap(reinterpret_cast<void*>(base), bytes) != 0)
    throw error("free_reservation", errno, args, errno_text(errno));
  reservations_.erase(it);
}

// --- physical memory ---------------------------------------------------------

PhysicalHandle EmulatedDriver::create(std::size_t bytes, int device) {
  check_device(device, "create");
  check_size(bytes, "create");
  const std::string args = "size=" + std::to_string(bytes) + ", device=" + std::to_string(device);
  const EmulatedLedger::Charge charge = ledger_.try_charge(device, bytes, options_.capacity_bytes);
  if (!charge.granted) {
    const std::size_t free_bytes = charge.used_bytes >= options_.capacity_bytes
                                       ? 0
                                       : options_.capacity_bytes - charge.used_bytes;
    throw error("create", ENOMEM, args,
                "out of memory: emulated device '" + options_.name +
                    "' has free=" + std::to_string(free_bytes) +
                    " of capacity=" + std::to_string(options_.capacity_bytes) +
                    " bytes (used=" + std::to_string(charge.used_bytes) + " by all processes)")
        .set_out_of_memory(true);
  }
  std::lock_guard<std::mutex> lock(mutex_);
  std::size_t offset = 0;
  try {
    offset = memory_.allocate(bytes);
  } catch (...) {
    ledger_.uncharge(device, bytes);
    throw;
  }
  const PhysicalHandle handle = next_handle_++;
  allocations_.emplace(handle, Allocation{offset, bytes, device, 0});
  created_bytes_ += bytes;
  return handle;
}

void EmulatedDriver::release(PhysicalHandle handle) {
  const std::string args = "handle=" + std::to_string(handle);
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = allocations_.find(handle);
  if (it == allocations_.end()) throw error("release", EINVAL, args, "unknown physical handle");
  const Allocation allocation = it->second;
  if (allocation.mapped > 0)
    throw error("release", EBUSY, args + ", size=" + std::to_string(allocation.bytes),
                "still mapped " + std::to_string(allocation.mapped) + " time(s) (unmap it first)");
  memory_.deallocate(allocation.offset, allocation.bytes);
  allocations_.erase(it);
  created_bytes_ -= allocation.bytes;
  ledger_.uncharge(allocation.device, allocation.bytes);
}

void EmulatedDriver::map(DevicePtr address, std::size_t bytes, PhysicalHandle handle, int device) {
  const std::string args = "address=" + hex(address) + ", size=" + std::to_string(bytes) +
                           ", handle=" + std::to_string(handle) +
                           ", device=" + std::to_string(device);
  check_device(device, "map");
  check_size(bytes, "map");
  std::lock_guard<std::mutex> lock(mutex_);
  auto allocation = allocations_.find(handle);
  if (allocation == allocations_.end()) throw error("map", EINVAL, args, "unknown physical handle");
  if (allocation->second.bytes != bytes)
    throw error("map", EINVAL, args,
                "the handle was created with size=" + std::to_string(allocation->second.bytes) +
                    " (map maps a whole allocation)");
  if (allocation->second.device != device)
    throw error("map", EINVAL, args,
                "the handle was created on device=" + std::to_string(allocation->second.device));
  if (address % options_.granularity_bytes != 0)
    throw error("map", EINVAL, args, "address is not aligned to the granularity");
  auto reservation = reservations_.upper_bound(address);
  if (reservation == reservations_.begin() ||
      std::prev(reservation)->first + std::prev(reservation)->second.bytes < address + bytes)
    throw error("map", EINVAL, args, "the range does not lie inside one reservation");
  auto next = mappings_.lower_bound(address);
  if (next != mappings_.end() && next->first < address + bytes)
    throw error("map", EBUSY, args, "overlaps the mapping at " + hex(next->first));
  if (next != mappings_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second.bytes > address)
      throw error("map", EBUSY, args, "overlaps the mapping at " + hex(prev->first));
  }
  memory_.map(reinterpret_cast<void*>(address), allocation->second.offset, bytes);
  mappings_.emplace(address, Mapping{bytes, handle});
  ++allocation->second.mapped;
}

void EmulatedDriver::unmap(DevicePtr address, std::size_t bytes) {
  const std::string args = "address=" + hex(address) + ", size=" + std::to_string(bytes);
  check_size(bytes, "unmap");
  std::lock_guard<std::mutex> lock(mutex_);
  // Like cuMemUnmap, the range must consist of whole mappings.
  auto first = mappings_.find(address);
  auto last = first;
  DevicePtr cursor = address;
  while (last != mappings_.end() && last->first == cursor && cursor < address + bytes) {
    cursor += last->second.bytes;
    ++last;
  }
  if (first == mappings_.end() || cursor != address + bytes)
    throw error("unmap", EINVAL, args, "the range is not made of whole mappings");
  // Bookkeeping follows each mapping as it goes, so a failure part-way
  // leaves the driver's view matching what is really mapped.
  while (first != last) {
    Allocation& allocation = allocations_.at(first->second.handle);
    try {
      memory_.unmap(reinterpret_cast<void*>(first->first), allocation.offset,
                    first->second.bytes);
    } catch (const DriverError& e) {
      throw error("unmap", e.code(), args, e.what());
    }
    --allocation.mapped;
    first = mappings_.erase(first);
  }
}

// --- pinned host memory ------------------------------------------------------

void* EmulatedDriver::host_alloc(std::size_t bytes, int device) {
  check_device(device, "host_alloc");
  const std::size_t rounded =
      std::max<std::size_t>(kPageBytes, (bytes + kPageBytes - 1) / kPageBytes * kPageBytes);
  void* ptr = std::aligned_alloc(kPageBytes, rounded);
  if (ptr == nullptr)
    throw error("host_alloc", ENOMEM, "size=" + std::to_string(bytes), "out of host memory")
        .set_out_of_memory(true);
  std::lock_guard<std::mutex> lock(mutex_);
  host_allocations_.emplace(ptr, bytes);
  return ptr;
}

void EmulatedDriver::host_free(void* ptr, std::size_t bytes) {
  if (ptr == nullptr) return;
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = host_allocations_.find(ptr);
  if (it == host_allocations_.end())
    throw error(
        "host_free", EINVAL,
        "address=" + hex(reinterpret_cast<std::uintptr_t>(ptr)) + ", size=" + std::to_string(bytes),
        "not returned by host_alloc (or already freed)");
  host_allocations_.erase(it);
  std::free(ptr);
}

// --- streams, events, copies -------------------------------------------------

StreamHandle EmulatedDriver::create_stream(int device) {
  check_device(device, "create_stream");
  return streams_.create_stream(device);
}
void EmulatedDriver::destroy_stream(StreamHandle stream) { streams_.destroy_stream(stream); }
void EmulatedDriver::synchronize_stream(StreamHandle stream) {
  streams_.synchronize_stream(stream);
}
void EmulatedDriver::synchronize_device(int device) {
  check_device(device, "synchronize_device");
  streams_.synchronize_device(device);
}
EventHandle EmulatedDriver::create_event(int device) {
  check_device(device, "create_event");
  return streams_.create_event(device);
}
void EmulatedDriver::destroy_event(EventHandle event) { streams_.destroy_event(event); }
void EmulatedDriver::record_event(EventHandle event, StreamHandle stream) {
  streams_.record_event(event, stream);
}
bool EmulatedDriver::event_done(EventHandle event) { return streams_.event_done(event); }
void EmulatedDriver::synchronize_event(EventHandle event) { streams_.synchronize_event(event); }

void EmulatedDriver::check_mapped_locked(DevicePtr address, std::size_t bytes,
                                         const std::string& call) const {
  const std::string args = "address=" + hex(address) + ", size=" + std::to_string(bytes);
  auto it = mappings_.upper_bound(address);
  if (it == mappings_.begin()) throw error(call, EFAULT, args, "device address is not mapped");
  --it;
  DevicePtr cursor = address;
  while (cursor < address + bytes) {
    if (it == mappings_.end() || it->first > cursor || it->first + it->second.bytes <= cursor)
      throw error(call, EFAULT, args, "device address " + hex(cursor) + " is not mapped");
    cursor = it->first + it->second.bytes;
    ++it;
  }
}

void EmulatedDriver::check_mapped(DevicePtr address, std::size_t bytes,
                                  const std::string& call) const {
  std::lock_guard<std::mutex> lock(mutex_);
  check_mapped_locked(address, bytes, call);
}

void EmulatedDriver::copy_to_host_async(void* dst, DevicePtr src, std::size_t bytes,
                                        StreamHandle stream) {
  if (bytes == 0) return;
  check_mapped(src, bytes, "copy_to_host_async");
  streams_.enqueue(stream, [this, dst, src, bytes] {
    check_mapped(src, bytes, "copy_to_host_async");  // still mapped when a paused stream runs it?
    copy_in_pieces(dst, reinterpret_cast<const void*>(src), bytes);
  });
}

void EmulatedDriver::copy_to_device_async(DevicePtr dst, const void* src, std::size_t bytes,
                                          StreamHandle stream) {
  if (bytes == 0) return;
  check_mapped(dst, bytes, "copy_to_device_async");
  streams_.enqueue(stream, [this, dst, src, bytes] {
    check_mapped(dst, bytes, "copy_to_device_async");
    copy_in_pieces(reinterpret_cast<void*>(dst), src, bytes);
  });
}

void EmulatedDriver::detach_after_fork(DevicePtr address, std::size_t bytes,
                                       const void* contents) {
  const std::string args = "address=" + hex(address) + ", size=" + std::to_string(bytes);
  if (ledger_.owned_by_this_process())
    throw error("detach_after_fork", EPERM, args,
                "called in the process that created the emulated device, not in a forked child");
  check_size(bytes, "detach_after_fork");
  // No lock: the child has one thread, and the arena held its lock across the
  // fork, so no call was half done. mappings_ is left as it was: the driver
  // is not used in the child.
  void* copy = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (copy == MAP_FAILED) throw error("detach_after_fork", errno, args, errno_text(errno));
  std::memcpy(copy, contents != nullptr ? contents : reinterpret_cast<const void*>(address), bytes);
  // Moving the copy over the range replaces the shared mapping (or the
  // PROT_NONE reservation of an offloaded range) in one step.
  if (::mremap(copy, bytes, bytes, MREMAP_MAYMOVE | MREMAP_FIXED, reinterpret_cast<void*>(address)) ==
      MAP_FAILED) {
    const int err = errno;
    ::munmap(copy, bytes);
    throw error("detach_after_fork", err, args, errno_text(err));
  }
}

std::unique_ptr<Driver> make_emulated_driver(const EmulatedDeviceOptions& options) {
  return std::make_unique<EmulatedDriver>(options);
}

}  // namespace acb::alloc
