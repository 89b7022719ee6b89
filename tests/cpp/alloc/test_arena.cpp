// The caching sub-allocator on the emulated device: size classes, split and
// merge, best fit, stream-ordered reuse (with the emulated driver's stream
// pause hook), growth, empty_cache, out-of-memory handling. validate() runs
// after every step.
#include <cstdint>
#include <stdexcept>
#include <thread>
#include <vector>

#include "acb_catch.hpp"
#include "alloc/size_classes.h"
#include "arena_test_support.h"

using namespace acb::alloc;
using namespace acb::alloc::testing;

namespace {
std::uintptr_t addr(const void* p) { return reinterpret_cast<std::uintptr_t>(p); }
}  // namespace

TEST_CASE("small allocations share a segment, split and merge back", "[arena]") {
  EmulatedDevice dev("split");
  Arena arena(dev.driver, 0);
  void* a = arena.malloc(1000, nullptr);
  arena.validate();
  void* b = arena.malloc(1000, nullptr);
  arena.validate();
  REQUIRE(a != nullptr);
  CHECK(addr(b) == addr(a) + 1024);  // rounded to 512 and cut from the same segment
  Stats s = arena.stats();
  CHECK(s.active_segments == 1);
  CHECK(s.reserved_bytes == 2 * kMiB);
  CHECK(s.allocated_bytes == 2048);
  CHECK(arena.is_resident(a, 2048));

  arena.free(a, nullptr);
  arena.validate();
  arena.free(b, nullptr);
  arena.validate();
  CHECK(arena.stats().allocated_bytes == 0);
  // Merged back into one block: a 1 MiB request starts at the segment start.
  void* c = arena.malloc(kMiB, nullptr);
  arena.validate();
  CHECK(c == a);
  CHECK(arena.stats().active_segments == 1);
  arena.free(c, nullptr);
  arena.validate();
}

TEST_CASE("size classes reuse a freed block of the same class at once", "[arena]") {
  EmulatedDevice dev("classes");
  Arena arena(dev.driver, 0);
  void* p = arena.malloc(3000, nullptr);  // class of 3072 bytes
  void* keep = arena.malloc(512, nullptr);
  arena.free(p, nullptr);
  arena.validate();
  void* q = arena.malloc(2600, nullptr);  // also 3072
  arena.validate();
  CHECK(q == p);
  void* r = arena.malloc(1, nullptr);  // 512: the smallest class is served from the tail
  arena.validate();
  CHECK(r != p);
  CHECK(arena.stats().active_segments == 1);
  for (void* x : {q, r, keep}) arena.free(x, nullptr);
  arena.validate();
  CHECK(arena.malloc(0, nullptr) == nullptr);
}

TEST_CASE("large allocations get their own segments and best fit", "[arena]") {
  EmulatedDevice dev("large");
  Arena arena(dev.driver, 0);
  void* p4 = arena.malloc(4 * kMiB, nullptr);
  void* p6 = arena.malloc(6 * kMiB, nullptr);
  void* p8 = arena.malloc(8 * kMiB, nullptr);
  arena.validate();
  CHECK(arena.stats().active_segments == 3);
  CHECK(arena.stats().reserved_bytes == 18 * kMiB);
  void* odd = arena.malloc(3 * kMiB / 2, nullptr);  // rounded up to the 2 MiB granularity
  arena.validate();
  CHECK(arena.stats().reserved_bytes == 20 * kMiB);
  for (void* x : {p4, p6, p8}) arena.free(x, nullptr);
  arena.validate();

  void* five = arena.malloc(5 * kMiB, nullptr);  // best fit: the 6 MiB block
  arena.validate();
  CHECK(five == p6);
  void* three =
      arena.malloc(3 * kMiB, nullptr);  // best fit: the 4 MiB block (1 MiB tail not split)
  arena.validate();
  CHECK(three == p4);
  void* two = arena.malloc(2 * kMiB, nullptr);  // split off the 8 MiB block
  void* rest = arena.malloc(6 * kMiB, nullptr);
  arena.validate();
  CHECK(two == p8);
  CHECK(addr(rest) == addr(p8) + 2 * kMiB);
  CHECK(arena.stats().segment_create_count == 4);
  for (void* x : {five, three, two, rest, odd}) arena.free(x, nullptr);
  arena.validate();
}

TEST_CASE("empty_cache releases fully free segments and keeps live ones", "[arena]") {
  EmulatedDevice dev("empty", 64 * kMiB);
  Arena arena(dev.driver, 0);
  void* live = arena.malloc(4096, nullptr);
  void* big = arena.malloc(10 * kMiB, nullptr);
  arena.free(big, nullptr);
  arena.validate();
  CHECK(arena.stats().reserved_bytes == 12 * kMiB);
  arena.empty_cache();
  arena.validate();
  CHECK(arena.stats().reserved_bytes == 2 * kMiB);
  CHECK(arena.stats().segment_release_count == 1);
  CHECK(dev.driver.memory_info(0).free_bytes == 62 * kMiB);
  arena.free(live, nullptr);
  arena.empty_cache();
  arena.validate();
  CHECK(arena.stats().reserved_bytes == 0);
  CHECK(dev.driver.memory_info(0).free_bytes == 64 * kMiB);
  CHECK(arena.stats().allocated_bytes_peak == 10 * kMiB + 4096);
}

TEST_CASE("bad frees are errors that name the pointer and lose nothing", "[arena]") {
  EmulatedDevice dev("badfree");
  Arena arena(dev.driver, 0);
  void* p = arena.malloc(4096, nullptr);
  int on_stack = 0;
  CHECK_THROWS_AS(arena.free(&on_stack, nullptr), std::invalid_argument);
  CHECK_THROWS_AS(arena.free(static_cast<char*>(p) + 512, nullptr), std::invalid_argument);
  arena.free(p, nullptr);
  try {
    arena.free(p, nullptr);
    FAIL("double free was accepted");
  } catch (const std::invalid_argument& error) {
    CHECK_THAT_TEXT(error.what(), "already freed");
  }
  CHECK_THROWS_AS(arena.record_stream(p, nullptr), std::invalid_argument);
  arena.validate();
  arena.free(nullptr, nullptr);  // like free(NULL)
  CHECK(arena.owns(p));
  CHECK_FALSE(arena.owns(&on_stack));
}

TEST_CASE("a block freed on one stream is reused on another only after its event",
          "[arena][streams]") {
  EmulatedDevice dev("streams");
  Arena arena(dev.driver, 0);
  StreamHandle s1 = dev.driver.create_stream(0);
  StreamHandle s2 = dev.driver.create_stream(0);

  void* p = arena.malloc(2 * kMiB, s1);
  arena.free(p, s1);
  arena.validate();
  // Same stream: immediate reuse, even while the stream is busy.
  dev.driver.pause_stream(s1);
  void* again = arena.malloc(2 * kMiB, s1);
  CHECK(again == p);

  // Work on s1 still uses p when it is freed (a queued copy stands for a kernel).
  std::vector<unsigned char> host(4096, 0x5A);
  dev.driver.copy_to_device_async(reinterpret_cast<DevicePtr>(again), host.data(), host.size(), s1);
  arena.free(again, s1);
  arena.validate();
  // Another stream while s1 is busy: must not get p.
  void* q = arena.malloc(2 * kMiB, s2);
  arena.validate();
  CHECK(q != p);
  CHECK(arena.stats().active_segments == 2);

  // Once s1 passed its event, p is free for anyone.
  dev.driver.resume_stream(s1);
  void* r = arena.malloc(2 * kMiB, s2);
  arena.validate();
  CHECK(r == p);
  CHECK(arena.stats().active_segments == 2);
  arena.free(q, s2);
  arena.free(r, s2);
  arena.validate();
  dev.driver.destroy_stream(s1);
  dev.driver.destroy_stream(s2);
}

TEST_CASE("another stream's miss takes one block, a busy stream keeps the rest",
          "[arena][streams]") {
  EmulatedDevice dev("steal");
  Arena arena(dev.driver, 0);
  StreamHandle s1 = dev.driver.create_stream(0);
  StreamHandle s2 = dev.driver.create_stream(0);
  void* p1 = arena.malloc(2 * kMiB, s1);
  void* p2 = arena.malloc(2 * kMiB, s1);
  dev.driver.pause_stream(s1);
  std::vector<unsigned char> host(4096, 1);
  dev.driver.copy_to_device_async(reinterpret_cast<DevicePtr>(p1), host.data(), host.size(), s1);
  arena.free(p1, s1);
  arena.free(p2, s1);
  arena.validate();
  void* q = arena.malloc(2 * kMiB, s2);  // one of s1's blocks waits for s1; s2 grows
  arena.validate();
  CHECK(q != p1);
  CHECK(q != p2);
  CHECK(arena.stats().segment_create_count == 3);
  void* again = arena.malloc(2 * kMiB, s1);  // s1 still has the other block at once
  arena.validate();
  CHECK((again == p1 || again == p2));
  CHECK(arena.stats().segment_create_count == 3);
  dev.driver.resume_stream(s1);
  arena.free(q, s2);
  arena.free(again, s1);
  arena.validate();
  dev.driver.destroy_stream(s1);
  dev.driver.destroy_stream(s2);
}

TEST_CASE("record_stream holds a block until the other stream's work is done", "[arena][streams]") {
  EmulatedDevice dev("recordstream");
  Arena arena(dev.driver, 0);
  StreamHandle s1 = dev.driver.create_stream(0);
  StreamHandle s2 = dev.driver.create_stream(0);

  void* p = arena.malloc(2 * kMiB, s1);
  arena.record_stream(p, s2);
  dev.driver.pause_stream(s2);
  std::vector<unsigned char> host(4096, 0x5A);
  dev.driver.copy_to_host_async(host.data(), reinterpret_cast<DevicePtr>(p), host.size(),
                                s2);  // s2 reads p
  arena.free(p, s1);
  arena.validate();
  void* q = arena.malloc(2 * kMiB, s1);  // p still in use by s2's queued work
  arena.validate();
  CHECK(q != p);
  dev.driver.resume_stream(s2);
  void* r = arena.malloc(2 * kMiB, s1);
  arena.validate();
  CHECK(r == p);
  arena.free(q, s1);
  arena.free(r, s1);
  arena.validate();
  dev.driver.destroy_stream(s1);
  dev.driver.destroy_stream(s2);
}

TEST_CASE("cached segments are released and the allocation retried before out of memory",
          "[arena][oom]") {
  EmulatedDevice dev("oomretry", 8 * kMiB);
  Arena arena(dev.driver, 0);
  void* six = arena.malloc(6 * kMiB, nullptr);
  arena.free(six, nullptr);                       // cached, not released
  void* seven = arena.malloc(7 * kMiB, nullptr);  // needs a fresh 8 MiB segment
  arena.validate();
  CHECK(seven != nullptr);
  CHECK(arena.stats().segment_release_count == 1);
  arena.free(seven, nullptr);
  arena.validate();
}

TEST_CASE("out of memory is an exception with the sizes", "[arena][oom]") {
  EmulatedDevice dev("oom", 8 * kMiB);
  Arena arena(dev.driver, 0);
  void* six = arena.malloc(6 * kMiB, nullptr);
  try {
    (void)arena.malloc(4 * kMiB, nullptr);
    FAIL("allocation beyond the capacity succeeded");
  } catch (const OutOfMemory& error) {
    CHECK(error.requested_bytes() == 4 * kMiB);
    CHECK(error.free_bytes() == 2 * kMiB);
    CHECK_THAT_TEXT(error.what(), "tried to allocate 4194304 bytes");
    CHECK_THAT_TEXT(error.what(), "free 2097152 of 8388608 bytes");
    CHECK_THAT_TEXT(error.what(), "reserved 6291456 bytes");
    CHECK_THAT_TEXT(error.what(), "allocated 6291456 bytes");
    CHECK_THAT_TEXT(error.what(), "tried: releasing this arena's cached free segments");
    CHECK_THAT_TEXT(error.what(), "no out-of-memory handler is set");
  }
  arena.validate();
  CHECK_THROWS_AS(arena.malloc(SIZE_MAX - 100, nullptr), OutOfMemory);  // too large to round
  arena.validate();
  CHECK(arena.stats().oom_count == 2);
  arena.free(six, nullptr);
  arena.validate();
}

TEST_CASE("the out-of-memory handler runs unlocked and is asked for the segment to map",
          "[arena][oom]") {
  EmulatedDevice dev("oomhandler", 8 * kMiB);
  Arena other(dev.driver, 0);
  Arena arena(dev.driver, 0);
  void* hog = other.malloc(6 * kMiB, nullptr);
  int calls = 0;
  arena.set_out_of_memory_handler([&](std::size_t shortfall) {
    ++calls;
    // 3 MiB + 1 byte needs a 4 MiB segment (2 MiB granularity): the real
    // shortfall, not the request.
    CHECK(shortfall == 4 * kMiB);
    CHECK(arena.stats().oom_count == 1);  // would deadlock if the arena lock were held
    other.free(hog, nullptr);
    other.empty_cache();
    return true;
  });
  void* p = arena.malloc(3 * kMiB + 1, nullptr);
  arena.validate();
  CHECK(p != nullptr);
  CHECK(calls == 1);

  // A handler that cannot help: OutOfMemory after exactly one call.
  calls = 0;
  arena.set_out_of_memory_handler([&](std::size_t) {
    ++calls;
    return true;  // claims room but made none: no progress, so no second call
  });
  CHECK_THROWS_AS(arena.malloc(6 * kMiB, nullptr), OutOfMemory);
  CHECK(calls == 1);
  // A handler that says it could not help: its answer is in the error.
  arena.set_out_of_memory_handler([&](std::size_t) {
    ++calls;
    return false;
  });
  try {
    (void)arena.malloc(6 * kMiB, nullptr);
    FAIL("allocation beyond the capacity succeeded");
  } catch (const OutOfMemory& error) {
    CHECK_THAT_TEXT(error.what(), "asking the out-of-memory handler (the broker) for 6291456 bytes, "
                                  "which could not make room");
  }
  CHECK(calls == 2);
  arena.set_out_of_memory_handler({});
  CHECK_THROWS_AS(arena.malloc(6 * kMiB, nullptr), OutOfMemory);
  CHECK(calls == 2);
  arena.free(p, nullptr);
  arena.validate();
  other.validate();
}

TEST_CASE("an allocation is retried after every handler call that made progress, within a bound",
          "[arena][oom]") {
  EmulatedDevice dev("oomprogress", 16 * kMiB);
  Arena other(dev.driver, 0);
  Arena arena(dev.driver, 0);
  // The other arena fills the device in 2 MiB pieces; each handler call
  // frees only one of them (a broker that evicts too little at first).
  std::vector<void*> hogs;
  for (int i = 0; i < 8; ++i) hogs.push_back(other.malloc(2 * kMiB, nullptr));
  int calls = 0;
  arena.set_out_of_memory_handler([&](std::size_t shortfall) {
    ++calls;
    CHECK(shortfall == 6 * kMiB);
    other.free(hogs.back(), nullptr);
    hogs.pop_back();
    other.empty_cache();
    return true;
  });
  void* p = arena.malloc(6 * kMiB, nullptr);  // three rounds of progress
  CHECK(p != nullptr);
  CHECK(calls == 3);
  arena.validate();

  arena.set_out_of_memory_handler({});
  arena.free(p, nullptr);
  for (void* h : hogs) other.free(h, nullptr);
  arena.validate();
  other.validate();
}

TEST_CASE("out-of-memory handler calls are bounded even while each one makes progress",
          "[arena][oom]") {
  EmulatedDevice dev("oombound", 32 * kMiB);
  Arena other(dev.driver, 0);
  Arena arena(dev.driver, 0);
  std::vector<void*> pieces;
  for (int i = 0; i < 16; ++i) pieces.push_back(other.malloc(2 * kMiB, nullptr));
  int calls = 0;
  arena.set_out_of_memory_handler([&](std::size_t) {
    ++calls;  // frees 2 MiB a call: progress every time, never the 32 MiB asked
    other.free(pieces.back(), nullptr);
    pieces.pop_back();
    other.empty_cache();
    return true;
  });
  CHECK_THROWS_AS(arena.malloc(32 * kMiB, nullptr), OutOfMemory);
  CHECK(calls == Arena::kOomHandlerCalls);
  arena.set_out_of_memory_handler({});
  for (void* piece : pieces) other.free(piece, nullptr);
  arena.validate();
  other.validate();
}

TEST_CASE("concurrent mallocs and frees from several threads stay consistent", "[arena][threads]") {
  EmulatedDevice dev("threads");
  Arena arena(dev.driver, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&arena, t] {
      std::vector<void*> mine;
      for (int i = 0; i < 2000; ++i) {
        mine.push_back(arena.malloc(static_cast<std::size_t>(512 * (1 + (i + t) % 16)), nullptr));
        if (i % 3 == 0) {
          arena.free(mine.front(), nullptr);
          mine.erase(mine.begin());
        }
      }
      for (void* p : mine) arena.free(p, nullptr);
    });
  }
  for (auto& thread : threads) thread.join();
  arena.validate();
  CHECK(arena.stats().allocated_bytes == 0);
  CHECK(arena.stats().alloc_count == 8000);
  CHECK(arena.stats().free_count == 8000);
}
