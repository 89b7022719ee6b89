// Offload and restore on the emulated device: same addresses with data
// intact, partial (LRU) offload, clean-segment skipping, the host backup
// limit, restore without room, faults on offloaded memory, malloc/free while
// offloaded; and the same scenarios on a GPU ([gpu]: skipped without
// libcuda or a device, a failure then under ACB_REQUIRE_GPU=1).
#include <cstdint>
#include <cstring>
#include <memory>

#include "acb_catch.hpp"
#include "alloc/host_backup_pool.h"
#include "driver_test_support.h"
#include "lazy_copy_driver.h"
#include "offload_scenarios.h"

using namespace acb::alloc;
using namespace acb::alloc::testing;

TEST_CASE("offload and restore keep addresses and data", "[offload]") {
  EmulatedDevice dev("roundtrip");
  scenario_offload_restore_roundtrip(dev.driver);
}

TEST_CASE("partial offload releases least recently used segments, only the budget", "[offload]") {
  EmulatedDevice dev("partial");
  scenario_partial_offload_lru(dev.driver);
}

TEST_CASE("clean segments are released without copying", "[offload]") {
  EmulatedDevice dev("clean");
  scenario_clean_segments_skip_copies(dev.driver);
}

TEST_CASE("the scenarios hold with another granularity", "[offload]") {
  // 64 KiB granules: large segments are rounded to 64 KiB, small ones stay 2 MiB.
  EmulatedDeviceOptions options = small_device("granule");
  options.granularity_bytes = 64 * 1024;
  LedgerFileRemover remover{options.name};
  EmulatedDriver driver(options);
  scenario_offload_restore_roundtrip(driver);
  scenario_partial_offload_lru(driver);
  scenario_clean_segments_skip_copies(driver);
  Arena arena(driver, 0);
  void* odd = arena.malloc(kMiB + 1000, nullptr);
  arena.validate();
  CHECK(arena.stats().reserved_bytes == kMiB + 64 * 1024);
  arena.free(odd, nullptr);
  arena.validate();
}

TEST_CASE("offload and restore wait for copies that complete late", "[offload][async]") {
  // Copies on the arena's copy stream run only when waited for or polled:
  // segments must be released only after their own copies are done, and a
  // small chunk size keeps many chunks in the ring.
  EmulatedDevice dev("lazy");
  LazyCopyDriver lazy(dev.driver);
  scenario_offload_restore_roundtrip(lazy);
  scenario_partial_offload_lru(lazy);
  scenario_clean_segments_skip_copies(lazy);
  CHECK(lazy.flushes() > 0);

  ArenaOptions options;
  options.copy_chunk_bytes = 64 * 1024;
  options.copy_chunks_in_flight = 3;
  Arena arena(lazy, 0, options);
  std::vector<LiveBlock> live;
  for (std::uint64_t i = 0; i < 12; ++i) {
    std::size_t bytes = (i % 3 == 0) ? 3 * kMiB : 40000 * (i + 1);
    void* p = arena.malloc(bytes, nullptr);
    write_pattern(dev.driver, p, bytes, 100 + i);
    live.push_back({p, bytes, 100 + i});
  }
  for (int round = 0; round < 3; ++round) {
    arena.offload(round == 1 ? 5 * kMiB : SIZE_MAX);
    arena.validate();
    arena.restore_all();
    arena.validate();
    for (const LiveBlock& b : live) CHECK(has_pattern(dev.driver, b.ptr, b.bytes, b.seed));
    for (const LiveBlock& b : live) arena.mark_written(b.ptr, b.bytes);
  }
  for (const LiveBlock& b : live) arena.free(b.ptr, nullptr);
  arena.validate();
}

TEST_CASE("mark_all_written makes every current backup stale", "[offload]") {
  EmulatedDevice dev("markall");
  Arena arena(dev.driver, 0);
  void* weights = arena.malloc(4 * kMiB, nullptr);
  void* small = arena.malloc(8192, nullptr);
  write_pattern(dev.driver, weights, 4 * kMiB, 31);
  write_pattern(dev.driver, small, 8192, 32);
  CHECK(arena.offload().copied_bytes == 4 * kMiB + 8192);
  arena.restore_all();
  // Written without marking (as while acb is disabled), then everything marked.
  write_pattern(dev.driver, weights, 4 * kMiB, 33);
  arena.mark_all_written();
  arena.validate();
  OffloadResult out = arena.offload();
  arena.validate();
  CHECK(out.copied_bytes == 4 * kMiB + 8192);
  CHECK(out.skipped_clean_bytes == 0);
  arena.restore_all();
  CHECK(has_pattern(dev.driver, weights, 4 * kMiB, 33));
  CHECK(has_pattern(dev.driver, small, 8192, 32));
  for (void* p : {weights, small}) arena.free(p, nullptr);
  arena.validate();
}

TEST_CASE("fully free segments are released by offload without a backup", "[offload]") {
  EmulatedDevice dev("freeseg");
  Arena arena(dev.driver, 0);
  void* cached = arena.malloc(4 * kMiB, nullptr);
  void* live = arena.malloc(2 * kMiB, nullptr);
  arena.free(cached, nullptr);
  OffloadResult out = arena.offload(4 * kMiB);  // the free segment covers the budget alone
  arena.validate();
  CHECK(out.released_bytes == 4 * kMiB);
  CHECK(out.copied_bytes == 0);
  CHECK(arena.is_resident(live, 2 * kMiB));
  CHECK(arena.stats().host_backup_bytes == 0);
  arena.free(live, nullptr);
  arena.validate();
}

TEST_CASE("host backup size classes are at most 1/8 larger than asked", "[offload][limit]") {
  CHECK(HostBackupPool::class_bytes(1) == 2 * kMiB);
  CHECK(HostBackupPool::class_bytes(2 * kMiB) == 2 * kMiB);
  CHECK(HostBackupPool::class_bytes(16 * kMiB) == 16 * kMiB);
  CHECK(HostBackupPool::class_bytes(16 * kMiB + 1) == 18 * kMiB);
  CHECK(HostBackupPool::class_bytes(34 * kMiB) == 36 * kMiB);
  CHECK(HostBackupPool::class_bytes((std::size_t{1} << 30) + 1) == (std::size_t{9} << 27));
  std::size_t classes = 0, previous = 0;
  for (std::size_t bytes = 2 * kMiB; bytes <= std::size_t{4} << 30; bytes += 2 * kMiB) {
    const std::size_t c = HostBackupPool::class_bytes(bytes);
    INFO(bytes);
    REQUIRE(c >= bytes);
    REQUIRE(c - bytes <= bytes / 8);
    if (c != previous) ++classes, previous = c;
  }
  CHECK(classes == 8 + 8 * 8);  // 2..16 MiB in steps of 2 MiB, then 8 per doubling up to 4 GiB
}

TEST_CASE("backups of segments of different sizes in one class reuse one pinned buffer",
          "[offload][limit]") {
  EmulatedDevice dev("hostclasses", 128 * kMiB);
  Arena arena(dev.driver, 0);
  // Dynamic shapes: each step a segment of a new size (34, then 36 MiB), both in the 36 MiB class.
  for (std::size_t bytes : {34 * kMiB, 36 * kMiB, 34 * kMiB}) {
    INFO(bytes);
    void* p = arena.malloc(bytes, nullptr);
    write_pattern(dev.driver, p, bytes, bytes);
    arena.offload();
    arena.validate();
    CHECK(arena.stats().host_backup_bytes == 36 * kMiB);
    CHECK(arena.stats().host_pinned_bytes == 36 * kMiB);  // the same buffer every time
    arena.restore_all();
    CHECK(has_pattern(dev.driver, p, bytes, bytes));
    arena.free(p, nullptr);
    arena.empty_cache();  // the segment goes, its backup returns to the pool's cache
    arena.validate();
    CHECK(arena.stats().host_backup_bytes == 0);
  }
  CHECK(arena.stats().host_pinned_bytes_peak == 36 * kMiB);
}

TEST_CASE("offload beyond the host backup limit is refused before anything is released",
          "[offload][limit]") {
  EmulatedDevice dev("hostlimit");
  ArenaOptions options;
  options.host_backup_limit_bytes = 4 * kMiB;
  Arena arena(dev.driver, 0, options);
  void* a = arena.malloc(2 * kMiB, nullptr);
  void* b = arena.malloc(2 * kMiB, nullptr);
  void* c = arena.malloc(2 * kMiB, nullptr);
  write_pattern(dev.driver, a, 2 * kMiB, 31);
  write_pattern(dev.driver, b, 2 * kMiB, 32);
  write_pattern(dev.driver, c, 2 * kMiB, 33);
  const Stats before = arena.stats();
  try {
    arena.offload();
    FAIL("offload beyond the host backup limit succeeded");
  } catch (const HostBackupLimitExceeded& error) {
    CHECK_THAT_TEXT(error.what(), "needs 6291456 bytes");
    CHECK_THAT_TEXT(error.what(), "limit is 4194304 bytes");
  }
  arena.validate();
  CHECK(arena.resident_bytes() == before.reserved_bytes);
  CHECK(arena.stats().offload_count == 0);
  CHECK(arena.stats().host_backup_bytes == 0);
  CHECK(has_pattern(dev.driver, a, 2 * kMiB, 31));

  // Within the limit a partial offload works, and a later one reuses room
  // by dropping backups of resident segments.
  OffloadResult part = arena.offload(4 * kMiB);
  arena.validate();
  CHECK(part.released_bytes == 4 * kMiB);
  CHECK(arena.stats().host_backup_bytes == 4 * kMiB);
  arena.restore_all();
  arena.validate();
  CHECK(arena.stats().host_backup_bytes == 4 * kMiB);  // kept for clean skipping
  arena.mark_written(c, 1);                            // LRU order now: c, a, b
  arena.mark_written(a, 1);
  arena.mark_written(b, 1);
  OffloadResult other = arena.offload(2 * kMiB);  // c: needs a new backup, drops one of a/b
  arena.validate();
  CHECK(other.released_bytes == 2 * kMiB);
  CHECK_FALSE(arena.is_resident(c, 1));
  CHECK(arena.stats().host_backup_bytes <= 4 * kMiB);
  arena.restore_all();
  CHECK(has_pattern(dev.driver, a, 2 * kMiB, 31));
  CHECK(has_pattern(dev.driver, b, 2 * kMiB, 32));
  CHECK(has_pattern(dev.driver, c, 2 * kMiB, 33));
  for (void* p : {a, b, c}) arena.free(p, nullptr);
  arena.validate();
}

TEST_CASE("a restore that does not fit throws OutOfMemory and leaves a consistent state",
          "[offload][oom]") {
  EmulatedDevice dev("restoreoom", 8 * kMiB);
  Arena arena(dev.driver, 0);
  Arena other(dev.driver, 0);
  void* a = arena.malloc(2 * kMiB, nullptr);
  void* b = arena.malloc(4 * kMiB, nullptr);
  write_pattern(dev.driver, a, 2 * kMiB, 41);
  write_pattern(dev.driver, b, 4 * kMiB, 42);
  arena.offload();
  arena.validate();
  void* hog = other.malloc(4 * kMiB, nullptr);  // leaves 4 MiB: a fits, b does not, not both
  const Stats before = arena.stats();
  try {
    arena.restore_all();
    FAIL("restore beyond the capacity succeeded");
  } catch (const OutOfMemory& error) {
    CHECK(error.requested_bytes() == 6 * kMiB);
    CHECK(error.free_bytes() == 4 * kMiB);
    CHECK_THAT_TEXT(error.what(), "needs 6291456 bytes");
    CHECK_THAT_TEXT(error.what(), "free 4194304 of 8388608");
  }
  arena.validate();
  CHECK(arena.resident_bytes() == 0);  // nothing half-mapped
  CHECK(arena.stats().offloaded_bytes == before.offloaded_bytes);
  CHECK(arena.stats().host_backup_bytes == before.host_backup_bytes);
  CHECK(dev.driver.memory_info(0).free_bytes == 4 * kMiB);

  other.free(hog, nullptr);
  other.empty_cache();
  CHECK(arena.restore_all() == 6 * kMiB);
  arena.validate();
  CHECK(has_pattern(dev.driver, a, 2 * kMiB, 41));
  CHECK(has_pattern(dev.driver, b, 4 * kMiB, 42));
  arena.free(a, nullptr);
  arena.free(b, nullptr);
  arena.validate();
}

TEST_CASE("touching offloaded memory faults", "[offload][fault]") {
  EmulatedDevice dev("fault");
  Arena arena(dev.driver, 0);
  auto* p = static_cast<volatile std::uint64_t*>(arena.malloc(4096, nullptr));
  p[0] = 7;  // the emulated device is host memory: resident memory is plain to touch
  CHECK_FALSE(child_faults([p] { (void)p[0]; }));
  arena.offload();
  arena.validate();
  CHECK(child_faults([p] { (void)p[0]; }));
  arena.restore_all();
  CHECK(p[0] == 7);
  arena.free(const_cast<std::uint64_t*>(p), nullptr);
  arena.validate();
}

TEST_CASE("malloc and free while offloaded never hand out unmapped memory", "[offload]") {
  EmulatedDevice dev("whileoff");
  Arena arena(dev.driver, 0);
  void* a = arena.malloc(4096, nullptr);  // small segment, mostly free
  void* gone = arena.malloc(8192, nullptr);
  void* big = arena.malloc(4 * kMiB, nullptr);
  write_pattern(dev.driver, a, 4096, 51);
  write_pattern(dev.driver, big, 4 * kMiB, 52);
  arena.offload();
  arena.validate();

  // The free blocks of the offloaded small segment are skipped: new memory is resident.
  void* n = arena.malloc(4096, nullptr);
  arena.validate();
  CHECK(arena.is_resident(n, 4096));
  CHECK(arena.stats().active_segments == 1);
  write_pattern(dev.driver, n, 4096, 53);
  // Freeing into an offloaded segment is fine, and a fully freed offloaded
  // segment is dropped together with its backup.
  arena.free(gone, nullptr);
  arena.validate();
  arena.free(big, nullptr);
  arena.validate();
  CHECK(arena.stats().offloaded_bytes == 2 * kMiB);
  CHECK(arena.stats().host_backup_bytes == 2 * kMiB);

  arena.restore_all();
  arena.validate();
  CHECK(has_pattern(dev.driver, a, 4096, 51));
  CHECK(has_pattern(dev.driver, n, 4096, 53));
  // The restored segment's free blocks are usable again, by any stream.
  StreamHandle stream = dev.driver.create_stream(0);
  void* reuse = arena.malloc(8192, stream);
  arena.validate();
  CHECK(reuse == gone);
  arena.free(reuse, stream);
  for (void* p : {a, n}) arena.free(p, nullptr);
  arena.validate();
  dev.driver.destroy_stream(stream);
}

TEST_CASE("offload/restore scenarios on a GPU", "[gpu]") {
  ACB_CUDA_DRIVER_OR_SKIP(cuda);
  scenario_offload_restore_roundtrip(*cuda, /*exact_memory_info=*/false);
  scenario_partial_offload_lru(*cuda);
  scenario_clean_segments_skip_copies(*cuda);
}

TEST_CASE("many small adjacent blocks are offloaded and restored in few copies",
          "[offload][coalesce]") {
  EmulatedDevice dev("coalesce");
  LazyCopyDriver lazy(dev.driver);
  Arena arena(lazy, 0);
  std::vector<LiveBlock> live;
  for (std::uint64_t i = 0; i < 300; ++i) {
    const std::size_t bytes = 512 * (1 + i % 8);  // 512 B .. 4 KiB
    void* p = arena.malloc(bytes, nullptr);
    write_pattern(dev.driver, p, bytes, 500 + i);
    live.push_back({p, bytes, 500 + i});
  }
  // The premise: they were carved one after another from one small segment.
  for (std::size_t i = 1; i < live.size(); ++i)
    REQUIRE(static_cast<const std::byte*>(live[i].ptr) ==
            static_cast<const std::byte*>(live[i - 1].ptr) + live[i - 1].bytes);
  const Stats before = arena.stats();
  const std::size_t copies_before = lazy.copies();

  OffloadResult out = arena.offload();
  CHECK(out.copied_bytes == before.allocated_bytes);
  CHECK(lazy.copies() - copies_before == 1);  // one range instead of 300
  CHECK(lazy.copied_bytes() == before.allocated_bytes);
  arena.validate();
  CHECK(arena.restore_all() == 2 * kMiB);
  CHECK(lazy.copies() - copies_before == 2);
  arena.validate();
  for (const LiveBlock& b : live) CHECK(has_pattern(dev.driver, b.ptr, b.bytes, b.seed));
  const Stats after = arena.stats();
  CHECK(after.copy_range_count - before.copy_range_count == 2);
  CHECK(after.copy_batch_count - before.copy_batch_count == 2);
  for (const LiveBlock& b : live) arena.free(b.ptr, nullptr);
}

TEST_CASE("free gaps are copied only up to the limit and never clobber live data",
          "[offload][coalesce]") {
  EmulatedDevice dev("gaps");
  LazyCopyDriver lazy(dev.driver);  // copies run late: a restore must wait for its own
  for (std::size_t gap_limit : {std::size_t{0}, std::size_t{64} << 10}) {
    INFO("copy_merge_gap_bytes=" << gap_limit);
    ArenaOptions options;
    options.copy_merge_gap_bytes = gap_limit;
    Arena arena(lazy, 0, options);
    // a | small gap | b | c (freed while offloaded) | d | large gap | e
    const std::size_t small = 16 * 1024;
    const std::size_t large = 256 * 1024;
    void* a = arena.malloc(4096, nullptr);
    void* g1 = arena.malloc(small, nullptr);
    void* b = arena.malloc(4096, nullptr);
    void* c = arena.malloc(4096, nullptr);
    void* d = arena.malloc(4096, nullptr);
    void* g2 = arena.malloc(large, nullptr);
    void* e = arena.malloc(4096, nullptr);
    REQUIRE(static_cast<std::byte*>(e) == static_cast<std::byte*>(a) + 4 * 4096 + small + large);
    std::uint64_t seed = 900;
    for (void* p : {a, b, c, d, e}) write_pattern(dev.driver, p, 4096, seed++);
    write_pattern(dev.driver, g1, small, 950);
    arena.free(g1, nullptr);
    arena.free(g2, nullptr);

    const std::size_t copies = lazy.copies();
    const std::size_t bytes = lazy.copied_bytes();
    arena.offload();
    // With the limit, a..d is one copy (the small gap included), e another.
    CHECK(lazy.copies() - copies == (gap_limit == 0 ? 3u : 2u));
    CHECK(lazy.copied_bytes() - bytes == 5 * 4096 + (gap_limit == 0 ? 0 : small));

    arena.free(c, nullptr);  // while offloaded: its bytes are garbage from now on
    arena.restore_all();
    arena.validate();
    CHECK(has_pattern(dev.driver, a, 4096, 900));
    CHECK(has_pattern(dev.driver, b, 4096, 901));
    CHECK(has_pattern(dev.driver, d, 4096, 903));
    CHECK(has_pattern(dev.driver, e, 4096, 904));

    // The gaps are free memory again: what a program writes there now must
    // survive every copy of that restore (late ones included) and the next cycle.
    void* reused = arena.malloc(small, nullptr);
    CHECK(reused == g1);
    write_pattern(dev.driver, reused, small, 960);
    void* again = arena.malloc(4096, nullptr);
    CHECK(again == c);
    write_pattern(dev.driver, again, 4096, 961);
    lazy.synchronize_device(0);  // runs anything still queued on the copy stream
    CHECK(has_pattern(dev.driver, reused, small, 960));
    CHECK(has_pattern(dev.driver, again, 4096, 961));
    arena.offload();
    arena.restore_all();
    CHECK(has_pattern(dev.driver, a, 4096, 900));
    CHECK(has_pattern(dev.driver, reused, small, 960));
    CHECK(has_pattern(dev.driver, again, 4096, 961));
    CHECK(has_pattern(dev.driver, e, 4096, 904));
    for (void* p : {a, reused, b, again, d, e}) arena.free(p, nullptr);
    arena.validate();
  }
}

TEST_CASE("offload releases segments only after every copy is enqueued and done",
          "[offload][coalesce]") {
  // cuMemUnmap is synchronous: an unmap between copies would drain the copy
  // queue. So all copies go first, then every release.
  EmulatedDevice dev("releaseafter");
  LazyCopyDriver lazy(dev.driver);
  Arena arena(lazy, 0);
  std::vector<LiveBlock> live;
  for (std::uint64_t i = 0; i < 4; ++i) {  // four segments of 2 MiB, each dirty
    void* p = arena.malloc(2 * kMiB, nullptr);
    write_pattern(dev.driver, p, 2 * kMiB, 40 + i);
    live.push_back({p, 2 * kMiB, 40 + i});
  }
  const std::size_t unmaps_before = lazy.copies_at_unmap().size();
  arena.offload();
  const std::vector<std::size_t> at_unmap = lazy.copies_at_unmap();
  REQUIRE(at_unmap.size() - unmaps_before == 4);
  for (std::size_t i = unmaps_before; i < at_unmap.size(); ++i) CHECK(at_unmap[i] == lazy.copies());
  arena.restore_all();
  for (const LiveBlock& b : live) CHECK(has_pattern(dev.driver, b.ptr, b.bytes, b.seed));

  SECTION("a failed copy leaves every segment that needed copying resident") {
    void* empty = arena.malloc(2 * kMiB, nullptr);
    arena.free(empty, nullptr);  // a fully free segment: released before any copy
    for (const LiveBlock& b : live) arena.mark_written(b.ptr, b.bytes);
    lazy.fail_copy_after(2);
    CHECK_THROWS_AS(arena.offload(), DriverError);
    arena.validate();
    for (const LiveBlock& b : live) CHECK(arena.is_resident(b.ptr, b.bytes));
    CHECK(arena.stats().offloaded_bytes == 0);
    CHECK(arena.stats().reserved_bytes == 4 * 2 * kMiB);
    for (const LiveBlock& b : live) CHECK(has_pattern(dev.driver, b.ptr, b.bytes, b.seed));
    arena.offload();  // the next one works
    arena.restore_all();
    for (const LiveBlock& b : live) CHECK(has_pattern(dev.driver, b.ptr, b.bytes, b.seed));
  }
  for (const LiveBlock& b : live) arena.free(b.ptr, nullptr);
  arena.validate();
}
