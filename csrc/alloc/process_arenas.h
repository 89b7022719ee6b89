// The process registry of arenas: one Arena per device, created on first use,
// shared by everything in the process (torch's pluggable allocator through
// the C ABI, the torch extension acb._C, the client's offload path). It lives
// only in libacb_alloc.so so that there is exactly one per process.
//
// The driver comes from the environment: ACB_EMULATED_DEVICE set ->
// the emulated device it names ("name[:capacity]"); otherwise the CUDA driver.
// Arena options come from the environment too:
//   ACB_HOST_BACKUP_LIMIT   bound on pinned host backup bytes: a share of host RAM ("50%", the
//                           default, kDefaultHostBackupLimit) or bytes ("8GiB", "512MiB"); 0: none
//   ACB_VA_RESERVE          VA reserved per device (default 4 x device memory)
//   ACB_COPY_CHUNK          bytes per offload/restore copy chunk (default 8MiB)
//
// Arenas are never destroyed before exit (torch may free tensors during
// static destruction); they are reachable from a global, so leak checkers
// do not report them. shutdown_process_arenas() exists for tests.
//
// fork(): the first arena registers pthread_atfork handlers that hold every
// arena still across the fork and, in the child, give it private copies of
// the arenas' memory (Arena::after_fork_in_child), so that a forked child
// (a DataLoader worker) sees the memory it forked with and its writes stay
// its own. A child whose copies cannot be made aborts with the reason.
//
// Thread-safety: all functions are thread-safe; process_arena() is a single
// atomic load once the arena exists.
#pragma once

#include <cstddef>
#include <string>

#include "alloc/arena.h"

namespace acb::alloc {

/// The arena of `device`, created on first use. Throws DriverError when no
/// driver can be opened and std::out_of_range for a device the driver lacks.
Arena& process_arena(int device);
/// The arena whose reservation holds `ptr`, or nullptr (never creates one).
Arena* process_arena_owning(const void* ptr);
/// Calls `fn` on every arena created so far.
template <class Fn>
void for_each_process_arena(Fn&& fn);
/// Whether the driver has been opened (by a first arena); opens nothing.
bool process_driver_opened();
/// Options from the environment (see above). Throws std::invalid_argument on
/// malformed values.
ArenaOptions arena_options_from_env();
/// ACB_HOST_BACKUP_LIMIT when unset: pinned memory cannot be swapped, so a
/// process that pinned all of the host's RAM would starve everything else on
/// it. Mirrors the default of host_backup_limit in csrc/common/options.json.
inline constexpr const char* kDefaultHostBackupLimit = "50%";
/// Parses ACB_HOST_BACKUP_LIMIT's text: "N%" (1 to 100) of `ram_bytes`, else
/// a byte size (common/byte_size.h).
std::size_t parse_host_backup_limit(const std::string& text, std::size_t ram_bytes);
/// The host's physical memory (sysconf). Throws std::runtime_error when it
/// cannot tell.
std::size_t host_ram_bytes();
/// Destroys every arena and the driver (tests only: no memory of them may be
/// in use).
void shutdown_process_arenas();

namespace detail {
/// Arena of `device` if it was created (no creation), else nullptr.
Arena* existing_process_arena(int device);
inline constexpr int kMaxProcessDevices = 64;
}  // namespace detail

template <class Fn>
void for_each_process_arena(Fn&& fn) {
  for (int d = 0; d < detail::kMaxProcessDevices; ++d)
    if (Arena* arena = detail::existing_process_arena(d)) fn(*arena);
}

}  // namespace acb::alloc
