// Session: what acb.enable() sets up in a process and acb.disable() takes
// down. It owns the lease controller and, in emulation mode, the arena-backed
// CPU allocator, and switches the op hook on and off. The gate, the arena and
// the dirty tracker live for the whole process (operators on other threads
// may still reference them after disable()).
//
// Lazy start: enable() touches neither the device nor the broker. It switches
// the op hook on with the gate released, and the first operator that needs
// the brokered device (any operator on an attached thread in emulation)
// activates the session: it creates the driver and the arena (the CUDA
// driver's cuInit and the device's primary context happen here, not in
// enable()), connects to the broker (finding or starting the embedded one
// first) and acquires. A process that never computes on the device (a
// DataLoader worker, a tool that imports torch under ACB_ENABLE=1) never
// becomes a broker client, and CUDA stays uninitialised until torch itself
// would initialise it, so forked children can still use CUDA and
// CUDA_VISIBLE_DEVICES may still be set after enable(). A failure there
// (no driver, no broker) fails that operator; the next one tries again.
// Exception: enable() after a disable() that kept the connection (its memory
// counted as pinned) hands that connection over at once.
//
// Thread-safety: all functions are thread-safe (one mutex).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "torch/gate.h"
#include "torch/lease_controller.h"

namespace acb::torch_hook {

struct EnableOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;
  std::string priority = "training";
  std::string name;
  int device = 0;           ///< local device index of the arena
  int broker_device = -1;   ///< device to pin at the broker (-1: broker places)
  /// With broker_device -1: the GPU's UUID, which the broker maps to its device (empty: none).
  std::string broker_device_uuid;
  /// The torch.distributed job this process is a rank of (acb._gang), sent in the hello.
  client::GangMembership gang;
  int idle_gap_ms = 10;     ///< see ControllerOptions::idle_gap; acb.enable() always passes it
  bool emulated = false;    ///< the brokered device is the emulated arena (CPU tensors)
  std::int64_t reconnect_timeout_ms = 30000;
  std::function<void()> before_reconnect;  ///< see ControllerOptions
  /// Non-empty: enter safe mode at once, for this reason (acb.enable(safe=True), ACB_SAFE_MODE=1).
  std::string safe_mode_reason;
  /// When the broker refuses the first connection because broker_device does
  /// not exist: what to tell the user (the error then says this, then the
  /// broker's reason). Empty: the broker's error alone.
  std::string unknown_device_hint;
};

/// Gates this process's device operators from now on; the first of them
/// joins the broker (see "Lazy start"). Throws std::logic_error when already
/// enabled; when re-enabling with a kept connection, what activation throws.
void enable(const EnableOptions& options);
/// Makes all memory resident, leaves the broker and lets ops run freely.
void disable();
/// Between enable() and disable().
bool enabled();
/// Enabled, and the first device op has made the arena and the broker connection.
bool activated();

/// The process gate (also used by acb.region()).
Gate& process_gate();

/// Marks [ptr, ptr + bytes) written in the brokered arena (no-op for memory
/// outside it, or before the first enable()). For code that writes tensor
/// memory without an operator that declares it: compiled graphs, kernels
/// launched on data_ptr(), collectives, exports.
void mark_written(const void* ptr, std::size_t bytes);
/// Marks every segment of the arena written (acb.region()'s conservative rule).
void mark_all_written();
/// Keeps [ptr, ptr + bytes) of the brokered arena resident while it is
/// exported (Arena::pin; the caller holds the device). Returns the bytes of
/// the segments pinned: 0 for memory outside the arena, or before the first
/// enable(). Pins outlive disable(): the arena lives for the whole process.
std::size_t pin_exported(const void* ptr, std::size_t bytes);
/// Ends one pin_exported(ptr, bytes); the range counts as written.
void unpin_exported(const void* ptr, std::size_t bytes);

/// Safe mode, for good (LeaseController, "Safe mode"): called by whatever
/// finds work acb cannot see. Said once on stderr with the reason; before
/// enable() it applies from the next enable() on.
void enter_safe_mode(const std::string& reason);

/// Throws std::logic_error when not enabled. Before the first device op:
/// released, client 0, nothing resident.
ControllerStatus status();
void set_priority(const std::string& priority);
nlohmann::json broker_status();
/// Releases the lease now if held (tests and benchmarks).
void yield_now();

}  // namespace acb::torch_hook
