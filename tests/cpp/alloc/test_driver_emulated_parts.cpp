// The emulated device's parts on their own: the memfd behind its physical
// memory (ranges reused and merged, pages really given back) and the shared
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
  EmulatedMemory memory("parts", 64 * kMiB);
  const std::size_t a = memory.allocate(2 * kMiB);
  const std::size_t b = memory.allocate(2 * kMiB);
  const std::size_t c = memory.allocate(2 * kMiB);
  CHECK(a != b);
  CHECK(b != c);

  // Touch b through a mapping: its pages exist; releasing it punches them out.
  void* window = ::mmap(nullptr, 2 * kMiB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(window != MAP_FAILED);
  memory.map(window, b, 2 * kMiB);
  std::memset(window, 0x5A, 2 * kMiB);
  CHECK(resident_bytes(memory.fd()) >= 2 * kMiB);
  ::munmap(window, 2 * kMiB);
  memory.deallocate(b, 2 * kMiB);
  CHECK(resident_bytes(memory.fd()) == 0);

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
