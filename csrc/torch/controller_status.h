// ControllerStatus: what acb.status() reports of a process's lease and
// memory, as one list (an X-macro) that the struct, acb._C's status dict and
// its list of names (acb._C.status_fields(), which a test holds
// python/acb/_status.py's acb.Status to) are all made from. Times are in
// milliseconds, sizes in bytes.
#pragma once

#include <cstdint>
#include <string>

namespace acb::torch_hook {

// X(type, name, default value); what each means is documented on acb.Status.
#define ACB_CONTROLLER_STATUS(X)                                                                  \
  X(std::string, lease_state, "") /* "released" | "acquiring" | "holding" | "yielding" */       \
  X(std::uint64_t, client_id, 0)                                                                  \
  X(int, broker_device, -1)                                                                       \
  X(std::uint64_t, resident_bytes, 0)                                                             \
  X(std::uint64_t, offloaded_bytes, 0)                                                            \
  X(std::uint64_t, reserved_bytes_peak, 0)                                                        \
  X(std::uint64_t, waits, 0) /* acquires that blocked an op */                                    \
  X(double, wait_total_ms, 0)                                                                     \
  X(double, wait_p99_ms, 0)                                                                       \
  X(double, wait_max_ms, 0)                                                                       \
  X(std::uint64_t, switches, 0) /* grants received (each one a switch onto the device) */        \
  X(std::uint64_t, releases, 0) /* leases given back on revoke */                                 \
  X(std::uint64_t, revokes, 0)                                                                    \
  X(std::uint64_t, evicts, 0)                                                                     \
  X(std::uint64_t, offloads, 0) /* arena offload count */                                         \
  X(std::uint64_t, offload_copied_bytes, 0)                                                       \
  X(std::uint64_t, skipped_clean_bytes, 0)                                                        \
  X(std::uint64_t, restored_bytes, 0)                                                             \
  X(std::uint64_t, host_backup_bytes, 0) /* pinned host bytes holding backups */                  \
  X(std::uint64_t, host_pinned_bytes, 0) /* pinned host bytes held, backups plus cached buffers */ \
  X(std::uint64_t, host_backup_limit_bytes, 0) /* bound on the backups; 0: none */                \
  X(std::uint64_t, regions, 0)                                                                    \
  X(std::uint64_t, oom_regrows, 0)                                                                \
  X(std::uint64_t, reconnects, 0) /* broker connections re-established after a loss */           \
  X(std::uint64_t, yield_sync_timeouts, 0) /* yields whose synchronisation was late */            \
  X(std::string, safe_mode_reason, "") /* why the process is in safe mode; empty: it is not */

/// A snapshot for acb.status().
struct ControllerStatus {
#define ACB_STATUS_MEMBER(type, name, initial) type name = initial;
  ACB_CONTROLLER_STATUS(ACB_STATUS_MEMBER)
#undef ACB_STATUS_MEMBER
};

}  // namespace acb::torch_hook
