#include "alloc/process_arenas.h"

#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <stdexcept>

#include "common/byte_size.h"

namespace acb::alloc {
namespace {

struct Registry {
  std::mutex mutex;
  std::unique_ptr<Driver> driver;
  std::array<std::atomic<Arena*>, detail::kMaxProcessDevices> arenas{};
  std::array<std::unique_ptr<Arena>, detail::kMaxProcessDevices> owned;
};

// Deliberately never destroyed (see the header); reachable, so not a leak.
Registry* const registry = new Registry;

Driver& driver_locked() {
  if (!registry->driver) {
    const char* emulated = std::getenv("ACB_EMULATED_DEVICE");
    if (emulated != nullptr && *emulated != '\0') {
      registry->driver = make_emulated_driver(parse_emulated_device(emulated));
    } else {
      registry->driver = make_cuda_driver();
    }
  }
  return *registry->driver;
}

std::size_t env_size(const char* name, std::size_t fallback) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return fallback;
  try {
    return static_cast<std::size_t>(parse_byte_size(value));
  } catch (const std::invalid_argument& error) {
    throw std::invalid_argument(std::string(name) + ": " + error.what());
  }
}

// pthread_atfork handlers: every existing arena is held from before the fork
// until after it, in device order (released in reverse).
void arenas_before_fork() {
  for (int d = 0; d < detail::kMaxProcessDevices; ++d)
    if (Arena* arena = detail::existing_process_arena(d)) arena->before_fork();
}

void arenas_after_fork_in_parent() {
  for (int d = detail::kMaxProcessDevices - 1; d >= 0; --d)
    if (Arena* arena = detail::existing_process_arena(d)) arena->after_fork_in_parent();
}

void arenas_after_fork_in_child() {
  for (int d = detail::kMaxProcessDevices - 1; d >= 0; --d) {
    Arena* arena = detail::existing_process_arena(d);
    if (arena == nullptr) continue;
    try {
      arena->after_fork_in_child();
    } catch (const std::exception& e) {
      // Going on would let this child write into its parent's memory.
      std::fprintf(stderr, "acb: forked child %d cannot get its own copy of device %d's memory: %s\n",
                   static_cast<int>(::getpid()), d, e.what());
      std::abort();
    }
  }
}

}  // namespace

std::size_t host_ram_bytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES);
  const long page_bytes = ::sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page_bytes <= 0)
    throw std::runtime_error("sysconf(_SC_PHYS_PAGES) cannot tell the host's memory: set "
                             "ACB_HOST_BACKUP_LIMIT in bytes (e.g. 16GiB)");
  return static_cast<std::size_t>(pages) * static_cast<std::size_t>(page_bytes);
}

std::size_t parse_host_backup_limit(const std::string& text, std::size_t ram_bytes) {
  if (text.empty() || text.back() != '%') return static_cast<std::size_t>(parse_byte_size(text));
  const std::string number = text.substr(0, text.size() - 1);
  std::size_t percent = 0;
  if (number.empty() || number.size() > 3 ||
      !std::all_of(number.begin(), number.end(),
                   [](char c) { return std::isdigit(static_cast<unsigned char>(c)) != 0; }) ||
      (percent = std::stoul(number)) == 0 || percent > 100)
    throw std::invalid_argument("not a share of host RAM: '" + text +
                                "' (expected 1% to 100%, e.g. 50%, or a byte size such as 16GiB)");
  return ram_bytes / 100 * percent;
}

ArenaOptions arena_options_from_env() {
  ArenaOptions options;
  const char* limit = std::getenv("ACB_HOST_BACKUP_LIMIT");
  const std::string limit_text =
      limit != nullptr && *limit != '\0' ? limit : kDefaultHostBackupLimit;
  try {
    options.host_backup_limit_bytes =
        parse_host_backup_limit(limit_text, limit_text.back() == '%' ? host_ram_bytes() : 0);
  } catch (const std::invalid_argument& error) {
    throw std::invalid_argument(std::string("ACB_HOST_BACKUP_LIMIT: ") + error.what());
  }
  options.va_reserve_bytes = env_size("ACB_VA_RESERVE", options.va_reserve_bytes);
  options.copy_chunk_bytes = env_size("ACB_COPY_CHUNK", options.copy_chunk_bytes);
  return options;
}

bool process_driver_opened() {
  std::lock_guard<std::mutex> lock(registry->mutex);
  return registry->driver != nullptr;
}

Arena& process_arena(int device) {
  if (device >= 0 && device < detail::kMaxProcessDevices) {
    if (Arena* arena =
            registry->arenas[static_cast<std::size_t>(device)].load(std::memory_order_acquire))
      return *arena;
  }
  std::lock_guard<std::mutex> lock(registry->mutex);
  Driver& driver = driver_locked();
  if (device < 0 || device >= driver.device_count() || device >= detail::kMaxProcessDevices) {
    throw std::out_of_range("acb: no device " + std::to_string(device) + " on the " +
                            driver.name() + " driver (it has " +
                            std::to_string(driver.device_count()) + ")");
  }
  auto index = static_cast<std::size_t>(device);
  if (Arena* arena = registry->arenas[index].load(std::memory_order_acquire)) return *arena;
  static const int atfork_registered =
      ::pthread_atfork(&arenas_before_fork, &arenas_after_fork_in_parent, &arenas_after_fork_in_child);
  (void)atfork_registered;
  registry->owned[index] = std::make_unique<Arena>(driver, device, arena_options_from_env());
  registry->arenas[index].store(registry->owned[index].get(), std::memory_order_release);
  return *registry->owned[index];
}

Arena* detail::existing_process_arena(int device) {
  if (device < 0 || device >= kMaxProcessDevices) return nullptr;
  return registry->arenas[static_cast<std::size_t>(device)].load(std::memory_order_acquire);
}

Arena* process_arena_owning(const void* ptr) {
  for (int d = 0; d < detail::kMaxProcessDevices; ++d) {
    Arena* arena = detail::existing_process_arena(d);
    if (arena != nullptr && arena->owns(ptr)) return arena;
  }
  return nullptr;
}

void shutdown_process_arenas() {
  std::lock_guard<std::mutex> lock(registry->mutex);
  for (auto& slot : registry->arenas) slot.store(nullptr, std::memory_order_release);
  for (auto& arena : registry->owned) arena.reset();
  registry->driver.reset();
}

}  // namespace acb::alloc
