// Placeholder until the CUDA driver lands: make_cuda_driver always reports no GPU.
#include <cerrno>

#include "alloc/driver.h"

namespace acb::alloc {

std::unique_ptr<Driver> make_cuda_driver() {
  throw DriverError("make_cuda_driver", ENODEV, "make_cuda_driver() failed: the CUDA driver is not built yet");
}

}  // namespace acb::alloc
