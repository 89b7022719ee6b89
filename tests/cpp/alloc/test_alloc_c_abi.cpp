// The C ABI of libacb_alloc.so, as torch's CUDAPluggableAllocator uses it:
// the symbols are exported, malloc/free/record_stream/empty_cache reach the
// process registry's arena, and errors come back as NULL, never as a throw.
#include <dlfcn.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "acb_catch.hpp"
#include "alloc/pluggable_allocator.h"
#include "alloc/process_arenas.h"

using namespace acb::alloc;

namespace {

constexpr std::size_t kMiB = std::size_t{1} << 20;

// Points the registry at a fresh emulated device for one test, and tears it down after.
struct EmulatedProcessDevice {
  std::string name = "acbtest-cabi-" + std::to_string(::getpid());
  explicit EmulatedProcessDevice(const char* host_limit = nullptr) {
    ::setenv("ACB_EMULATED_DEVICE", (name + ":32MiB").c_str(), 1);
    if (host_limit != nullptr) ::setenv("ACB_HOST_BACKUP_LIMIT", host_limit, 1);
  }
  ~EmulatedProcessDevice() {
    shutdown_process_arenas();
    ::unsetenv("ACB_EMULATED_DEVICE");
    ::unsetenv("ACB_HOST_BACKUP_LIMIT");
    ::unlink(("/dev/shm/acb-emulated-" + name).c_str());
  }
};

}  // namespace

TEST_CASE("the C ABI symbols are exported with torch's names", "[c_abi]") {
  void* lib = ::dlopen(ACB_ALLOC_SO, RTLD_NOW | RTLD_LOCAL);
  REQUIRE(lib != nullptr);
  for (const char* symbol :
       {"acb_alloc_malloc", "acb_alloc_free", "acb_alloc_empty_cache", "acb_alloc_record_stream"}) {
    INFO(symbol);
    CHECK(::dlsym(lib, symbol) != nullptr);
  }
  // The same library as the one linked: one registry per process.
  CHECK(::dlsym(lib, "acb_alloc_malloc") == reinterpret_cast<void*>(&acb_alloc_malloc));
  ::dlclose(lib);
}

TEST_CASE("malloc, record_stream, free and empty_cache reach the device's arena", "[c_abi]") {
  EmulatedProcessDevice device;
  void* p = acb_alloc_malloc(1000, 0, nullptr);
  REQUIRE(p != nullptr);
  Arena& arena = process_arena(0);
  CHECK(arena.owns(p));
  CHECK(arena.stats().allocated_bytes == 1024);
  std::memset(p, 0xAB, 1000);  // emulated device memory is host memory
  acb_alloc_record_stream(p, nullptr);
  void* big = acb_alloc_malloc(static_cast<ssize_t>(4 * kMiB), 0, nullptr);
  REQUIRE(big != nullptr);
  acb_alloc_free(p, 1000, 0, nullptr);
  acb_alloc_free(big, static_cast<ssize_t>(4 * kMiB), 0, nullptr);
  arena.validate();
  CHECK(arena.stats().allocated_bytes == 0);
  CHECK(arena.stats().reserved_bytes == 6 * kMiB);
  acb_alloc_empty_cache();
  arena.validate();
  CHECK(arena.stats().reserved_bytes == 0);
  CHECK(acb_alloc_malloc(0, 0, nullptr) == nullptr);
  acb_alloc_free(nullptr, 0, 0, nullptr);
}

TEST_CASE("C ABI errors return NULL or are reported, never thrown", "[c_abi]") {
  EmulatedProcessDevice device;
  CHECK(acb_alloc_malloc(-1, 0, nullptr) == nullptr);
  CHECK(acb_alloc_malloc(static_cast<ssize_t>(64 * kMiB), 0, nullptr) ==
        nullptr);                                        // beyond 32 MiB: OOM
  CHECK(acb_alloc_malloc(100, 99, nullptr) == nullptr);  // no such device
  CHECK(process_arena(0).stats().oom_count == 1);
  int not_ours = 0;
  acb_alloc_free(&not_ours, 4, 0, nullptr);  // reported on stderr, nothing changes
  acb_alloc_record_stream(&not_ours, nullptr);
  void* p = acb_alloc_malloc(512, 0, nullptr);
  REQUIRE(p != nullptr);
  acb_alloc_free(p, 512, 0, nullptr);
  acb_alloc_free(p, 512, 0, nullptr);  // double free: reported, not thrown
  process_arena(0).validate();
  CHECK(process_arena(0).stats().free_count == 1);
}

TEST_CASE("the registry takes the host backup limit from the environment", "[c_abi]") {
  EmulatedProcessDevice device("2MiB");
  void* a = acb_alloc_malloc(static_cast<ssize_t>(2 * kMiB), 0, nullptr);
  void* b = acb_alloc_malloc(static_cast<ssize_t>(2 * kMiB), 0, nullptr);
  REQUIRE(a != nullptr);
  REQUIRE(b != nullptr);
  CHECK_THROWS_AS(process_arena(0).offload(), HostBackupLimitExceeded);
  CHECK(process_arena(0).offload(1).released_bytes == 2 * kMiB);
  process_arena(0).restore_all();
  process_arena(0).validate();
  acb_alloc_free(a, 0, 0, nullptr);
  acb_alloc_free(b, 0, 0, nullptr);
  CHECK(parse_host_backup_limit("8GiB", 0) == 8192 * kMiB);
  CHECK(parse_host_backup_limit("50%", 1000 * kMiB) == 500 * kMiB);
  CHECK(parse_host_backup_limit("100%", 1000 * kMiB) == 1000 * kMiB);
  CHECK(parse_host_backup_limit("0", 1000 * kMiB) == 0);  // unbounded
  for (const char* bad : {"0%", "101%", "%", "12.5%", "-5%", "1000%"}) {
    INFO(bad);
    CHECK_THROWS_AS(parse_host_backup_limit(bad, 1000 * kMiB), std::invalid_argument);
  }
}

TEST_CASE("without ACB_HOST_BACKUP_LIMIT the limit is half of the host's RAM", "[c_abi]") {
  EmulatedProcessDevice device;
  ::unsetenv("ACB_HOST_BACKUP_LIMIT");
  const std::size_t ram = host_ram_bytes();
  CHECK(ram > 0);
  CHECK(process_arena(0).host_backup_limit_bytes() == ram / 100 * 50);
  CHECK(std::string(kDefaultHostBackupLimit) == "50%");
  ::setenv("ACB_HOST_BACKUP_LIMIT", "150%", 1);
  CHECK_THROWS_WITH(arena_options_from_env(),
                    acb_test::has_substring("ACB_HOST_BACKUP_LIMIT: not a share of host RAM: '150%'"));
}
