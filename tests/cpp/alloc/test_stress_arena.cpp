// Randomized, fixed-seed stress of the arena: thousands of mallocs, frees and
// pattern writes mixed with offloads of random budgets and restores (whole
// and on demand), checking after every restore that every live byte is what
// was written and every address is unchanged. Then two processes sharing one
// emulated device that fits only one working set take turns through pipes.
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdint>
#include <cstdio>
#include <random>
#include <thread>
#include <vector>

#include "acb_catch.hpp"
#include "alloc/size_classes.h"
#include "arena_test_support.h"

using namespace acb::alloc;
using namespace acb::alloc::testing;

namespace {

struct Live {
  void* ptr;
  std::size_t bytes;
  std::uint64_t seed;
};

// Direct host access is fine on the emulated device (its memory is host memory).
void fill(const Live& b) {
  auto* words = static_cast<std::uint64_t*>(b.ptr);
  for (std::size_t i = 0; i < b.bytes / 8; ++i) words[i] = pattern_word(b.seed, i);
}

bool intact(const Live& b) {
  const auto* words = static_cast<const std::uint64_t*>(b.ptr);
  for (std::size_t i = 0; i < b.bytes / 8; ++i)
    if (words[i] != pattern_word(b.seed, i)) return false;
  return true;
}

std::size_t random_size(std::mt19937_64& rng) {
  std::uint64_t kind = rng() % 100;
  if (kind < 70) return 8 * (1 + rng() % 512);           // up to 4 KiB
  if (kind < 92) return 8 * (1 + rng() % (128 * 1024));  // up to 1 MiB
  return 8 * (1 + rng() % (512 * 1024));                 // up to 4 MiB
}

}  // namespace

TEST_CASE("randomized malloc/free/write/offload/restore keeps every live byte", "[stress]") {
  EmulatedDevice dev("stress", 128 * kMiB);
  ArenaOptions options;
  options.copy_chunk_bytes = 256 * 1024;  // many chunks in flight per segment
  Arena arena(dev.driver, 0, options);
  std::mt19937_64 rng(20261125);
  std::vector<Live> live;
  std::size_t live_bytes = 0;
  std::uint64_t next_seed = 1;
  int restores = 0;
  int offloads = 0;

  auto check_all = [&] {
    for (const Live& b : live) {
      INFO("block at " << b.ptr << " of " << b.bytes << " bytes");
      REQUIRE(arena.is_resident(b.ptr, b.bytes));
      REQUIRE(intact(b));
    }
  };
  auto make_resident = [&](const Live& b) {
    if (!arena.is_resident(b.ptr, b.bytes)) {
      std::vector<const Live*> offloaded;
      for (const Live& other : live)
        if (!arena.is_resident(other.ptr, other.bytes)) offloaded.push_back(&other);
      arena.restore(b.ptr, b.bytes);
      ++restores;
      REQUIRE(arena.is_resident(b.ptr, b.bytes));
      // Every block this restore brought back holds what was written.
      for (const Live* other : offloaded) {
        if (!arena.is_resident(other->ptr, other->bytes)) continue;
        INFO("block at " << other->ptr << " of " << other->bytes << " bytes");
        REQUIRE(intact(*other));
      }
    }
  };

  for (int step = 0; step < 3000; ++step) {
    std::uint64_t op = rng() % 100;
    if (op < 45 || live.empty()) {
      if (live_bytes > 40 * kMiB) continue;
      std::size_t bytes = random_size(rng);
      Live b{arena.malloc(bytes, nullptr), bytes, next_seed++};
      REQUIRE(b.ptr != nullptr);
      REQUIRE(reinterpret_cast<std::uintptr_t>(b.ptr) % kMinBlockBytes == 0);
      REQUIRE(arena.is_resident(b.ptr, b.bytes));  // malloc never hands out offloaded memory
      fill(b);
      live.push_back(b);
      live_bytes += bytes;
    } else if (op < 80) {
      std::size_t i = rng() % live.size();
      arena.free(live[i].ptr, nullptr);
      live_bytes -= live[i].bytes;
      live[i] = live.back();
      live.pop_back();
    } else if (op < 90) {
      Live& b = live[rng() % live.size()];
      make_resident(b);
      b.seed = next_seed++;
      fill(b);
      arena.mark_written(b.ptr, b.bytes);
    } else if (op < 96) {
      std::size_t budget = (rng() % 2 == 0) ? SIZE_MAX : (rng() % (24 * kMiB));
      arena.offload(budget);
      ++offloads;
    } else if (op < 98) {
      arena.restore_all();
      ++restores;
      check_all();
    } else {
      make_resident(live[rng() % live.size()]);
    }
    arena.validate();
  }
  arena.restore_all();
  check_all();
  Stats s = arena.stats();
  CHECK(offloads > 100);
  CHECK(restores > 50);
  CHECK(s.skipped_clean_bytes > 0);
  CHECK(s.offload_copied_bytes > 0);
  for (const Live& b : live) arena.free(b.ptr, nullptr);
  arena.empty_cache();
  arena.validate();
  CHECK(arena.resident_bytes() == 0);
}

namespace {

// One participant of the two-process test: allocate a working set, then on
// each turn restore it, check it, write a new pattern and offload it.
// Returns 0 on success, a distinct code per failure.
int take_turns(const EmulatedDeviceOptions& device, int me, int rounds, int read_fd, int write_fd) {
  try {
    EmulatedDriver driver(device);
    Arena arena(driver, 0);
    std::vector<Live> live;
    std::uint64_t seed = 1000 * static_cast<std::uint64_t>(me + 1);
    for (int round = 0; round < rounds; ++round) {
      char token = 0;
      if (::read(read_fd, &token, 1) != 1) return 10;
      if (round == 0) {
        for (std::size_t bytes : {3 * kMiB, std::size_t{100000}, std::size_t{4096}, kMiB}) {
          live.push_back({arena.malloc(bytes, nullptr), bytes, seed++});
        }
        // The device holds one working set, not two: taking turns is required.
        if (driver.memory_info(0).total_bytes >= 2 * arena.resident_bytes()) return 18;
      } else {
        arena.restore_all();
        for (const Live& b : live) {
          if (!intact(b)) return 11;
        }
      }
      for (Live& b : live) {
        b.seed = seed++;
        fill(b);
        arena.mark_written(b.ptr, b.bytes);
      }
      arena.validate();
      arena.offload();
      if (arena.resident_bytes() != 0) return 12;
      if (::write(write_fd, &token, 1) != 1) return 13;
    }
    char token = 0;
    if (::read(read_fd, &token, 1) != 1) return 14;
    arena.restore_all();
    for (const Live& b : live) {
      if (!intact(b)) return 15;
      arena.free(b.ptr, nullptr);
    }
    arena.empty_cache();  // hand the device over empty
    arena.validate();
    if (arena.resident_bytes() != 0) return 17;
    if (::write(write_fd, &token, 1) != 1) return 16;
    return 0;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "participant %d: %s\n", me, error.what());
    return 20;
  }
}

}  // namespace

TEST_CASE("two processes share one emulated device by taking turns", "[stress][multiprocess]") {
  // Each working set needs 6 MiB (a 4 MiB and a 2 MiB segment); the device holds 10 MiB.
  EmulatedDeviceOptions device = small_device("turns", 10 * kMiB);
  LedgerFileRemover remover{device.name};
  int to_child[2];
  int to_parent[2];
  REQUIRE(::pipe(to_child) == 0);
  REQUIRE(::pipe(to_parent) == 0);
  const int rounds = 4;
  std::signal(SIGPIPE, SIG_IGN);  // a dead child must fail the test, not kill it
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::_exit(take_turns(device, 1, rounds, to_child[0], to_parent[1]));
  }
  // Only the child reads to_child and writes to_parent: a child that dies early is seen as EOF.
  ::close(to_child[0]);
  ::close(to_parent[1]);
  // The parent plays too, on its own driver; a relay thread passes the
  // token: parent's turn, then the child's, and so on.
  int parent_in[2];
  int parent_out[2];
  REQUIRE(::pipe(parent_in) == 0);
  REQUIRE(::pipe(parent_out) == 0);
  int parent_result = -1;
  std::thread parent(
      [&] { parent_result = take_turns(device, 0, rounds, parent_in[0], parent_out[1]); });
  char token = 'x';
  bool relay_ok = true;
  for (int round = 0; round <= rounds && relay_ok; ++round) {
    relay_ok = ::write(parent_in[1], &token, 1) == 1 && ::read(parent_out[0], &token, 1) == 1 &&
               ::write(to_child[1], &token, 1) == 1 && ::read(to_parent[0], &token, 1) == 1;
  }
  ::close(parent_in[1]);  // a participant still waiting sees EOF instead of hanging
  parent.join();
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  for (int fd : {to_child[1], to_parent[0], parent_in[0], parent_out[0], parent_out[1]})
    ::close(fd);
  CHECK(relay_ok);
  CHECK(parent_result == 0);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}
