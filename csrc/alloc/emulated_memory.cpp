#include "alloc/emulated_memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iterator>

#include "alloc/driver.h"

namespace acb::alloc {

namespace {

DriverError memory_error(const std::string& call, int err, const std::string& detail) {
  return DriverError(call, err,
                     "emulated " + call + "(" + detail + ") failed: " + std::strerror(err) + " (" +
                         std::to_string(err) + ")");
}

}  // namespace

EmulatedMemory::EmulatedMemory(const std::string& name, std::size_t span_bytes)
    : span_bytes_(span_bytes) {
  const std::string label = "acb-emulated-" + name;
  fd_ = ::memfd_create(label.c_str(), MFD_CLOEXEC);
  if (fd_ < 0) throw memory_error("memfd_create", errno, label);
  if (::ftruncate(fd_, static_cast<off_t>(span_bytes_)) != 0) {
    const int err = errno;
    ::close(fd_);
    throw memory_error("ftruncate", err, label + ", size=" + std::to_string(span_bytes_));
  }
  free_.emplace(0, span_bytes_);
}

EmulatedMemory::~EmulatedMemory() { ::close(fd_); }

std::size_t EmulatedMemory::allocate(std::size_t bytes) {
  for (auto it = free_.begin(); it != free_.end(); ++it) {
    if (it->second < bytes) continue;
    const std::size_t offset = it->first;
    const std::size_t rest = it->second - bytes;
    free_.erase(it);
    if (rest != 0) free_.emplace(offset + bytes, rest);
    return offset;
  }
  throw DriverError("create", ENOMEM,
                    "emulated create(size=" + std::to_string(bytes) +
                        ") failed: physical offset space of " + std::to_string(span_bytes_) +
                        " bytes is too fragmented")
      .set_out_of_memory(true);
}

void EmulatedMemory::deallocate(std::size_t offset, std::size_t bytes) {
  if (::fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                  static_cast<off_t>(bytes)) != 0)
    throw memory_error("fallocate", errno,
                       "offset=" + std::to_string(offset) + ", size=" + std::to_string(bytes));
  auto next = free_.lower_bound(offset);
  if (next != free_.end() && offset + bytes == next->first) {
    bytes += next->second;
    next = free_.erase(next);
  }
  if (next != free_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second == offset) {
      prev->second += bytes;
      return;
    }
  }
  free_.emplace(offset, bytes);
}

void EmulatedMemory::map(void* address, std::size_t offset, std::size_t bytes) {
  void* got = ::mmap(address, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd_,
                     static_cast<off_t>(offset));
  if (got == MAP_FAILED)
    throw memory_error("mmap", errno,
                       "address=" + std::to_string(reinterpret_cast<std::uintptr_t>(address)) +
                           ", size=" + std::to_string(bytes) +
                           ", offset=" + std::to_string(offset));
}

}  // namespace acb::alloc
