// bench_alloc: what the arena costs, measured against baselines in the same run.
//
//   offload/restore throughput: GB/s of live bytes copied by Arena::offload()
//     and Arena::restore_all() (including unmap/release and create/map), as a
//     fraction of the raw copy bandwidth between pinned host memory and mapped
//     device memory with the same driver: the best of two ways to copy the
//     same number of bytes, one copy per direction (the best case of the
//     link on a GPU) and the arena's own chunking (copy_chunk_bytes chunks,
//     copy_chunks_in_flight in flight, through the same CopyEngine), both
//     synchronised. So the baseline does the arena's copies without the
//     arena, and a fraction above 1 is noise (on the emulated device every
//     copy is a memcpy on the calling thread, whose speed varies with the
//     other processes on the machine: README, "Figures"). Raw passes
//     alternate with the arena's, best of 10 each, so load from other
//     processes on the machine hits both alike.
//   many small blocks: a working set of 512 B - 8 KiB blocks (an optimizer's
//     scalars, a KV cache's page tables), offloaded and restored; copies per
//     offload (after coalescing, copy_plan.h) against the block count, and
//     GB/s against copying the same blocks one copy each through the same
//     CopyEngine (what offload did before coalescing).
//   clean skipping: a second offload of unchanged memory; fraction of live
//     bytes skipped and its time.
//   hot path: one malloc+free pair of cached sizes, timed per pair (clock
//     overhead included), against glibc malloc/free of the same sizes.
//
// Prints `FIGURE <name> <value> <unit>` lines; asserts nothing.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "alloc/arena.h"
#include "alloc/copy_engine.h"
#include "alloc/driver.h"
#include "common/byte_size.h"

using namespace acb::alloc;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::size_t kMiB = std::size_t{1} << 20;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::size_t env_bytes(const char* name, std::size_t fallback) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') return fallback;
  try {
    return static_cast<std::size_t>(acb::parse_byte_size(text));
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "bench_alloc: %s: %s\n", name, e.what());
    std::exit(2);
  }
}

void figure(const char* name, double value, const char* unit) {
  std::printf("FIGURE %s %.4g %s\n", name, value, unit);
}

struct DeviceChoice {
  std::unique_ptr<Driver> driver;
  std::string ledger_name;  // emulated only: removed at the end
};

DeviceChoice open_device(std::size_t working_set) {
  DeviceChoice choice;
  const char* emulated = std::getenv("ACB_EMULATED_DEVICE");
  if (emulated == nullptr) {
    try {
      choice.driver = make_cuda_driver();
      return choice;
    } catch (const DriverError& error) {
      std::fprintf(stderr, "bench_alloc: no GPU (%s); using the emulated device\n", error.what());
    }
  }
  EmulatedDeviceOptions options =
      emulated != nullptr ? parse_emulated_device(emulated) : EmulatedDeviceOptions{};
  if (emulated == nullptr) {
    options.name = "bench-alloc-" + std::to_string(::getpid());
    options.capacity_bytes = 3 * working_set + 256 * kMiB;
    choice.ledger_name = options.name;
  }
  choice.driver = make_emulated_driver(options);
  return choice;
}

// Raw bandwidth: one host buffer <-> one mapped device range of `bytes`, best
// of the passes. Copy passes are interleaved with the arena's passes, so that
// both see the same load on a shared machine.
struct Raw {
  // One copy of all the bytes per direction.
  double single_to_host_gbps = 0;
  double single_to_device_gbps = 0;
  // The same bytes in the arena's chunks, through its CopyEngine.
  double chunked_to_host_gbps = 0;
  double chunked_to_device_gbps = 0;
  double to_host_gbps() const { return std::max(single_to_host_gbps, chunked_to_host_gbps); }
  double to_device_gbps() const { return std::max(single_to_device_gbps, chunked_to_device_gbps); }
  // What the device itself costs besides the copy: copy out then unmap +
  // release; create + map fresh memory then copy in (no arena involved).
  double to_host_release_gbps = 0;
  double fresh_to_device_gbps = 0;
};

class RawRig {
 public:
  RawRig(Driver& driver, std::size_t bytes)
      : driver_(driver),
        chunked_(driver, 0, ArenaOptions{}.copy_chunk_bytes, ArenaOptions{}.copy_chunks_in_flight) {
    const std::size_t g = driver.granularity(0);
    bytes_ = (bytes + g - 1) / g * g;
    base_ = driver.reserve(bytes_, 0);
    handle_ = driver.create(bytes_, 0);
    driver.map(base_, bytes_, handle_, 0);
    host_ = driver.host_alloc(bytes_, 0);
    std::memset(host_, 1, bytes_);
    stream_ = driver.create_stream(0);
    driver.copy_to_device_async(base_, host_, bytes_, stream_);  // first touch of both sides
    driver.synchronize_stream(stream_);
  }
  ~RawRig() {
    driver_.destroy_stream(stream_);
    driver_.host_free(host_, bytes_);
    driver_.unmap(base_, bytes_);
    driver_.release(handle_);
    driver_.free_reservation(base_, bytes_);
  }
  RawRig(const RawRig&) = delete;
  RawRig& operator=(const RawRig&) = delete;

  void copy_pass(Raw& raw) {
    auto start = Clock::now();
    driver_.copy_to_host_async(host_, base_, bytes_, stream_);
    driver_.synchronize_stream(stream_);
    raw.single_to_host_gbps = std::max(raw.single_to_host_gbps, bytes_ / seconds_since(start) / 1e9);
    start = Clock::now();
    driver_.copy_to_device_async(base_, host_, bytes_, stream_);
    driver_.synchronize_stream(stream_);
    raw.single_to_device_gbps = std::max(raw.single_to_device_gbps, bytes_ / seconds_since(start) / 1e9);

    start = Clock::now();
    chunked_.to_host(host_, base_, bytes_);
    chunked_.finish();
    raw.chunked_to_host_gbps = std::max(raw.chunked_to_host_gbps, bytes_ / seconds_since(start) / 1e9);
    start = Clock::now();
    chunked_.to_device(base_, host_, bytes_);
    chunked_.finish();
    raw.chunked_to_device_gbps = std::max(raw.chunked_to_device_gbps, bytes_ / seconds_since(start) / 1e9);
  }

  void release_pass(Raw& raw) {
    auto start = Clock::now();
    driver_.copy_to_host_async(host_, base_, bytes_, stream_);
    driver_.synchronize_stream(stream_);
    driver_.unmap(base_, bytes_);
    driver_.release(handle_);
    raw.to_host_release_gbps =
        std::max(raw.to_host_release_gbps, bytes_ / seconds_since(start) / 1e9);
    start = Clock::now();
    handle_ = driver_.create(bytes_, 0);
    driver_.map(base_, bytes_, handle_, 0);
    driver_.copy_to_device_async(base_, host_, bytes_, stream_);
    driver_.synchronize_stream(stream_);
    raw.fresh_to_device_gbps =
        std::max(raw.fresh_to_device_gbps, bytes_ / seconds_since(start) / 1e9);
  }

 private:
  Driver& driver_;
  CopyEngine chunked_;
  std::size_t bytes_ = 0;
  DevicePtr base_ = 0;
  PhysicalHandle handle_ = 0;
  void* host_ = nullptr;
  StreamHandle stream_ = nullptr;
};

double percentile(std::vector<double> values, double p) {
  std::sort(values.begin(), values.end());
  std::size_t index = static_cast<std::size_t>(p * static_cast<double>(values.size() - 1));
  return values[index];
}

template <class Alloc, class Free>
std::vector<double> time_pairs(Alloc&& alloc, Free&& free_fn, int pairs) {
  static const std::size_t sizes[] = {512, 4096, 65536, 1000, 300000, 24576, 128, 8192};
  std::vector<double> ns;
  ns.reserve(static_cast<std::size_t>(pairs));
  for (int i = 0; i < pairs; ++i) {
    std::size_t bytes = sizes[i % 8];
    auto start = Clock::now();
    void* p = alloc(bytes);
    free_fn(p);
    ns.push_back(std::chrono::duration<double, std::nano>(Clock::now() - start).count());
  }
  return ns;
}

struct SmallBlocks {
  std::size_t blocks = 0;
  double copies_per_offload = 0;
  double batches_per_offload = 0;
  double offload_gbps = 0;
  double restore_gbps = 0;
  double per_block_to_host_gbps = 0;
  double per_block_to_device_gbps = 0;
};

/// `bytes` of blocks of 512 B - 8 KiB: the arena's offload/restore against
/// one CopyEngine copy per block (best of 5 each, alternating).
SmallBlocks small_blocks(Driver& driver, std::size_t bytes) {
  SmallBlocks out;
  Arena arena(driver, 0);
  std::vector<std::pair<void*, std::size_t>> blocks;
  std::size_t total = 0;
  for (std::size_t i = 0; total < bytes; ++i) {
    const std::size_t n = std::size_t{512} << (i % 5);
    blocks.emplace_back(arena.malloc(n, nullptr), n);
    total += n;
  }
  out.blocks = blocks.size();
  std::vector<unsigned char> host(8192, 3);
  StreamHandle stream = driver.create_stream(0);
  for (auto& [ptr, n] : blocks)
    driver.copy_to_device_async(reinterpret_cast<DevicePtr>(ptr), host.data(), n, stream);
  driver.synchronize_stream(stream);
  driver.destroy_stream(stream);

  void* pinned = driver.host_alloc(total, 0);
  CopyEngine one_each(driver, 0, ArenaOptions{}.copy_chunk_bytes,
                      ArenaOptions{}.copy_chunks_in_flight);
  arena.offload();  // warm-up: pins and touches the backups once
  arena.restore_all();
  const int reps = 5;
  for (int r = 0; r < reps; ++r) {
    auto start = Clock::now();
    std::size_t at = 0;
    for (auto& [ptr, n] : blocks) {
      one_each.to_host(static_cast<std::byte*>(pinned) + at, reinterpret_cast<DevicePtr>(ptr), n);
      at += n;
    }
    one_each.finish();
    out.per_block_to_host_gbps =
        std::max(out.per_block_to_host_gbps, total / seconds_since(start) / 1e9);
    start = Clock::now();
    at = 0;
    for (auto& [ptr, n] : blocks) {
      one_each.to_device(reinterpret_cast<DevicePtr>(ptr), static_cast<std::byte*>(pinned) + at, n);
      at += n;
    }
    one_each.finish();
    out.per_block_to_device_gbps =
        std::max(out.per_block_to_device_gbps, total / seconds_since(start) / 1e9);

    for (auto& [ptr, n] : blocks) arena.mark_written(ptr, n);
    const Stats before = arena.stats();
    start = Clock::now();
    OffloadResult offloaded = arena.offload();
    out.offload_gbps =
        std::max(out.offload_gbps, offloaded.copied_bytes / seconds_since(start) / 1e9);
    const Stats mid = arena.stats();
    out.copies_per_offload = static_cast<double>(mid.copy_range_count - before.copy_range_count);
    out.batches_per_offload = static_cast<double>(mid.copy_batch_count - before.copy_batch_count);
    start = Clock::now();
    arena.restore_all();
    out.restore_gbps = std::max(out.restore_gbps, total / seconds_since(start) / 1e9);
  }
  driver.host_free(pinned, total);
  for (auto& [ptr, n] : blocks) arena.free(ptr, nullptr);
  return out;
}

}  // namespace

int main() {
  const std::size_t working_set = env_bytes("ACB_BENCH_BYTES", 256 * kMiB);
  DeviceChoice device = open_device(working_set);
  Driver& driver = *device.driver;
  std::printf("# bench_alloc on the %s driver, working set %zu MiB\n", driver.name().c_str(),
              working_set / kMiB);

  const int reps = 10;
  Raw raw;
  auto rig = std::make_unique<RawRig>(driver, working_set);

  double offload_gbps = 0;
  double restore_gbps = 0;
  double clean_fraction = 0;
  double clean_ms = 0;
  double dirty_ms = 0;
  {
    Arena arena(driver, 0);
    // Mostly large tensors plus a tail of small ones, like a model's state.
    std::vector<std::pair<void*, std::size_t>> blocks;
    std::size_t total = 0;
    while (total + 8 * kMiB <= working_set * 15 / 16) {
      blocks.emplace_back(arena.malloc(8 * kMiB, nullptr), 8 * kMiB);
      total += 8 * kMiB;
    }
    while (total + 64 * 1024 <= working_set) {
      blocks.emplace_back(arena.malloc(64 * 1024, nullptr), 64 * 1024);
      total += 64 * 1024;
    }
    std::vector<unsigned char> host(8 * kMiB, 7);
    StreamHandle stream = driver.create_stream(0);
    for (auto& [ptr, bytes] : blocks)
      driver.copy_to_device_async(reinterpret_cast<DevicePtr>(ptr), host.data(), bytes, stream);
    driver.synchronize_stream(stream);
    driver.destroy_stream(stream);

    arena.offload();  // warm-up: pins and touches the backups once
    arena.restore_all();
    for (int r = 0; r < reps; ++r) {
      rig->copy_pass(raw);
      for (auto& [ptr, bytes] : blocks) arena.mark_written(ptr, bytes);
      auto start = Clock::now();
      OffloadResult out = arena.offload();
      double t = seconds_since(start);
      offload_gbps = std::max(offload_gbps, out.copied_bytes / t / 1e9);
      dirty_ms = t * 1e3;
      start = Clock::now();
      std::size_t restored = arena.restore_all();
      restore_gbps =
          std::max(restore_gbps, static_cast<double>(restored) / seconds_since(start) / 1e9);
    }
    const double live = static_cast<double>(arena.stats().allocated_bytes);
    auto start = Clock::now();
    OffloadResult clean = arena.offload();  // nothing written since the last restore
    clean_ms = seconds_since(start) * 1e3;
    clean_fraction = static_cast<double>(clean.skipped_clean_bytes) / live;
    arena.restore_all();
    for (auto& [ptr, bytes] : blocks) arena.free(ptr, nullptr);
  }
  for (int r = 0; r < reps; ++r) rig->release_pass(raw);
  rig.reset();

  SmallBlocks small = small_blocks(driver, std::min<std::size_t>(working_set / 4, 64 * kMiB));

  std::vector<double> acb_ns;
  std::vector<double> glibc_ns;
  {
    Arena arena(driver, 0);
    const int pairs = 200000;
    time_pairs([&](std::size_t n) { return arena.malloc(n, nullptr); },
               [&](void* p) { arena.free(p, nullptr); },
               pairs / 10);  // warm the cache
    acb_ns = time_pairs([&](std::size_t n) { return arena.malloc(n, nullptr); },
                        [&](void* p) { arena.free(p, nullptr); }, pairs);
    time_pairs([](std::size_t n) { return std::malloc(n); }, [](void* p) { std::free(p); },
               pairs / 10);
    glibc_ns = time_pairs([](std::size_t n) { return std::malloc(n); },
                          [](void* p) { std::free(p); }, pairs);
  }

  figure("raw_single_copy_to_host_gbps", raw.single_to_host_gbps, "GB/s");
  figure("raw_single_copy_to_device_gbps", raw.single_to_device_gbps, "GB/s");
  figure("raw_chunked_to_host_gbps", raw.chunked_to_host_gbps, "GB/s");
  figure("raw_chunked_to_device_gbps", raw.chunked_to_device_gbps, "GB/s");
  figure("raw_to_host_gbps", raw.to_host_gbps(), "GB/s");
  figure("raw_to_device_gbps", raw.to_device_gbps(), "GB/s");
  figure("offload_gbps", offload_gbps, "GB/s");
  figure("restore_gbps", restore_gbps, "GB/s");
  figure("offload_fraction_of_raw", offload_gbps / raw.to_host_gbps(), "ratio");
  figure("restore_fraction_of_raw", restore_gbps / raw.to_device_gbps(), "ratio");
  figure("raw_to_host_then_release_gbps", raw.to_host_release_gbps, "GB/s");
  figure("raw_fresh_map_to_device_gbps", raw.fresh_to_device_gbps, "GB/s");
  figure("offload_fraction_of_raw_with_release", offload_gbps / raw.to_host_release_gbps, "ratio");
  figure("restore_fraction_of_raw_with_fresh_map", restore_gbps / raw.fresh_to_device_gbps,
         "ratio");
  figure("small_blocks_count", static_cast<double>(small.blocks), "blocks");
  figure("small_blocks_copies_per_offload", small.copies_per_offload, "copies");
  figure("small_blocks_batches_per_offload", small.batches_per_offload, "batches");
  figure("small_blocks_offload_gbps", small.offload_gbps, "GB/s");
  figure("small_blocks_restore_gbps", small.restore_gbps, "GB/s");
  figure("small_blocks_one_copy_each_to_host_gbps", small.per_block_to_host_gbps, "GB/s");
  figure("small_blocks_one_copy_each_to_device_gbps", small.per_block_to_device_gbps, "GB/s");
  figure("dirty_offload_ms", dirty_ms, "ms");
  figure("clean_skip_fraction", clean_fraction, "ratio");
  figure("clean_offload_ms", clean_ms, "ms");
  figure("alloc_pair_median_ns", percentile(acb_ns, 0.5), "ns");
  figure("alloc_pair_p99_ns", percentile(acb_ns, 0.99), "ns");
  figure("glibc_pair_median_ns", percentile(glibc_ns, 0.5), "ns");
  figure("glibc_pair_p99_ns", percentile(glibc_ns, 0.99), "ns");

  device.driver.reset();
  if (!device.ledger_name.empty())
    ::unlink(("/dev/shm/acb-emulated-" + device.ledger_name).c_str());
  return 0;
}
