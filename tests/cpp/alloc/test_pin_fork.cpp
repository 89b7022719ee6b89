// Memory that escapes the arena's sight: pinned ranges (exports to numpy or
// DLPack) stay resident through offloads and count as written when the pin
// ends; and a forked child gets its own copy of the arena's memory, offloaded
// segments included, instead of the emulated device's shared pages.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "acb_catch.hpp"
#include "arena_test_support.h"

using namespace acb::alloc;
using namespace acb::alloc::testing;

namespace {

/// True when host-visible [ptr, ptr + bytes) holds pattern `seed` (direct reads:
/// a forked child may not use the driver).
bool plain_has_pattern(const void* ptr, std::size_t bytes, std::uint64_t seed) {
  std::vector<std::uint64_t> want = pattern(seed, bytes);
  return std::memcmp(ptr, want.data(), bytes) == 0;
}

void plain_write_pattern(void* ptr, std::size_t bytes, std::uint64_t seed) {
  std::vector<std::uint64_t> words = pattern(seed, bytes);
  std::memcpy(ptr, words.data(), bytes);
}

}  // namespace

TEST_CASE("a pinned range stays resident through offloads and is copied once unpinned",
          "[offload][pin]") {
  EmulatedDevice dev("pin");
  Arena arena(dev.driver, 0);
  void* kept = arena.malloc(4 * kMiB, nullptr);
  void* other = arena.malloc(4 * kMiB, nullptr);
  write_pattern(dev.driver, kept, 4 * kMiB, 61);
  write_pattern(dev.driver, other, 4 * kMiB, 62);
  arena.offload();  // both get current backups: a later offload could skip them as clean
  arena.restore_all();

  CHECK(arena.pin(kept, 4 * kMiB) == 4 * kMiB);
  CHECK(arena.pin(kept, 16) == 4 * kMiB);  // pins nest
  arena.validate();
  CHECK(arena.stats().export_pinned_bytes == 4 * kMiB);
  OffloadResult off = arena.offload();
  arena.validate();
  CHECK(off.released_bytes == 4 * kMiB);  // asked for everything, got what is not pinned
  CHECK(arena.resident_bytes() == 4 * kMiB);
  CHECK(arena.is_resident(kept, 4 * kMiB));
  CHECK_FALSE(arena.is_resident(other, 4 * kMiB));
  // Written by the "export" while the arena is offloaded: no mark_written.
  plain_write_pattern(kept, 4 * kMiB, 63);
  arena.restore_all();

  arena.unpin(kept, 16);
  CHECK(arena.offload().released_bytes == 4 * kMiB);  // one pin is left
  arena.restore_all();
  arena.unpin(kept, 4 * kMiB);
  CHECK(arena.stats().export_pinned_bytes == 0);
  arena.validate();
  const Stats before = arena.stats();
  off = arena.offload();
  arena.validate();
  CHECK(off.released_bytes == 8 * kMiB);
  // The unpinned segment counts as written: its bytes are copied, not skipped.
  CHECK(off.copied_bytes == 4 * kMiB);
  CHECK(arena.stats().offload_copied_bytes == before.offload_copied_bytes + 4 * kMiB);
  arena.restore_all();
  CHECK(has_pattern(dev.driver, kept, 4 * kMiB, 63));
  CHECK(has_pattern(dev.driver, other, 4 * kMiB, 62));

  CHECK_THROWS_AS(arena.unpin(kept, 4 * kMiB), std::logic_error);
  CHECK(arena.pin(reinterpret_cast<void*>(std::uintptr_t{4096}), 64) == 0);  // not this arena's
  arena.unpin(reinterpret_cast<void*>(std::uintptr_t{4096}), 64);
  arena.free(kept, nullptr);
  arena.free(other, nullptr);
  arena.validate();
}

TEST_CASE("pin restores an offloaded range and keeps an emptied segment", "[offload][pin]") {
  EmulatedDevice dev("pinrestore");
  Arena arena(dev.driver, 0);
  void* p = arena.malloc(3 * kMiB, nullptr);
  write_pattern(dev.driver, p, 3 * kMiB, 64);
  arena.offload();
  CHECK_FALSE(arena.is_resident(p, 3 * kMiB));
  arena.pin(p, 3 * kMiB);
  arena.validate();
  CHECK(arena.is_resident(p, 3 * kMiB));
  CHECK(has_pattern(dev.driver, p, 3 * kMiB, 64));
  // Freed while still pinned (an export may outlive its tensor's last use):
  // the segment is not given back until the pin ends.
  arena.free(p, nullptr);
  arena.empty_cache();
  arena.offload();
  arena.validate();
  CHECK(arena.resident_bytes() == 4 * kMiB);
  arena.unpin(p, 3 * kMiB);
  arena.empty_cache();
  arena.validate();
  CHECK(arena.resident_bytes() == 0);
}

TEST_CASE("a forked child owns a copy of the arena's memory, offloaded segments included",
          "[offload][fork]") {
  EmulatedDevice dev("forkcopy");
  Arena arena(dev.driver, 0);
  const std::size_t bytes = 4 * kMiB;
  auto* resident = static_cast<char*>(arena.malloc(bytes, nullptr));
  auto* offloaded = static_cast<char*>(arena.malloc(bytes, nullptr));
  const std::uint64_t resident_seed = 71, offloaded_seed = 72;
  plain_write_pattern(resident, bytes, resident_seed);
  plain_write_pattern(offloaded, bytes, offloaded_seed);
  arena.mark_written(resident, bytes);  // the most recently used: partial offload keeps it
  arena.offload(bytes);
  REQUIRE(arena.is_resident(resident, bytes));
  REQUIRE_FALSE(arena.is_resident(offloaded, bytes));

  int to_parent[2], to_child[2];
  REQUIRE(::pipe(to_parent) == 0);
  REQUIRE(::pipe(to_child) == 0);
  arena.before_fork();
  const pid_t pid = ::fork();
  if (pid == 0) {
    int code = 0;
    try {
      arena.after_fork_in_child();
    } catch (...) {
      ::_exit(10);
    }
    char go = 0;
    if (::write(to_parent[1], "d", 1) != 1 || ::read(to_child[0], &go, 1) != 1) ::_exit(11);
    // The parent has since overwritten, offloaded and restored: the child
    // still reads what it forked with, and its writes stay its own.
    if (!plain_has_pattern(resident, bytes, resident_seed)) code |= 1;
    if (!plain_has_pattern(offloaded, bytes, offloaded_seed)) code |= 2;
    plain_write_pattern(resident, bytes, 99);
    plain_write_pattern(offloaded, bytes, 98);
    ::_exit(code);
  }
  arena.after_fork_in_parent();
  REQUIRE(pid > 0);
  char done = 0;
  REQUIRE(::read(to_parent[0], &done, 1) == 1);
  arena.restore_all();
  plain_write_pattern(resident, bytes, 81);
  arena.mark_written(resident, bytes);
  arena.offload();  // the physical pages are released and reused below
  void* fresh = arena.malloc(bytes, nullptr);
  plain_write_pattern(fresh, bytes, 82);
  arena.restore_all();
  REQUIRE(::write(to_child[1], "g", 1) == 1);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(plain_has_pattern(resident, bytes, 81));
  CHECK(plain_has_pattern(offloaded, bytes, offloaded_seed));
  CHECK(plain_has_pattern(fresh, bytes, 82));
  for (int fd : {to_parent[0], to_parent[1], to_child[0], to_child[1]}) ::close(fd);
  arena.free(fresh, nullptr);
  arena.free(resident, nullptr);
  arena.free(offloaded, nullptr);
  arena.validate();
}

TEST_CASE("detach_after_fork refuses in the process that owns the device", "[fork]") {
  EmulatedDevice dev("forkrefuse");
  Arena arena(dev.driver, 0);
  void* p = arena.malloc(2 * kMiB, nullptr);
  CHECK_THROWS_AS(dev.driver.detach_after_fork(reinterpret_cast<DevicePtr>(p) & ~(2 * kMiB - 1),
                                               2 * kMiB, nullptr),
                  DriverError);
  arena.free(p, nullptr);
}
