// The driver conformance suite instantiated for the emulated device and, where
// this machine has a GPU, for the real CUDA driver; without libcuda or a
// device the CUDA case skips (fails under ACB_REQUIRE_GPU=1), and any other
// failure to open the driver fails it. (test_driver_cuda.cpp also runs it
// through the CUDA driver against a fake libcuda.)
#include <memory>

#include "acb_catch.hpp"
#include "alloc/driver.h"
#include "driver_conformance.h"
#include "driver_test_support.h"

using namespace acb::alloc;
using acb::alloc::testing::LedgerFileRemover;
using acb::alloc::testing::run_conformance;
using acb::alloc::testing::small_device;

TEST_CASE("driver conformance: emulated", "[driver][emulated]") {
  const EmulatedDeviceOptions options = small_device("conf");
  LedgerFileRemover remover{options.name};
  auto driver = make_emulated_driver(options);
  CHECK(driver->name() == "emulated");
  run_conformance(*driver, /*exact_memory_info=*/true);
  CHECK(driver->memory_info(0).free_bytes == options.capacity_bytes);  // nothing leaked
}

TEST_CASE("driver conformance: cuda", "[driver][gpu]") {
  ACB_CUDA_DRIVER_OR_SKIP(driver);
  CHECK(driver->name() == "cuda");
  run_conformance(*driver, /*exact_memory_info=*/false);
}
