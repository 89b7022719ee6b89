// The emulated device's parts on their own: the memfd behind its physical
// memory (ranges reused and merged, the warm pool and its cap, pages really
// given back, contents kept while page tables move) and the shared
// ledger file (a foreign file is refused, not overwritten).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "acb_catch.hpp"
#include "alloc/emulated_driver.h"
#include "alloc/emulated_memory.h"
#include "driver_test_support.h"

using namespace acb::alloc;
using acb::alloc::testing::LedgerFileRemover;
using acb::alloc::testing::small_device;

namespace {

constexpr std::size_t kMiB = std::size_t{1} << 20;

std::size_t resident_bytes(int fd) {
  struct stat st {};
  REQUIRE(::fstat(fd, &st) == 0);
  return static_cast<std::size_t>(st.st_blocks) * 512;
}

}  // namespace

TEST_CASE("emulated memory reuses and merges ranges and gives pages back", "[driver][emulated]") {
  EmulatedMemory memory("parts", 64 * kMiB, 0);  // no pool: every release punches
  const std::size_t a = memory.allocate(2 * kMiB);
  const std::size_t b = memory.allocate(2 * kMiB);
  const std::size_t c = memory.allocate(2 * kMiB);
  CHECK(a != b);
  CHECK(b != c);
  // Fresh ranges are faulted in at allocation (MAP_POPULATE of their parking).
  CHECK(resident_bytes(memory.fd()) >= 6 * kMiB);

  // Touch b through a mapping: releasing it punches its pages out.
  void* window = ::mmap(nullptr, 2 * kMiB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(window != MAP_FAILED);
  memory.map(window, b, 2 * kMiB);
  std::memset(window, 0x5A, 2 * kMiB);
  memory.unmap(window, b, 2 * kMiB);
  const std::size_t before = resident_bytes(memory.fd());
  memory.deallocate(b, 2 * kMiB);
  CHECK(resident_bytes(memory.fd()) == before - 2 * kMiB);
  CHECK(memory.pooled_bytes() == 0);
  ::munmap(window, 2 * kMiB);

  // a and b merge into one 4 MiB hole that a 4 MiB allocation fits.
  memory.deallocate(a, 2 * kMiB);
  CHECK(memory.allocate(4 * kMiB) == std::min(a, b));
  // All of the span but c's range is free: a request larger than that fails.
  try {
    memory.allocate(64 * kMiB);
    FAIL("allocated more than the span");
  } catch (const DriverError& e) {
    CHECK(e.out_of_memory());
  }
}

TEST_CASE("emulated memory keeps released ranges warm up to the pool cap", "[driver][emulated]") {
  EmulatedMemory memory("pool", 64 * kMiB, 4 * kMiB);
  const std::size_t a = memory.allocate(4 * kMiB);
  const std::size_t b = memory.allocate(2 * kMiB);
  const std::size_t resident = resident_bytes(memory.fd());
  REQUIRE(resident >= 6 * kMiB);

  // a fits the pool: its pages stay; b would exceed the cap: punched out.
  memory.deallocate(a, 4 * kMiB);
  CHECK(memory.pooled_bytes() == 4 * kMiB);
  CHECK(resident_bytes(memory.fd()) == resident);
  memory.deallocate(b, 2 * kMiB);
  CHECK(memory.pooled_bytes() == 4 * kMiB);
  CHECK(resident_bytes(memory.fd()) == resident - 2 * kMiB);

  // Smaller creates are carved from the warm range before any fresh memory.
  CHECK(memory.allocate(2 * kMiB) == a);
  CHECK(memory.allocate(2 * kMiB) == a + 2 * kMiB);
  CHECK(memory.pooled_bytes() == 0);
  CHECK(resident_bytes(memory.fd()) == resident - 2 * kMiB);
}

TEST_CASE("emulated memory keeps contents across unmap, remap and double mapping",
          "[driver][emulated]") {
  EmulatedMemory memory("moves", 64 * kMiB, 64 * kMiB);
  const std::size_t bytes = 4 * kMiB;
  const std::size_t offset = memory.allocate(bytes);
  auto* one = static_cast<unsigned char*>(
      ::mmap(nullptr, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  auto* two = static_cast<unsigned char*>(
      ::mmap(nullptr, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  REQUIRE(one != MAP_FAILED);
  REQUIRE(two != MAP_FAILED);

  memory.map(one, offset, bytes);
  for (std::size_t i = 0; i < bytes; i += 4096) one[i] = static_cast<unsigned char>(i >> 12);
  memory.map(two, offset, bytes);  // a second view of the same range
  CHECK(two[5 * 4096] == 5);
  two[7 * 4096] = 0xEE;
  CHECK(one[7 * 4096] == 0xEE);
  memory.unmap(one, offset, bytes);
  CHECK(two[9 * 4096] == 9);
  memory.unmap(two, offset, bytes);

  // Shown again, at the other address, read-write even though the last view
  // was narrowed to read-only, and after a trip through the pool.
  memory.map(one, offset, bytes);
  REQUIRE(::mprotect(one, bytes, PROT_READ) == 0);
  memory.unmap(one, offset, bytes);
  memory.map(two, offset, bytes);
  two[11 * 4096] = 11;  // would fault if the narrowed protection had travelled
  CHECK(two[3 * 4096] == 3);
  CHECK(two[7 * 4096] == 0xEE);
  memory.unmap(two, offset, bytes);
  memory.deallocate(offset, bytes);
  REQUIRE(memory.allocate(bytes) == offset);
  memory.map(one, offset, bytes);
  CHECK(one[bytes - 4096] == static_cast<unsigned char>((bytes - 4096) >> 12));
  memory.unmap(one, offset, bytes);
  memory.deallocate(offset, bytes);
  ::munmap(one, bytes);
  ::munmap(two, bytes);
}

TEST_CASE("a file that is not a ledger is refused, not overwritten", "[driver][emulated]") {
  const EmulatedDeviceOptions options = small_device("foreign");
  LedgerFileRemover remover{options.name};
  const std::string path = "/dev/shm/acb-emulated-" + options.name;
  {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    REQUIRE(fd >= 0);
    const std::string text = "not a ledger";
    REQUIRE(::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
    ::close(fd);
  }
  try {
    EmulatedDriver driver(options);
    FAIL("opened a foreign file as a ledger");
  } catch (const DriverError& e) {
    CHECK_THAT_TEXT(e.what(), path);
  }
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK(st.st_size == 12);
}

TEST_CASE("a queued copy whose memory was unmapped fails at resume", "[driver][emulated]") {
  const EmulatedDeviceOptions options = small_device("stale");
  LedgerFileRemover remover{options.name};
  EmulatedDriver driver(options);
  const std::size_t granule = driver.granularity(0);
  const DevicePtr base = driver.reserve(granule, 0);
  const PhysicalHandle handle = driver.create(granule, 0);
  driver.map(base, granule, handle, 0);
  StreamHandle stream = driver.create_stream(0);
  std::string host(granule, 'x');
  driver.pause_stream(stream);
  driver.copy_to_device_async(base, host.data(), granule, stream);
  driver.unmap(base, granule);  // a bug: the copy is still queued
  try {
    driver.resume_stream(stream);
    FAIL("a queued copy wrote to unmapped memory");
  } catch (const DriverError& e) {
    CHECK(e.code() == EFAULT);
    CHECK_THAT_TEXT(e.what(), "copy_to_device_async");
  }
  driver.synchronize_stream(stream);  // the failed copy still counts as done
  driver.destroy_stream(stream);
  driver.release(handle);
  driver.free_reservation(base, granule);
}

TEST_CASE("emulated_device_from_env reads ACB_EMULATED_DEVICE", "[driver][emulated]") {
  const char* old = std::getenv("ACB_EMULATED_DEVICE");
  const std::string saved = old != nullptr ? old : "";
  ::setenv("ACB_EMULATED_DEVICE", "fromenv:256MiB", 1);
  const EmulatedDeviceOptions options = emulated_device_from_env();
  CHECK(options.name == "fromenv");
  CHECK(options.capacity_bytes == 256 * kMiB);
  ::setenv("ACB_EMULATED_DEVICE", "bad name:1GiB", 1);
  CHECK_THROWS_AS(emulated_device_from_env(), std::invalid_argument);
  ::unsetenv("ACB_EMULATED_DEVICE");
  CHECK(emulated_device_from_env().name == EmulatedDeviceOptions{}.name);
  if (old != nullptr) ::setenv("ACB_EMULATED_DEVICE", saved.c_str(), 1);
}
