// Offload/restore scenarios written against any Driver, so that the same
// checks run on the emulated device (CI) and on a GPU ([gpu] tests).
// Capacity needs: about 16 MiB free on the device.
#pragma once

#include <cstdint>
#include <vector>

#include "acb_catch.hpp"
#include "arena_test_support.h"

namespace acb::alloc::testing {

struct LiveBlock {
  void* ptr;
  std::size_t bytes;
  std::uint64_t seed;
};

/// Small and large blocks with known data, offloaded and restored at the same addresses.
/// `exact_memory_info`: the device's free bytes grow by exactly what the arena released
/// (emulated device, fake libcuda); on a GPU the driver's own allocations and other
/// processes move them too, so only their growth is checked.
inline void scenario_offload_restore_roundtrip(Driver& driver, bool exact_memory_info = true) {
  Arena arena(driver, 0);
  std::vector<LiveBlock> live;
  std::uint64_t seed = 1;
  for (std::size_t bytes :
       {std::size_t{512}, std::size_t{4096}, std::size_t{100000}, 3 * kMiB, std::size_t{700}}) {
    void* p = arena.malloc(bytes, nullptr);
    write_pattern(driver, p, bytes, seed);
    arena.mark_written(p, bytes);
    live.push_back({p, bytes, seed++});
    arena.validate();
  }
  const std::size_t reserved = arena.stats().reserved_bytes;
  const std::size_t free_before = driver.memory_info(0).free_bytes;

  OffloadResult out = arena.offload();
  arena.validate();
  CHECK(out.released_bytes == reserved);
  CHECK(out.copied_bytes == arena.stats().allocated_bytes);
  CHECK(out.skipped_clean_bytes == 0);
  CHECK(arena.resident_bytes() == 0);
  CHECK(arena.stats().offloaded_bytes == reserved);
  if (exact_memory_info)
    CHECK(driver.memory_info(0).free_bytes == free_before + reserved);
  else
    CHECK(driver.memory_info(0).free_bytes > free_before);
  for (const LiveBlock& b : live) CHECK_FALSE(arena.is_resident(b.ptr, b.bytes));

  CHECK(arena.restore_all() == reserved);
  arena.validate();
  CHECK(arena.resident_bytes() == reserved);
  for (const LiveBlock& b : live) {
    CHECK(arena.is_resident(b.ptr, b.bytes));
    CHECK(has_pattern(driver, b.ptr, b.bytes, b.seed));
  }
  CHECK(arena.restore_all() == 0);  // nothing left to restore
  for (const LiveBlock& b : live) arena.free(b.ptr, nullptr);
  arena.validate();
}

/// Partial offload takes least recently used segments first and only what the budget needs.
inline void scenario_partial_offload_lru(Driver& driver) {
  Arena arena(driver, 0);
  void* a = arena.malloc(2 * kMiB, nullptr);
  void* b = arena.malloc(2 * kMiB, nullptr);
  void* c = arena.malloc(2 * kMiB, nullptr);
  write_pattern(driver, a, 2 * kMiB, 11);
  write_pattern(driver, b, 2 * kMiB, 12);
  write_pattern(driver, c, 2 * kMiB, 13);
  arena.mark_written(b, 2 * kMiB);  // LRU order now: c (malloc), b, a
  arena.mark_written(a, 2 * kMiB);
  arena.validate();

  OffloadResult first = arena.offload(2 * kMiB);
  arena.validate();
  CHECK(first.released_bytes == 2 * kMiB);
  CHECK_FALSE(arena.is_resident(c, 2 * kMiB));
  CHECK(arena.is_resident(a, 2 * kMiB));
  CHECK(arena.is_resident(b, 2 * kMiB));

  OffloadResult second = arena.offload(1);  // at least one byte: the next LRU segment, b
  arena.validate();
  CHECK(second.released_bytes == 2 * kMiB);
  CHECK_FALSE(arena.is_resident(b, 2 * kMiB));
  CHECK(arena.is_resident(a, 2 * kMiB));
  CHECK(arena.resident_bytes() == 2 * kMiB);

  // On-demand restore of one range brings back only its segment.
  CHECK(arena.restore(static_cast<char*>(c) + 100, 10) == 2 * kMiB);
  arena.validate();
  CHECK(arena.is_resident(c, 2 * kMiB));
  CHECK_FALSE(arena.is_resident(b, 2 * kMiB));
  CHECK(has_pattern(driver, c, 2 * kMiB, 13));
  CHECK(arena.restore_all() == 2 * kMiB);
  arena.validate();
  CHECK(has_pattern(driver, a, 2 * kMiB, 11));
  CHECK(has_pattern(driver, b, 2 * kMiB, 12));
  for (void* p : {a, b, c}) arena.free(p, nullptr);
  arena.validate();
}

/// A second offload of unchanged memory copies nothing; mark_written and new allocations make it
/// copy again.
inline void scenario_clean_segments_skip_copies(Driver& driver) {
  Arena arena(driver, 0);
  void* weights = arena.malloc(4 * kMiB, nullptr);
  void* small = arena.malloc(8192, nullptr);
  write_pattern(driver, weights, 4 * kMiB, 21);
  write_pattern(driver, small, 8192, 22);
  OffloadResult first = arena.offload();
  arena.validate();
  CHECK(first.copied_bytes == 4 * kMiB + 8192);
  arena.restore_all();
  arena.validate();

  OffloadResult second = arena.offload();
  arena.validate();
  CHECK(second.copied_bytes == 0);
  CHECK(second.skipped_clean_bytes == 4 * kMiB + 8192);
  CHECK(second.released_bytes == 4 * kMiB + 2 * kMiB);
  arena.restore_all();
  CHECK(has_pattern(driver, weights, 4 * kMiB, 21));

  write_pattern(driver, small, 8192, 23);
  arena.mark_written(small, 8192);
  OffloadResult third = arena.offload();
  arena.validate();
  CHECK(third.copied_bytes == 8192);  // only the allocated ranges of the dirty segment
  CHECK(third.skipped_clean_bytes == 4 * kMiB);
  arena.restore_all();
  CHECK(has_pattern(driver, small, 8192, 23));

  void* fresh = arena.malloc(4096, nullptr);  // lands in the small segment: dirty again
  write_pattern(driver, fresh, 4096, 24);
  OffloadResult fourth = arena.offload();
  arena.validate();
  CHECK(fourth.copied_bytes == 8192 + 4096);
  arena.restore_all();
  CHECK(has_pattern(driver, fresh, 4096, 24));
  CHECK(has_pattern(driver, small, 8192, 23));
  CHECK(arena.stats().skipped_clean_bytes == 2 * 4 * kMiB + 8192 + 4 * kMiB);
  for (void* p : {weights, small, fresh}) arena.free(p, nullptr);
  arena.validate();
}

}  // namespace acb::alloc::testing
