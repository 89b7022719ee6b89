// Helpers shared by the driver tests: a uniquely named emulated device whose
// ledger file is removed afterwards, and the CUDA driver when a GPU exists.
#pragma once

#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <memory>
#include <string>

#include "alloc/driver.h"
#include "alloc/emulated_driver.h"

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

}  // namespace acb::alloc::testing

// CHECK that `text` contains `part`, printing both when it does not.
#define CHECK_THAT_TEXT(text, part)                                        \
  do {                                                                     \
    const std::string acb_text_ = (text);                                  \
    const std::string acb_part_ = (part);                                  \
    INFO("text: " << acb_text_ << "\nexpected to contain: " << acb_part_); \
    CHECK(acb::alloc::testing::contains(acb_text_, acb_part_));            \
  } while (false)
