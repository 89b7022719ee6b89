// A fixed-seed randomized stress test of the emulated driver: threads each
// offload and restore their own segments (copy out, unmap, release; create,
// map at the same address, copy in) against a shared capacity too small for
// all of them, checking every segment's data after each restore.
#include <cstdint>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "acb_catch.hpp"
#include "alloc/emulated_driver.h"
#include "driver_test_support.h"

using namespace acb::alloc;
using acb::alloc::testing::LedgerFileRemover;
using acb::alloc::testing::small_device;

namespace {

constexpr std::size_t kGranule = 64 * 1024;
constexpr int kThreads = 4;
constexpr int kSegments = 6;
constexpr int kSteps = 400;

std::uint64_t word_at(std::uint64_t seed, std::size_t index) {
  std::uint64_t x = seed * 0x9E3779B97F4A7C15ULL + index;
  x ^= x >> 31;
  x *= 0xBF58476D1CE4E5B9ULL;
  return x ^ (x >> 29);
}

struct Segment {
  bool resident = false;
  PhysicalHandle handle = 0;
  std::uint64_t seed = 0;             // 0: never written
  std::vector<std::uint64_t> backup;  // host copy while offloaded
};

struct Outcome {
  int restores = 0;
  int out_of_memory = 0;
  int corrupt = 0;
  std::string error;
};

void worker(EmulatedDriver& driver, int id, Outcome& outcome) {
  std::mt19937_64 rng(1234 + id);
  const std::size_t words = kGranule / sizeof(std::uint64_t);
  const DevicePtr base = driver.reserve(kSegments * kGranule, 0);
  StreamHandle stream = driver.create_stream(0);
  std::vector<Segment> segments(kSegments);
  try {
    for (int step = 0; step < kSteps; ++step) {
      Segment& segment = segments[rng() % kSegments];
      const DevicePtr address =
          base + static_cast<std::size_t>(&segment - segments.data()) * kGranule;
      if (segment.resident) {
        const bool rewrite = rng() % 2 == 0;
        if (rewrite) {  // the CPU writes the mapped memory directly, like a CPU-build tensor
          segment.seed = rng() | 1;
          auto* data = reinterpret_cast<std::uint64_t*>(address);
          for (std::size_t i = 0; i < words; ++i) data[i] = word_at(segment.seed, i);
        }
        segment.backup.resize(words);
        driver.copy_to_host_async(segment.backup.data(), address, kGranule, stream);
        driver.synchronize_stream(stream);
        driver.unmap(address, kGranule);
        driver.release(segment.handle);
        segment.resident = false;
      } else {
        try {
          segment.handle = driver.create(kGranule, 0);
        } catch (const DriverError& e) {
          if (!e.out_of_memory()) throw;
          ++outcome.out_of_memory;
          continue;
        }
        driver.map(address, kGranule, segment.handle, 0);
        segment.resident = true;
        if (segment.seed == 0) continue;
        driver.copy_to_device_async(address, segment.backup.data(), kGranule, stream);
        driver.synchronize_stream(stream);
        ++outcome.restores;
        const auto* data = reinterpret_cast<const std::uint64_t*>(address);
        for (std::size_t i = 0; i < words; ++i)
          if (data[i] != word_at(segment.seed, i)) {
            ++outcome.corrupt;
            break;
          }
      }
    }
  } catch (const std::exception& e) {
    outcome.error = e.what();
  }
  for (std::size_t i = 0; i < segments.size(); ++i) {
    if (!segments[i].resident) continue;
    driver.unmap(base + i * kGranule, kGranule);
    driver.release(segments[i].handle);
  }
  driver.destroy_stream(stream);
  driver.free_reservation(base, kSegments * kGranule);
}

}  // namespace

TEST_CASE("emulated driver stress: concurrent offload and restore keep data",
          "[driver][emulated][stress]") {
  // Room for half of all segments at once, so threads run out and retry.
  EmulatedDeviceOptions options = small_device("stress", kThreads * kSegments * kGranule / 2);
  options.granularity_bytes = kGranule;
  LedgerFileRemover remover{options.name};
  EmulatedDriver driver(options);
  std::vector<Outcome> outcomes(kThreads);
  std::vector<std::thread> threads;
  for (int id = 0; id < kThreads; ++id)
    threads.emplace_back(worker, std::ref(driver), id, std::ref(outcomes[id]));
  for (auto& thread : threads) thread.join();
  int restores = 0, out_of_memory = 0;
  for (const Outcome& outcome : outcomes) {
    CHECK(outcome.error.empty());
    CHECK(outcome.corrupt == 0);
    restores += outcome.restores;
    out_of_memory += outcome.out_of_memory;
  }
  CHECK(restores > 100);
  CHECK(out_of_memory > 0);  // the capacity really was contended
  CHECK(driver.memory_info(0).free_bytes == options.capacity_bytes);
  CHECK(driver.created_bytes() == 0);
}

TEST_CASE("two drivers in one process share the device's capacity", "[driver][emulated]") {
  const EmulatedDeviceOptions options = small_device("twice", 8 << 20);
  LedgerFileRemover remover{options.name};
  EmulatedDriver first(options), second(options);
  const PhysicalHandle a = first.create(6 << 20, 0);
  CHECK(second.memory_info(0).free_bytes == (2 << 20));
  CHECK_THROWS_AS(second.create(4 << 20, 0), DriverError);
  const PhysicalHandle b = second.create(2 << 20, 0);
  first.release(a);
  CHECK(first.memory_info(0).free_bytes == (6 << 20));
  second.release(b);
  CHECK(first.memory_info(0).free_bytes == (8 << 20));
}
