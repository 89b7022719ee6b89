// Helpers shared by the driver tests: a uniquely named emulated device whose
// ledger file is removed afterwards, and the CUDA driver when a GPU exists.
#pragma once

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <memory>
#include <string>

#include "alloc/driver.h"
#include "alloc/emulated_driver.h"
#include "acb_catch.hpp"

namespace acb::alloc::testing {

/// A fresh emulated device name (per process and call) so parallel test runs
/// never share a ledger by accident.
inline std::string unique_device_name(const std::string& tag) {
  static std::atomic<int> counter{0};
  return "acbtest-" + tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
}

/// Removes /dev/shm/acb-emulated-<name> when the test is over.
struct LedgerFileRemover {
  std::string name;
  ~LedgerFileRemover() { ::unlink(("/dev/shm/acb-emulated-" + name).c_str()); }
};

inline EmulatedDeviceOptions small_device(const std::string& tag,
                                          std::size_t capacity_bytes = 64u << 20) {
  EmulatedDeviceOptions options;
  options.name = unique_device_name(tag);
  options.capacity_bytes = capacity_bytes;
  return options;
}

/// True when `text` contains `part` (portable across Catch2 v2 and v3 matchers).
inline bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

/// Why a failure of make_cuda_driver() means that this machine has no GPU to
/// test on: no libcuda to load (or only CUDA's stub of it), or a driver that
/// finds no device. Empty for every other failure (a libcuda without an entry
/// point acb needs, cuInit failing for another reason, ...): those are errors
/// of the CUDA path, and a [gpu] case that meets one must fail, not skip.
inline std::string no_gpu_reason(const DriverError& error) {
  constexpr int kCudaErrorNoDevice = 100;   // CUDA_ERROR_NO_DEVICE
  constexpr int kCudaErrorStubLibrary = 34;  // CUDA_ERROR_STUB_LIBRARY
  if (error.call() == "dlopen") return std::string("no libcuda: ") + error.what();
  if (error.call() == "cuInit" && error.code() == kCudaErrorStubLibrary)
    return std::string("no libcuda (only CUDA's stub): ") + error.what();
  if ((error.call() == "cuInit" && error.code() == kCudaErrorNoDevice) ||
      (error.call() == "cuDeviceGetCount" && error.code() == ENODEV))
    return std::string("no device: ") + error.what();
  return {};
}

/// The real CUDA driver, or null with `why` set when no_gpu_reason() says
/// there is no GPU here. Any other DriverError propagates.
inline std::unique_ptr<Driver> cuda_driver_unless_no_gpu(std::string& why) {
  try {
    return make_cuda_driver();
  } catch (const DriverError& error) {
    why = no_gpu_reason(error);
    if (why.empty()) throw;
    return nullptr;
  }
}

}  // namespace acb::alloc::testing

/// In a [gpu] case: declares `var`, the real CUDA driver, or skips the case
/// when there is no libcuda or no device (a failure under ACB_REQUIRE_GPU=1).
/// Any other failure to open the driver fails the case.
#define ACB_CUDA_DRIVER_OR_SKIP(var)                                                     \
  std::string var##_no_gpu_;                                                             \
  std::unique_ptr<acb::alloc::Driver> var =                                              \
      acb::alloc::testing::cuda_driver_unless_no_gpu(var##_no_gpu_);                     \
  if (!var) ACB_SKIP_GPU_CASE(var##_no_gpu_)

// CHECK that `text` contains `part`, printing both when it does not.
#define CHECK_THAT_TEXT(text, part)                                        \
  do {                                                                     \
    const std::string acb_text_ = (text);                                  \
    const std::string acb_part_ = (part);                                  \
    INFO("text: " << acb_text_ << "\nexpected to contain: " << acb_part_); \
    CHECK(acb::alloc::testing::contains(acb_text_, acb_part_));            \
  } while (false)
