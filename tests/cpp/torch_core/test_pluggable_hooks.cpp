// pluggable_hooks: record_stream and empty_cache reach the process's arenas
// through the callbacks set on (a stand-in for) torch's CUDAPluggableAllocator,
// and a torch without the setters is named, not silently accepted.
#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "acb_catch.hpp"
#include "alloc/emulated_driver.h"
#include "alloc/process_arenas.h"
#include "torch/pluggable_hooks.h"

using namespace acb::alloc;
namespace th = acb::torch_hook;

namespace {

constexpr std::size_t kMiB = std::size_t{1} << 20;

// The process registry on a fresh emulated device, torn down after.
struct EmulatedProcessDevice {
  std::string name = "acbtest-hooks-" + std::to_string(::getpid());
  EmulatedProcessDevice() { ::setenv("ACB_EMULATED_DEVICE", (name + ":32MiB").c_str(), 1); }
  ~EmulatedProcessDevice() {
    shutdown_process_arenas();
    ::unsetenv("ACB_EMULATED_DEVICE");
    ::unlink(("/dev/shm/acb-emulated-" + name).c_str());
  }
};

// The fake libtorch_cuda.so, loaded as torch loads it (privately).
struct FakeTorch {
  explicit FakeTorch(const char* path) : path(path), handle(::dlopen(path, RTLD_NOW | RTLD_LOCAL)) {
    REQUIRE(handle != nullptr);
    change = reinterpret_cast<void (*)(int)>(::dlsym(handle, "fake_torch_change_current_allocator"));
    record_stream = reinterpret_cast<int (*)(void*, void*)>(::dlsym(handle, "fake_torch_record_stream"));
    empty_cache = reinterpret_cast<int (*)()>(::dlsym(handle, "fake_torch_empty_cache"));
    REQUIRE((change != nullptr && record_stream != nullptr && empty_cache != nullptr));
  }
  ~FakeTorch() {
    change(0);
    ::dlclose(handle);
  }
  std::vector<std::string> libraries() const { return {"libacb-no-such-torch.so", path}; }
  std::string path;
  void* handle;
  void (*change)(int) = nullptr;
  int (*record_stream)(void*, void*) = nullptr;
  int (*empty_cache)() = nullptr;
};

}  // namespace

TEST_CASE("a torch that is not loaded, or lacks a setter, is named", "[pluggable_hooks]") {
  std::string why = th::pluggable_hooks_missing({ACB_FAKE_TORCH_CUDA});
  CHECK_THAT(why, acb_test::has_substring("is not loaded in this process"));
  CHECK_THAT(why, acb_test::has_substring(ACB_FAKE_TORCH_CUDA));
  FakeTorch old_torch(ACB_FAKE_TORCH_CUDA_NO_RECORD_STREAM);
  old_torch.change(1);
  why = th::pluggable_hooks_missing(old_torch.libraries());
  CHECK_THAT(why, acb_test::has_substring("set_record_stream_fn"));
  CHECK_THAT(why, acb_test::has_substring(ACB_FAKE_TORCH_CUDA_NO_RECORD_STREAM));
  CHECK_THROWS_WITH(th::install_pluggable_hooks(old_torch.libraries()),
                    acb_test::has_substring("set_record_stream_fn"));
  CHECK(old_torch.empty_cache() == 0);  // nothing was set
}

TEST_CASE("without a current pluggable allocator installing is an error", "[pluggable_hooks]") {
  FakeTorch torch(ACB_FAKE_TORCH_CUDA);
  CHECK(th::pluggable_hooks_missing(torch.libraries()).empty());
  CHECK_THROWS_WITH(th::install_pluggable_hooks(torch.libraries()),
                    acb_test::has_substring("no current CUDA pluggable allocator"));
}

TEST_CASE("record_stream holds a freed block until the recorded stream's work is done",
          "[pluggable_hooks]") {
  EmulatedProcessDevice device;
  FakeTorch torch(ACB_FAKE_TORCH_CUDA);
  torch.change(1);
  CHECK(torch.record_stream(nullptr, nullptr) == 0);  // torch's own default: ignored
  th::install_pluggable_hooks(torch.libraries());

  Arena& arena = process_arena(0);
  auto& driver = dynamic_cast<EmulatedDriver&>(arena.driver());
  StreamHandle main = driver.create_stream(0);
  StreamHandle side = driver.create_stream(0);
  void* p = arena.malloc(2 * kMiB, main);
  REQUIRE(torch.record_stream(p, side) == 1);
  driver.pause_stream(side);  // a long kernel on the side stream still reads p
  std::vector<unsigned char> host(4096);
  driver.copy_to_host_async(host.data(), reinterpret_cast<DevicePtr>(p), host.size(), side);
  arena.free(p, main);
  void* q = arena.malloc(2 * kMiB, main);
  CHECK(q != p);
  driver.resume_stream(side);
  driver.synchronize_stream(side);
  void* r = arena.malloc(2 * kMiB, main);
  CHECK(r == p);
  arena.validate();

  SECTION("a pointer of no arena is an error, not ignored") {
    int not_ours = 0;
    CHECK_THROWS_WITH(torch.record_stream(&not_ours, side),
                      acb_test::has_substring("not memory of any acb arena"));
  }
  SECTION("empty_cache gives the cached free segments back to the device") {
    arena.free(q, main);
    arena.free(r, main);
    CHECK(arena.stats().reserved_bytes == 4 * kMiB);
    CHECK(driver.memory_info(0).free_bytes == 28 * kMiB);
    REQUIRE(torch.empty_cache() == 1);
    arena.validate();
    CHECK(arena.stats().reserved_bytes == 0);
    CHECK(driver.memory_info(0).free_bytes == 32 * kMiB);
    q = r = nullptr;
  }
  if (q != nullptr) arena.free(q, main);
  if (r != nullptr) arena.free(r, main);
  driver.destroy_stream(main);
  driver.destroy_stream(side);
}
