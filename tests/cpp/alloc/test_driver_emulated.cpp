// The emulated device's own behaviour, beyond the conformance suite: paused
// streams, capacity shared between processes, reclamation of a killed
// process's share, faults on unmapped memory, and its error messages.
//
// Multi-process cases fork(); children use only their own driver and leave
// with _exit so that no parent state (Catch2, the parent's driver) is touched.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "acb_catch.hpp"
#include "alloc/emulated_driver.h"
#include "driver_test_support.h"

using namespace acb::alloc;
using acb::alloc::testing::LedgerFileRemover;
using acb::alloc::testing::small_device;

namespace {

constexpr std::size_t kMiB = std::size_t{1} << 20;

/// A pipe to pass single bytes between parent and child, with bounded waits.
class Pipe {
 public:
  Pipe() { REQUIRE(::pipe(fds_) == 0); }
  ~Pipe() {
    ::close(fds_[0]);
    ::close(fds_[1]);
  }
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;
  void send(char c) { (void)!::write(fds_[1], &c, 1); }
  /// Returns the byte, or 0 when nothing came within `timeout` (or EOF).
  char receive(std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
    fd_set set;
    FD_ZERO(&set);
    FD_SET(fds_[0], &set);
    timeval tv{static_cast<time_t>(timeout.count() / 1000),
               static_cast<suseconds_t>(timeout.count() % 1000 * 1000)};
    if (::select(fds_[0] + 1, &set, nullptr, nullptr, &tv) != 1) return 0;
    char c = 0;
    return ::read(fds_[0], &c, 1) == 1 ? c : 0;
  }

 private:
  int fds_[2];
};

/// waitpid with a bounded wait; kills the child if it overstays.
int wait_child(pid_t pid, std::chrono::seconds timeout = std::chrono::seconds(30)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  while (::waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      FAIL("child " << pid << " did not finish within " << timeout.count() << " s");
    }
    std::this_thread::sleep_for(
        std::chrono::milliseconds(5));  // polling a child's exit, not timing
  }
  return status;
}

}  // namespace

TEST_CASE("a paused stream holds copies and events until resumed", "[driver][emulated]") {
  const EmulatedDeviceOptions options = small_device("pause");
  LedgerFileRemover remover{options.name};
  EmulatedDriver driver(options);
  const std::size_t granule = driver.granularity(0);
  const DevicePtr base = driver.reserve(granule, 0);
  const PhysicalHandle handle = driver.create(granule, 0);
  driver.map(base, granule, handle, 0);
  StreamHandle stream = driver.create_stream(0);
  StreamHandle other = driver.create_stream(0);
  EventHandle before = driver.create_event(0);
  EventHandle after = driver.create_event(0);
  auto* memory = reinterpret_cast<std::uint8_t*>(base);
  std::memset(memory, 1, granule);
  std::vector<std::uint8_t> source(granule, 2);

  EventHandle at_pause = driver.create_event(0);
  driver.record_event(before, stream);
  driver.pause_stream(stream);
  driver.record_event(at_pause, stream);  // busy even with nothing queued yet
  CHECK_FALSE(driver.event_done(at_pause));
  driver.copy_to_device_async(base, source.data(), granule, stream);
  driver.record_event(after, stream);
  CHECK(driver.event_done(before));
  CHECK_FALSE(driver.event_done(after));
  CHECK(memory[0] == 1);  // the copy has not run

  // Another stream is not held up by the paused one.
  std::vector<std::uint8_t> readback(granule, 0);
  driver.copy_to_host_async(readback.data(), base, granule, other);
  driver.synchronize_stream(other);
  CHECK(readback[granule - 1] == 1);

  SECTION("waiting on it times out with a clear error") {
    driver.set_wait_timeout(std::chrono::milliseconds(50));
    try {
      driver.synchronize_event(after);
      FAIL("synchronize_event on a paused stream returned");
    } catch (const DriverError& e) {
      CHECK(e.code() == ETIMEDOUT);
      CHECK_THAT_TEXT(e.what(), "paused");
    }
    CHECK_THROWS_AS(driver.synchronize_stream(stream), DriverError);
    CHECK_THROWS_AS(driver.synchronize_device(0), DriverError);
    driver.resume_stream(stream);
  }
  SECTION("a wait returns once another thread resumes it") {
    std::thread resumer([&] { driver.resume_stream(stream); });
    driver.synchronize_device(0);
    resumer.join();
  }
  CHECK(driver.event_done(after));
  CHECK(driver.event_done(at_pause));
  CHECK(memory[0] == 2);
  CHECK(memory[granule - 1] == 2);

  driver.destroy_event(before);
  driver.destroy_event(at_pause);
  driver.destroy_event(after);
  driver.destroy_stream(stream);
  driver.destroy_stream(other);
  driver.unmap(base, granule);
  driver.release(handle);
  driver.free_reservation(base, granule);
}

TEST_CASE("out of memory names the call, size, device, free and capacity", "[driver][emulated]") {
  const EmulatedDeviceOptions options = small_device("oom", 8 * kMiB);
  LedgerFileRemover remover{options.name};
  EmulatedDriver driver(options);
  const PhysicalHandle held = driver.create(6 * kMiB, 0);
  try {
    driver.create(4 * kMiB, 0);
    FAIL("over-commit succeeded");
  } catch (const DriverError& e) {
    CHECK(e.out_of_memory());
    CHECK(e.call() == "create");
    CHECK_THAT_TEXT(e.what(), "create(size=4194304, device=0)");
    CHECK_THAT_TEXT(e.what(), "free=2097152");
    CHECK_THAT_TEXT(e.what(), "capacity=8388608");
    CHECK_THAT_TEXT(e.what(), options.name);
  }
  driver.release(held);
  CHECK(driver.memory_info(0).free_bytes == 8 * kMiB);
}

TEST_CASE("emulated misuse is rejected with the address and size", "[driver][emulated]") {
  const EmulatedDeviceOptions options = small_device("misuse");
  LedgerFileRemover remover{options.name};
  EmulatedDriver driver(options);
  const std::size_t granule = driver.granularity(0);
  const DevicePtr base = driver.reserve(2 * granule, 0);
  const PhysicalHandle handle = driver.create(granule, 0);
  CHECK_THROWS_AS(driver.create(granule + 4096, 0), DriverError);          // not a granule multiple
  CHECK_THROWS_AS(driver.create(granule, 1), DriverError);                 // no such device
  CHECK_THROWS_AS(driver.map(base, 2 * granule, handle, 0), DriverError);  // not the handle's size
  CHECK_THROWS_AS(driver.map(base + 2 * granule, granule, handle, 0), DriverError);  // outside
  driver.map(base, granule, handle, 0);
  const PhysicalHandle second = driver.create(granule, 0);
  CHECK_THROWS_AS(driver.map(base, granule, second, 0), DriverError);  // over a mapping
  try {
    driver.release(handle);
    FAIL("released a mapped allocation");
  } catch (const DriverError& e) {
    CHECK_THAT_TEXT(e.what(), "still mapped");
  }
  try {
    driver.free_reservation(base, 2 * granule);
    FAIL("freed a reservation with a mapping");
  } catch (const DriverError& e) {
    CHECK_THAT_TEXT(e.what(), "still mapped");
  }
  std::vector<std::uint8_t> host(2 * granule);
  try {
    driver.copy_to_host_async(host.data(), base, 2 * granule, nullptr);  // second half unmapped
    FAIL("copied from unmapped device memory");
  } catch (const DriverError& e) {
    CHECK(e.code() == EFAULT);
    CHECK_THAT_TEXT(e.what(), "size=" + std::to_string(2 * granule));
  }
  CHECK_THROWS_AS(driver.release(12345), DriverError);
  CHECK_THROWS_AS(driver.host_free(host.data(), 1), DriverError);
  driver.unmap(base, granule);
  driver.release(handle);
  driver.release(second);
  driver.free_reservation(base, 2 * granule);
}

TEST_CASE("two processes share one emulated device's capacity",
          "[driver][emulated][multiprocess]") {
  // Room for one process's 6 MiB, not two.
  const EmulatedDeviceOptions options = small_device("share", 8 * kMiB);
  LedgerFileRemover remover{options.name};
  Pipe to_child, to_parent;
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    int code = 1;
    try {
      EmulatedDriver driver(options);
      const PhysicalHandle handle = driver.create(6 * kMiB, 0);
      to_parent.send('H');  // holding
      if (to_child.receive() == 'R') {
        driver.release(handle);
        to_parent.send('F');  // freed
        code = 0;
      }
    } catch (...) {
      code = 2;
    }
    ::_exit(code);
  }
  REQUIRE(to_parent.receive() == 'H');
  EmulatedDriver driver(options);
  CHECK(driver.memory_info(0).free_bytes == 2 * kMiB);
  try {
    driver.create(6 * kMiB, 0);
    FAIL("the second process over-committed the shared device");
  } catch (const DriverError& e) {
    CHECK(e.out_of_memory());
    CHECK_THAT_TEXT(e.what(), "free=2097152");
  }
  to_child.send('R');
  REQUIRE(to_parent.receive() == 'F');
  const PhysicalHandle handle = driver.create(6 * kMiB, 0);  // fits now
  CHECK(driver.memory_info(0).free_bytes == 2 * kMiB);
  driver.release(handle);
  const int status = wait_child(child);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("a process killed with SIGKILL leaks no capacity", "[driver][emulated][multiprocess]") {
  const EmulatedDeviceOptions options = small_device("kill", 8 * kMiB);
  LedgerFileRemover remover{options.name};
  Pipe to_parent;
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    try {
      EmulatedDriver driver(options);
      driver.create(8 * kMiB, 0);
      to_parent.send('H');
      for (;;) ::pause();  // until killed
    } catch (...) {
      ::_exit(2);
    }
  }
  REQUIRE(to_parent.receive() == 'H');
  EmulatedDriver driver(options);
  CHECK(driver.memory_info(0).free_bytes == 0);
  CHECK_THROWS_AS(driver.create(2 * kMiB, 0), DriverError);
  REQUIRE(::kill(child, SIGKILL) == 0);
  const int status = wait_child(child);
  CHECK(WIFSIGNALED(status));
  // The dead child's slot is reclaimed by the next look at the ledger.
  CHECK(driver.memory_info(0).free_bytes == 8 * kMiB);
  const PhysicalHandle handle = driver.create(8 * kMiB, 0);
  driver.release(handle);
}

TEST_CASE("touching unmapped device memory faults", "[driver][emulated][multiprocess]") {
  const EmulatedDeviceOptions options = small_device("fault");
  LedgerFileRemover remover{options.name};
  enum class Touch { reserved, unmapped };
  for (Touch touch : {Touch::reserved, Touch::unmapped}) {
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      // ASan installs its own SEGV handler: take the default action so the
      // child dies of the signal (and so the status says what happened).
      ::signal(SIGSEGV, SIG_DFL);
      ::signal(SIGBUS, SIG_DFL);
      int code = 3;
      try {
        EmulatedDriver driver(options);
        const std::size_t granule = driver.granularity(0);
        const DevicePtr base = driver.reserve(granule, 0);
        if (touch == Touch::unmapped) {
          const PhysicalHandle handle = driver.create(granule, 0);
          driver.map(base, granule, handle, 0);
          *reinterpret_cast<volatile int*>(base + 64) = 1;  // mapped: fine
          driver.unmap(base, granule);
        }
        *reinterpret_cast<volatile int*>(base + 64) = 2;  // must fault
        code = 0;
      } catch (...) {
        code = 4;
      }
      ::_exit(code);
    }
    const int status = wait_child(child);
    INFO("touch " << (touch == Touch::reserved ? "reserved" : "unmapped") << ", status " << status);
    REQUIRE(WIFSIGNALED(status));
    CHECK((WTERMSIG(status) == SIGSEGV || WTERMSIG(status) == SIGBUS));
  }
}

TEST_CASE("emulated options are validated", "[driver][emulated]") {
  EmulatedDeviceOptions options = small_device("opts");
  LedgerFileRemover remover{options.name};
  options.granularity_bytes = 3 * 4096;
  CHECK_THROWS_AS(EmulatedDriver(options), std::invalid_argument);
  options.granularity_bytes = 64 * 1024;
  options.device_count = 0;
  CHECK_THROWS_AS(EmulatedDriver(options), std::invalid_argument);
  options.device_count = 1;
  options.capacity_bytes = 0;
  CHECK_THROWS_AS(EmulatedDriver(options), std::invalid_argument);
  options.capacity_bytes = 64 << 20;
  EmulatedDeviceOptions escaping = options;
  escaping.name = "../etc/x";  // names a file under /dev/shm, nothing else
  CHECK_THROWS_AS(EmulatedDriver(escaping), std::invalid_argument);
  options.device_count = 2;
  EmulatedDriver driver(options);
  CHECK(driver.granularity(1) == 64 * 1024);
  // Devices have separate capacities in the same ledger.
  const PhysicalHandle on_one = driver.create(options.capacity_bytes, 1);
  CHECK(driver.memory_info(0).free_bytes == options.capacity_bytes);
  CHECK(driver.memory_info(1).free_bytes == 0);
  driver.release(on_one);
}

TEST_CASE("a driver used in a child after fork refuses, and the parent's share survives",
          "[driver][emulated][multiprocess]") {
  const EmulatedDeviceOptions options = small_device("forked", 8 * kMiB);
  LedgerFileRemover remover{options.name};
  auto driver = std::make_unique<EmulatedDriver>(options);
  const PhysicalHandle held = driver->create(4 * kMiB, 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    int code = 0;
    try {
      driver->create(2 * kMiB, 0);
      code = 1;  // the parent's ledger lock was used from the child
    } catch (const DriverError& e) {
      code = std::string(e.what()).find("after fork") != std::string::npos ? 0 : 2;
    }
    driver.reset();  // the child's copy must not uncharge the parent's 4 MiB
    ::_exit(code);
  }
  const int status = wait_child(child);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(driver->memory_info(0).free_bytes == 4 * kMiB);
  driver->release(held);
  CHECK(driver->memory_info(0).free_bytes == 8 * kMiB);
}
