// The CUDA driver without a GPU: its loader's failures, and the conformance
// scenarios run through CudaDriver against fake_libcuda.cpp (a host-memory
// stand-in for libcuda.so.1 that exports the names cuda.h maps to).
#include <cstdlib>
#include <string>

#include "acb_catch.hpp"
#include "alloc/driver.h"
#include "driver_conformance.h"
#include "driver_test_support.h"

using namespace acb::alloc;

namespace {

/// Sets an environment variable for one scope, restoring the old value.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old, had_ = true;
    ::setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (had_)
      ::setenv(name_, old_.c_str(), 1);
    else
      ::unsetenv(name_);
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::string old_;
  bool had_ = false;
};

}  // namespace

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
