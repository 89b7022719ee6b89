// The CUDA driver without a GPU: its loader's failures, and the conformance
// scenarios run through CudaDriver against fake_libcuda.cpp (a host-memory
// stand-in for libcuda.so.1 that exports the names cuda.h maps to).
#include <dlfcn.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "acb_catch.hpp"
#include "alloc/arena.h"
#include "alloc/driver.h"
#include "arena_test_support.h"
#include "driver_conformance.h"
#include "driver_test_support.h"
#include "scoped_env.h"

using namespace acb::alloc;

using acb_test::ScopedEnv;

TEST_CASE("make_cuda_driver names a missing library", "[driver][cuda]") {
  ScopedEnv library("ACB_CUDA_LIBRARY", "/nonexistent/libcuda.so.1");
  try {
    make_cuda_driver();
    FAIL("loaded a library that does not exist");
  } catch (const DriverError& e) {
    CHECK(e.call() == "dlopen");
    CHECK_THAT_TEXT(e.what(), "/nonexistent/libcuda.so.1");
  }
}

TEST_CASE("make_cuda_driver names a missing entry point", "[driver][cuda]") {
  ScopedEnv library("ACB_CUDA_LIBRARY", "libc.so.6");  // loads, but has no cuInit
  try {
    make_cuda_driver();
    FAIL("libc passed for a CUDA driver");
  } catch (const DriverError& e) {
    CHECK(e.call() == "dlsym");
    CHECK_THAT_TEXT(e.what(), "dlsym(libc.so.6, cuInit)");
  }
}

TEST_CASE("make_cuda_driver fails cleanly when there is no device", "[driver][cuda]") {
  ScopedEnv library("ACB_CUDA_LIBRARY", ACB_FAKE_LIBCUDA);
  ScopedEnv devices("FAKE_CUDA_DEVICES", "0");
  try {
    make_cuda_driver();
    FAIL("made a driver with no device");
  } catch (const DriverError& e) {
    CHECK(e.code() == ENODEV);
    CHECK_THAT_TEXT(e.what(), "no CUDA device");
  }
}

TEST_CASE("a [gpu] case skips only without libcuda or a device, and fails on any other driver error",
          "[driver][cuda]") {
  using acb::alloc::testing::cuda_driver_unless_no_gpu;
  std::string why;
  {
    ScopedEnv library("ACB_CUDA_LIBRARY", "/nonexistent/libcuda.so.1");
    CHECK(cuda_driver_unless_no_gpu(why) == nullptr);
    CHECK_THAT_TEXT(why, "no libcuda: dlopen(/nonexistent/libcuda.so.1)");
  }
  {
    ScopedEnv library("ACB_CUDA_LIBRARY", ACB_FAKE_LIBCUDA);
    ScopedEnv devices("FAKE_CUDA_DEVICES", "0");
    why.clear();
    CHECK(cuda_driver_unless_no_gpu(why) == nullptr);
    CHECK_THAT_TEXT(why, "no device: ");
  }
  {
    // A library that loads but is not a usable driver is an error of the
    // CUDA path: the case must fail, never pass as "no GPU".
    ScopedEnv library("ACB_CUDA_LIBRARY", "libc.so.6");
    why.clear();
    CHECK_THROWS_AS(cuda_driver_unless_no_gpu(why), DriverError);
    CHECK(why.empty());
  }
  {
    ScopedEnv library("ACB_CUDA_LIBRARY", ACB_FAKE_LIBCUDA);
    why.clear();
    auto driver = cuda_driver_unless_no_gpu(why);
    CHECK(driver != nullptr);
    CHECK(why.empty());
  }
  CHECK(acb::alloc::testing::no_gpu_reason(DriverError("cuInit", 100, "cuInit failed")) ==
        "no device: cuInit failed");
  CHECK(acb::alloc::testing::no_gpu_reason(DriverError("cuInit", 304, "cuInit failed")).empty());
}

TEST_CASE("driver conformance: cuda driver over a fake libcuda", "[driver][cuda]") {
  ScopedEnv library("ACB_CUDA_LIBRARY", ACB_FAKE_LIBCUDA);
  auto driver = make_cuda_driver();
  CHECK(driver->name() == "cuda");
  CHECK(driver->device_count() == 1);
  acb::alloc::testing::run_conformance(*driver, /*exact_memory_info=*/true);

  SECTION("errors carry CUDA's text, the call and the arguments") {
    try {
      driver->create(std::size_t{128} << 20, 0);
      FAIL("the fake device's 64 MiB held 128 MiB");
    } catch (const DriverError& e) {
      CHECK(e.out_of_memory());
      CHECK(e.call() == "cuMemCreate");
      CHECK_THAT_TEXT(e.what(), "cuMemCreate(size=134217728, device=0) failed: out of memory");
      CHECK_THAT_TEXT(e.what(), "CUDA_ERROR_OUT_OF_MEMORY");
      CHECK_THAT_TEXT(e.what(), "total=67108864");
    }
    CHECK_THROWS_AS(driver->create(std::size_t{2} << 20, 3), DriverError);  // no such device
  }
}

namespace {

/// The fake libcuda's test controls (fake_libcuda.cpp), from the copy the driver loaded.
struct FakeCuda {
  FakeCuda() : handle(::dlopen(ACB_FAKE_LIBCUDA, RTLD_NOW | RTLD_NOLOAD)) {
    REQUIRE(handle != nullptr);
    pause_stream = reinterpret_cast<void (*)(void*, int)>(::dlsym(handle, "fake_cuda_pause_stream"));
    primary_context = reinterpret_cast<void* (*)(int)>(::dlsym(handle, "fake_cuda_primary_context"));
    host_alloc_context = reinterpret_cast<void* (*)()>(::dlsym(handle, "fake_cuda_host_alloc_context"));
    copy_context = reinterpret_cast<void* (*)()>(::dlsym(handle, "fake_cuda_copy_context"));
    set_current = reinterpret_cast<int (*)(void*)>(::dlsym(handle, "cuCtxSetCurrent"));
    get_current = reinterpret_cast<int (*)(void**)>(::dlsym(handle, "cuCtxGetCurrent"));
    retained = reinterpret_cast<int (*)(int)>(::dlsym(handle, "fake_cuda_primary_ctx_retained"));
    REQUIRE((pause_stream && primary_context && host_alloc_context && copy_context && set_current &&
             get_current && retained));
  }
  ~FakeCuda() { ::dlclose(handle); }
  void* current() const {
    void* context = nullptr;
    get_current(&context);
    return context;
  }
  void* handle;
  void (*pause_stream)(void*, int) = nullptr;
  void* (*primary_context)(int) = nullptr;
  void* (*host_alloc_context)() = nullptr;
  void* (*copy_context)() = nullptr;
  int (*set_current)(void*) = nullptr;
  int (*get_current)(void**) = nullptr;
  int (*retained)(int) = nullptr;  ///< retains of a device's primary context not yet released
};

}  // namespace

TEST_CASE("the cuda driver refuses a device without virtual memory management", "[driver][cuda]") {
  ScopedEnv library("ACB_CUDA_LIBRARY", ACB_FAKE_LIBCUDA);
  ScopedEnv no_vmm("FAKE_CUDA_NO_VMM", "1");
  try {
    (void)make_cuda_driver();
    FAIL("a device without VMM was accepted");
  } catch (const DriverError& e) {
    CHECK_THAT_TEXT(e.what(), "CUDA device 0 does not support virtual memory management");
    CHECK_THAT_TEXT(e.what(), "CUDA_VISIBLE_DEVICES");
  }
}

TEST_CASE("the cuda driver leaves the thread's context as it found it", "[driver][cuda]") {
  ScopedEnv library("ACB_CUDA_LIBRARY", ACB_FAKE_LIBCUDA);
  ScopedEnv devices("FAKE_CUDA_DEVICES", "2");
  auto driver = make_cuda_driver();
  FakeCuda fake;
  REQUIRE(fake.primary_context(0) != fake.primary_context(1));
  // torch works on device 1 on this thread; acb's calls for device 0 must not move it.
  fake.set_current(fake.primary_context(1));
  (void)driver->memory_info(0);
  CHECK(fake.current() == fake.primary_context(1));
  StreamHandle stream = driver->create_stream(0);
  CHECK(fake.current() == fake.primary_context(1));
  driver->destroy_stream(stream);
  fake.set_current(nullptr);  // a thread without a context keeps none
  (void)driver->memory_info(0);
  CHECK(fake.current() == nullptr);
  CHECK_THROWS_AS(driver->memory_info(5), DriverError);
  CHECK(fake.current() == nullptr);

  SECTION("pinned host memory is allocated in the context of the device it backs") {
    void* on1 = driver->host_alloc(4096, 1);
    CHECK(fake.host_alloc_context() == fake.primary_context(1));
    void* on0 = driver->host_alloc(4096, 0);
    CHECK(fake.host_alloc_context() == fake.primary_context(0));
    CHECK(fake.current() == nullptr);
    driver->host_free(on0, 4096);
    driver->host_free(on1, 4096);
  }
  SECTION("a copy on the null stream runs in the context of the memory it copies") {
    const std::size_t granule = driver->granularity(1);
    DevicePtr base = driver->reserve(granule, 1);
    PhysicalHandle handle = driver->create(granule, 1);
    driver->map(base, granule, handle, 1);
    std::vector<unsigned char> host(4096, 7);
    fake.set_current(fake.primary_context(0));
    driver->copy_to_device_async(base, host.data(), host.size(), nullptr);
    CHECK(fake.copy_context() == fake.primary_context(1));
    CHECK(fake.current() == fake.primary_context(0));
    driver->synchronize_stream(nullptr);
    driver->unmap(base, granule);
    driver->release(handle);
    driver->free_reservation(base, granule);
    fake.set_current(nullptr);
  }
}

TEST_CASE("record_stream on the cuda driver: a freed block waits for the other stream's event",
          "[driver][cuda]") {
  ScopedEnv library("ACB_CUDA_LIBRARY", ACB_FAKE_LIBCUDA);
  auto driver = make_cuda_driver();
  FakeCuda fake;
  const std::size_t free_before = driver->memory_info(0).free_bytes;
  {
    ArenaOptions options;
    options.va_reserve_bytes = std::size_t{64} << 20;
    Arena arena(*driver, 0, options);
    StreamHandle main = driver->create_stream(0);
    StreamHandle side = driver->create_stream(0);
    void* p = arena.malloc(std::size_t{2} << 20, main);
    arena.record_stream(p, side);
    fake.pause_stream(side, 1);  // a long kernel on the side stream still reads p
    arena.free(p, main);
    void* q = arena.malloc(std::size_t{2} << 20, main);
    CHECK(q != p);
    arena.validate();
    fake.pause_stream(side, 0);
    void* r = arena.malloc(std::size_t{2} << 20, main);
    CHECK(r == p);
    arena.free(q, main);
    arena.free(r, main);
    arena.empty_cache();
    arena.validate();
    CHECK(arena.stats().reserved_bytes == 0);
    CHECK(driver->memory_info(0).free_bytes == free_before);
    driver->destroy_stream(main);
    driver->destroy_stream(side);
  }
}

namespace {

/// Copy calls the fake libcuda at `library` has run: single copies, batches, ranges in batches.
struct CopyCounts {
  unsigned long copies = 0, batches = 0, ranges = 0;
};
CopyCounts fake_copy_counts(const char* library) {
  void* handle = ::dlopen(library, RTLD_NOW | RTLD_NOLOAD);
  REQUIRE(handle != nullptr);
  auto counts = reinterpret_cast<void (*)(unsigned long*, unsigned long*, unsigned long*)>(
      ::dlsym(handle, "fake_cuda_copy_counts"));
  REQUIRE(counts != nullptr);
  CopyCounts out;
  counts(&out.copies, &out.batches, &out.ranges);
  ::dlclose(handle);
  return out;
}

}  // namespace

TEST_CASE("copy_batch_async is one cuMemcpyBatchAsync where libcuda has it, else one copy per range",
          "[driver][cuda][coalesce]") {
  const bool batch = GENERATE(true, false);
  const char* path = batch ? ACB_FAKE_LIBCUDA : ACB_FAKE_LIBCUDA_NOBATCH;
  INFO("library " << path);
  ScopedEnv library("ACB_CUDA_LIBRARY", path);
  auto driver = make_cuda_driver();
  const std::size_t bytes = std::size_t{2} << 20;
  const PhysicalHandle handle = driver->create(bytes, 0);
  const DevicePtr base = driver->reserve(bytes, 0);
  driver->map(base, bytes, handle, 0);
  auto* host = static_cast<unsigned char*>(driver->host_alloc(3 * 4096, 0));
  for (std::size_t i = 0; i < 3 * 4096; ++i) host[i] = static_cast<unsigned char>(i * 7 + 1);
  StreamHandle stream = driver->create_stream(0);
  const CopyRange ranges[] = {{base, host, 4096},
                              {base + 65536, host + 4096, 4096},
                              {base + 8192, host + 8192, 4096}};

  const CopyCounts before = fake_copy_counts(path);
  driver->copy_batch_async(ranges, 3, CopyDirection::to_device, stream);
  std::memset(host, 0, 3 * 4096);
  driver->copy_batch_async(ranges, 3, CopyDirection::to_host, stream);
  driver->synchronize_stream(stream);
  const CopyCounts after = fake_copy_counts(path);
  for (std::size_t i = 0; i < 3 * 4096; ++i)
    REQUIRE(host[i] == static_cast<unsigned char>(i * 7 + 1));
  CHECK(after.batches - before.batches == (batch ? 2u : 0u));
  CHECK(after.ranges - before.ranges == (batch ? 6u : 0u));
  CHECK(after.copies - before.copies == (batch ? 0u : 6u));

  // The null stream may not take a batch: one copy per range there.
  driver->copy_batch_async(ranges, 3, CopyDirection::to_host, nullptr);
  driver->synchronize_stream(nullptr);
  const CopyCounts null_stream = fake_copy_counts(path);
  CHECK(null_stream.batches == after.batches);
  CHECK(null_stream.copies - after.copies == 3);

  driver->destroy_stream(stream);
  driver->host_free(host, 3 * 4096);
  driver->unmap(base, bytes);
  driver->free_reservation(base, bytes);
  driver->release(handle);
}

namespace {

/// Small blocks with large free gaps between them (several copies per
/// segment), offloaded and restored through `driver`; returns the fake's
/// copy counts over both, after checking every byte came back.
CopyCounts offload_and_restore_scattered(Driver& driver, const char* library) {
  ArenaOptions options;
  options.va_reserve_bytes = std::size_t{64} << 20;
  Arena arena(driver, 0, options);
  std::vector<void*> live;
  std::vector<void*> gaps;
  for (std::uint64_t i = 0; i < 6; ++i) {
    live.push_back(arena.malloc(4096, nullptr));
    gaps.push_back(arena.malloc(128 * 1024, nullptr));  // more than copy_merge_gap_bytes
  }
  for (std::size_t i = 0; i < live.size(); ++i)
    acb::alloc::testing::write_pattern(driver, live[i], 4096, 70 + i);
  for (void* g : gaps) arena.free(g, nullptr);
  const CopyCounts before = fake_copy_counts(library);
  arena.offload();
  arena.restore_all();
  const CopyCounts after = fake_copy_counts(library);
  for (std::size_t i = 0; i < live.size(); ++i)
    CHECK(acb::alloc::testing::has_pattern(driver, live[i], 4096, 70 + i));
  for (void* p : live) arena.free(p, nullptr);
  arena.validate();
  return {after.copies - before.copies, after.batches - before.batches,
          after.ranges - before.ranges};
}

}  // namespace

TEST_CASE("offload and restore batch their copies where libcuda has cuMemcpyBatchAsync",
          "[driver][cuda][coalesce]") {
  SECTION("a CUDA 13 libcuda: one cuMemcpyBatchAsync per chunk, no single copies") {
    ScopedEnv library("ACB_CUDA_LIBRARY", ACB_FAKE_LIBCUDA);
    auto driver = make_cuda_driver();
    CopyCounts counts = offload_and_restore_scattered(*driver, ACB_FAKE_LIBCUDA);
    CHECK(counts.copies == 0);
    CHECK(counts.batches == 2);  // one segment: one batch out, one back
    CHECK(counts.ranges == 2 * 6);
  }
  SECTION("a libcuda without it: one copy per range") {
    ScopedEnv library("ACB_CUDA_LIBRARY", ACB_FAKE_LIBCUDA_NOBATCH);
    auto driver = make_cuda_driver();
    CopyCounts counts = offload_and_restore_scattered(*driver, ACB_FAKE_LIBCUDA_NOBATCH);
    CHECK(counts.batches == 0);
    CHECK(counts.copies == 2 * 6);
  }
}

TEST_CASE("the cuda driver retains a device's primary context only when it uses that device", "[driver][cuda]") {
  ScopedEnv library("ACB_CUDA_LIBRARY", ACB_FAKE_LIBCUDA);
  ScopedEnv devices("FAKE_CUDA_DEVICES", "3");
  {
    auto driver = make_cuda_driver();
    REQUIRE(driver->device_count() == 3);
    FakeCuda fake;
    for (int d = 0; d < 3; ++d) CHECK(fake.retained(d) == 0);  // counting devices makes no context

    const std::size_t granule = driver->granularity(1);
    CHECK(granule == std::size_t{2} << 20);
    const DevicePtr base = driver->reserve(4 * granule, 1);
    const PhysicalHandle handle = driver->create(granule, 1);
    driver->map(base, granule, handle, 1);
    CHECK(driver->memory_info(1).total_bytes == std::size_t{64} << 20);
    driver->unmap(base, granule);
    driver->release(handle);
    driver->free_reservation(base, 4 * granule);
    CHECK(fake.retained(0) == 0);
    CHECK(fake.retained(1) == 1);  // once, however many calls used it
    CHECK(fake.retained(2) == 0);
  }
  FakeCuda fake;
  for (int d = 0; d < 3; ++d) CHECK(fake.retained(d) == 0);  // the driver released what it retained
}

namespace {

// cuda.h's CUmemAllocationHandleType values (this test does not include cuda.h).
constexpr int kHandleTypeNone = 0x0;
constexpr int kHandleTypePosixFd = 0x1;

/// What the fake libcuda was last asked by cuMemCreate and cuMemSetAccess.
struct FakeRequests {
  FakeRequests() : handle(::dlopen(ACB_FAKE_LIBCUDA, RTLD_NOW | RTLD_NOLOAD)) {
    REQUIRE(handle != nullptr);
    last_create = reinterpret_cast<void (*)(int*, int*)>(::dlsym(handle, "fake_cuda_last_create"));
    last_access = reinterpret_cast<int (*)(int*, int)>(::dlsym(handle, "fake_cuda_last_access"));
    REQUIRE((last_create && last_access));
  }
  ~FakeRequests() { ::dlclose(handle); }
  std::vector<int> access() const {
    std::vector<int> ids(64);
    ids.resize(static_cast<std::size_t>(last_access(ids.data(), static_cast<int>(ids.size()))));
    return ids;
  }
  void* handle;
  void (*last_create)(int*, int*) = nullptr;
  int (*last_access)(int*, int) = nullptr;
};

/// Maps one granule on `device`, writes and reads it back, and unmaps it.
void map_one(Driver& driver, int device) {
  const std::size_t granule = driver.granularity(device);
  DevicePtr base = driver.reserve(granule, device);
  PhysicalHandle handle = driver.create(granule, device);
  driver.map(base, granule, handle, device);
  std::vector<unsigned char> out(4096, 0x5a), in(4096, 0);
  driver.copy_to_device_async(base, out.data(), out.size(), nullptr);
  driver.copy_to_host_async(in.data(), base, in.size(), nullptr);
  driver.synchronize_stream(nullptr);
  CHECK(in == out);
  driver.unmap(base, granule);
  driver.release(handle);
  driver.free_reservation(base, granule);
}

}  // namespace

TEST_CASE("the cuda driver maps memory for every visible device that can access it as a peer", "[driver][cuda]") {
  ScopedEnv library("ACB_CUDA_LIBRARY", ACB_FAKE_LIBCUDA);
  SECTION("three peer-capable devices: each mapping names its owner first, then the other two") {
    ScopedEnv devices("FAKE_CUDA_DEVICES", "3");
    ScopedEnv peers("FAKE_CUDA_PEERS", "1");
    auto driver = make_cuda_driver();
    FakeRequests fake;
    map_one(*driver, 1);
    CHECK(fake.access() == std::vector<int>{1, 0, 2});
    map_one(*driver, 0);
    CHECK(fake.access() == std::vector<int>{0, 1, 2});
  }
  SECTION("devices that cannot reach each other: the owner only") {
    ScopedEnv devices("FAKE_CUDA_DEVICES", "2");
    auto driver = make_cuda_driver();
    FakeRequests fake;
    map_one(*driver, 1);
    CHECK(fake.access() == std::vector<int>{1});
  }
}

TEST_CASE("the cuda driver asks for GPUDirect RDMA and an exportable handle where the device has them",
          "[driver][cuda]") {
  ScopedEnv library("ACB_CUDA_LIBRARY", ACB_FAKE_LIBCUDA);
  int rdma = -1, handle_types = -1;
  SECTION("supported: both asked for") {
    ScopedEnv with_rdma("FAKE_CUDA_RDMA", "1");
    ScopedEnv exportable("FAKE_CUDA_EXPORTABLE", "1");
    auto driver = make_cuda_driver();
    FakeRequests fake;
    map_one(*driver, 0);
    fake.last_create(&rdma, &handle_types);
    CHECK(rdma == 1);
    CHECK(handle_types == kHandleTypePosixFd);
  }
  SECTION("not reported: plain memory") {
    auto driver = make_cuda_driver();
    FakeRequests fake;
    map_one(*driver, 0);
    fake.last_create(&rdma, &handle_types);
    CHECK(rdma == 0);
    CHECK(handle_types == kHandleTypeNone);
  }
  SECTION("reported but refused by cuMemCreate: plain memory, and no further tries") {
    ScopedEnv with_rdma("FAKE_CUDA_RDMA", "1");
    ScopedEnv exportable("FAKE_CUDA_EXPORTABLE", "1");
    ScopedEnv refuse("FAKE_CUDA_REFUSE_EXTRAS", "1");
    auto driver = make_cuda_driver();
    FakeRequests fake;
    map_one(*driver, 0);  // the first create is retried without them
    fake.last_create(&rdma, &handle_types);
    CHECK(rdma == 0);
    CHECK(handle_types == kHandleTypeNone);
    map_one(*driver, 0);
    fake.last_create(&rdma, &handle_types);
    CHECK(rdma == 0);
  }
}

TEST_CASE("without a context of its own current, the cuda driver works on the one device it uses, not on 0",
          "[driver][cuda]") {
  ScopedEnv library("ACB_CUDA_LIBRARY", ACB_FAKE_LIBCUDA);
  ScopedEnv devices("FAKE_CUDA_DEVICES", "3");
  auto driver = make_cuda_driver();
  FakeCuda fake;
  fake.set_current(nullptr);
  const std::size_t granule = driver->granularity(2);  // the process's GPU is device 2
  DevicePtr base = driver->reserve(granule, 2);
  CHECK(fake.current() == nullptr);
  // The null stream with no memory to go by (a synchronisation, an event).
  driver->synchronize_stream(nullptr);
  EventHandle event = driver->create_event(2);
  driver->record_event(event, nullptr);
  driver->synchronize_event(event);
  driver->destroy_event(event);
  CHECK(fake.retained(0) == 0);  // device 0 never got a context
  CHECK(fake.retained(2) == 1);
  driver->free_reservation(base, granule);
}
