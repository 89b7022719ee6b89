// Helpers shared by the arena tests: an emulated device with its own arena,
// known data patterns written and checked through the driver's copies (so
// the same scenarios run on a GPU), and a forked child that must fault.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "alloc/arena.h"
#include "alloc/emulated_driver.h"
#include "driver_test_support.h"

namespace acb::alloc::testing {

inline constexpr std::size_t kMiB = std::size_t{1} << 20;

/// An emulated device of `capacity_bytes` with a uniquely named ledger that is removed afterwards.
struct EmulatedDevice {
  explicit EmulatedDevice(const std::string& tag, std::size_t capacity_bytes = 64 * kMiB)
      : options(small_device(tag, capacity_bytes)), remover{options.name}, driver(options) {}
  EmulatedDeviceOptions options;
  LedgerFileRemover remover;
  EmulatedDriver driver;
};

/// The 64-bit word at index `i` of pattern `seed`.
inline std::uint64_t pattern_word(std::uint64_t seed, std::size_t i) {
  std::uint64_t x = seed * 0x9E3779B97F4A7C15ULL + i * 0xBF58476D1CE4E5B9ULL + 1;
  x ^= x >> 31;
  return x;
}

inline std::vector<std::uint64_t> pattern(std::uint64_t seed, std::size_t bytes) {
  std::vector<std::uint64_t> words((bytes + 7) / 8);
  for (std::size_t i = 0; i < words.size(); ++i) words[i] = pattern_word(seed, i);
  return words;
}

/// Writes pattern `seed` over [ptr, ptr + bytes) with a device copy.
inline void write_pattern(Driver& driver, void* ptr, std::size_t bytes, std::uint64_t seed) {
  std::vector<std::uint64_t> words = pattern(seed, bytes);
  driver.copy_to_device_async(reinterpret_cast<DevicePtr>(ptr), words.data(), bytes, nullptr);
  driver.synchronize_stream(nullptr);
}

/// True when [ptr, ptr + bytes) holds pattern `seed` (read with a device copy).
inline bool has_pattern(Driver& driver, const void* ptr, std::size_t bytes, std::uint64_t seed) {
  std::vector<std::uint64_t> got((bytes + 7) / 8, 0);
  driver.copy_to_host_async(got.data(), reinterpret_cast<DevicePtr>(ptr), bytes, nullptr);
  driver.synchronize_stream(nullptr);
  std::vector<std::uint64_t> want = pattern(seed, bytes);
  return std::memcmp(got.data(), want.data(), bytes) == 0;
}

/// Runs `touch` in a forked child and reports whether the child faulted
/// (died of a signal, or exited non-zero as ASan does after reporting a
/// SEGV). A child that survives the touch exits 0.
template <class Fn>
bool child_faults(Fn&& touch) {
  pid_t pid = ::fork();
  if (pid == 0) {
    // Let the fault kill the child even where a sanitizer installed a handler.
    std::signal(SIGSEGV, SIG_DFL);
    std::signal(SIGBUS, SIG_DFL);
    touch();
    ::_exit(0);
  }
  int status = 0;
  if (pid < 0 || ::waitpid(pid, &status, 0) != pid) return false;
  return WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) != 0);
}

}  // namespace acb::alloc::testing
