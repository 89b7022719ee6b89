#include "alloc/emulated_memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "alloc/driver.h"
#include "alloc/range_map.h"

namespace acb::alloc {

namespace {

// Parking is aligned so that ranges at 2 MiB (or 1 GiB) aligned offsets sit at
// equally aligned addresses: the kernel then moves whole page-table pages.
constexpr std::size_t kParkAlign = std::size_t{1} << 30;
constexpr int kReservationFlags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;

DriverError memory_error(const std::string& call, int err, const std::string& detail) {
  return DriverError(call, err,
                     "emulated " + call + "(" + detail + ") failed: " + std::strerror(err) + " (" +
                         std::to_string(err) + ")");
}

std::string where(const void* address, std::size_t offset, std::size_t bytes) {
  return "address=" + std::to_string(reinterpret_cast<std::uintptr_t>(address)) +
         ", size=" + std::to_string(bytes) + ", offset=" + std::to_string(offset);
}

// Moves the page tables of [from, from + bytes) to `to`; the source stays
// mapped (without pages) so no hole opens in anyone's address space.
bool move_pages(void* from, void* to, std::size_t bytes) {
  return ::mremap(from, bytes, bytes, MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP, to) !=
         MAP_FAILED;
}

}  // namespace

EmulatedMemory::EmulatedMemory(const std::string& name, std::size_t span_bytes,
                               std::size_t pool_cap_bytes)
    : span_bytes_(span_bytes), pool_cap_bytes_(pool_cap_bytes) {
  const std::string label = "acb-emulated-" + name;
  fd_ = ::memfd_create(label.c_str(), MFD_CLOEXEC);
  if (fd_ < 0) throw memory_error("memfd_create", errno, label);
  if (::ftruncate(fd_, static_cast<off_t>(span_bytes_)) != 0) {
    const int err = errno;
    ::close(fd_);
    throw memory_error("ftruncate", err, label + ", size=" + std::to_string(span_bytes_));
  }
  park_raw_bytes_ = span_bytes_ + kParkAlign;
  park_raw_ = ::mmap(nullptr, park_raw_bytes_, PROT_NONE, kReservationFlags, -1, 0);
  if (park_raw_ == MAP_FAILED) {
    const int err = errno;
    ::close(fd_);
    throw memory_error("mmap", err, label + " parking, size=" + std::to_string(park_raw_bytes_));
  }
  park_base_ = (reinterpret_cast<std::uintptr_t>(park_raw_) + kParkAlign - 1) &
               ~(std::uintptr_t{kParkAlign} - 1);
  cold_.emplace(0, span_bytes_);
}

EmulatedMemory::~EmulatedMemory() {
  ::munmap(park_raw_, park_raw_bytes_);
  ::close(fd_);
}

bool EmulatedMemory::take_range(Ranges& ranges, std::size_t bytes, std::size_t* offset) {
  for (auto it = ranges.begin(); it != ranges.end(); ++it) {
    if (it->second < bytes) continue;
    *offset = it->first;
    const std::size_t rest = it->second - bytes;
    ranges.erase(it);
    if (rest != 0) ranges.emplace(*offset + bytes, rest);
    return true;
  }
  return false;
}

void EmulatedMemory::park_fresh(std::size_t offset, std::size_t bytes) {
  // MAP_POPULATE faults the whole range in one pass (zero-filled pages), so
  // neither the first copy nor the first map pays a fault per 4 KiB page.
  if (::mmap(parked(offset), bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED | MAP_POPULATE,
             fd_, static_cast<off_t>(offset)) == MAP_FAILED)
    throw memory_error("mmap", errno, where(parked(offset), offset, bytes));
}

std::size_t EmulatedMemory::allocate(std::size_t bytes) {
  std::size_t offset = 0;
  if (take_range(warm_, bytes, &offset)) {
    pooled_bytes_ -= bytes;
    return offset;
  }
  if (!take_range(cold_, bytes, &offset))
    throw DriverError("create", ENOMEM,
                      "emulated create(size=" + std::to_string(bytes) +
                          ") failed: physical offset space of " + std::to_string(span_bytes_) +
                          " bytes is too fragmented")
        .set_out_of_memory(true);
  try {
    park_fresh(offset, bytes);
  } catch (const DriverError&) {
    insert_coalescing(cold_, offset, bytes);
    throw;
  }
  return offset;
}

void EmulatedMemory::deallocate(std::size_t offset, std::size_t bytes) {
  if (pooled_bytes_ + bytes <= pool_cap_bytes_) {
    insert_coalescing(warm_, offset, bytes);
    pooled_bytes_ += bytes;
    return;
  }
  // Punching also drops the parked page tables (the kernel unmaps the hole).
  if (::fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                  static_cast<off_t>(bytes)) != 0)
    throw memory_error("fallocate", errno,
                       "offset=" + std::to_string(offset) + ", size=" + std::to_string(bytes));
  insert_coalescing(cold_, offset, bytes);
}

void EmulatedMemory::map(void* address, std::size_t offset, std::size_t bytes) {
  if (shown_.count(offset) == 0) {
    if (move_pages(parked(offset), address, bytes)) {
      shown_.emplace(offset, bytes);
      // The protection travels with the page tables: if something narrowed it
      // while the range was last shown, widen it again. The kernel returns at
      // once when it is already read-write, so this costs no page walk.
      if (::mprotect(address, bytes, PROT_READ | PROT_WRITE) != 0)
        throw memory_error("mprotect", errno, where(address, offset, bytes));
      return;
    }
    // The parked range spans several kernel mappings (or mremap is refused):
    // map afresh; unmap() moves these page tables back and mends parking.
  }
  const int flags = MAP_SHARED | MAP_FIXED | MAP_POPULATE;
  if (::mmap(address, bytes, PROT_READ | PROT_WRITE, flags, fd_, static_cast<off_t>(offset)) ==
      MAP_FAILED)
    throw memory_error("mmap", errno, where(address, offset, bytes));
  shown_.emplace(offset, bytes);
}

void EmulatedMemory::unmap(void* address, std::size_t offset, std::size_t bytes) {
  auto shown = shown_.find(offset);
  if (shown != shown_.end()) {
    // Parking lost its page tables to this mapping: take them back.
    if (!move_pages(address, parked(offset), bytes)) {
      // Parking refaults lazily from the memfd; the contents are unaffected.
      if (::mmap(parked(offset), bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd_,
                 static_cast<off_t>(offset)) == MAP_FAILED)
        throw memory_error("mmap", errno, where(parked(offset), offset, bytes));
    }
    shown_.erase(shown);
  }
  if (::mmap(address, bytes, PROT_NONE, kReservationFlags | MAP_FIXED, -1, 0) == MAP_FAILED)
    throw memory_error("mmap", errno, where(address, offset, bytes));
}

}  // namespace acb::alloc
