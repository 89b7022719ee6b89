// Session (see session.h).
#include "torch/session.h"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>

#include "alloc/process_arenas.h"
#include "common/options.h"
#include "torch/arena_cpu_allocator.h"
#include "torch/dirty_tracker.h"
#include "torch/op_hook.h"

namespace acb::torch_hook {

namespace {
struct State {
  std::mutex mutex;
  alloc::Arena* arena = nullptr;
  /// `arena` for readers that must not take the mutex (marking after every compiled call).
  std::atomic<alloc::Arena*> marking_arena{nullptr};
  // Process-lifetime objects: operators may reference them at any time, so
  // they are created once and never destroyed.
  DirtyTracker* tracker = nullptr;
  ArenaCpuAllocator* cpu_allocator = nullptr;
  /// Set by enable(), made by the first device op after it (activate_locked);
  /// null before that, and after disable().
  std::unique_ptr<LeaseController> controller;
  /// The options of the enable() in force; empty while disabled.
  std::optional<EnableOptions> enabled_options;
  // After disable(): the controller that keeps the broker counting this
  // process's memory (pinned, LeaseController::unmanage); reused by the next
  // enable() naming the same broker and device.
  std::unique_ptr<LeaseController> unmanaged;
  // The broker, device and priority of the last enable().
  std::string host;
  std::uint16_t port = 0;
  int broker_device = -1;
  std::string broker_device_uuid;
  client::GangMembership gang;
  std::string priority;
  std::string safe_mode_reason;  // the first reason given; empty: not in safe mode
};

State& state() {
  static State* s = new State();  // never destroyed: see above
  return *s;
}

LeaseController& controller_or_throw(State& s) {
  if (!s.controller) throw std::logic_error("acb is not enabled: call acb.enable() first");
  return *s.controller;
}

// A forked child (e.g. a DataLoader worker) has no broker connection and no
// monitor thread: its operators must not wait for a lease, and its new CPU
// tensors must not come from the parent's arena.
void after_fork_in_child() {
  deactivate_op_hook();
  detach_current_thread();
  State& s = state();
  if (s.cpu_allocator != nullptr) s.cpu_allocator->uninstall();
}
}  // namespace

Gate& process_gate() {
  static Gate* gate = new Gate();  // never destroyed: ops on any thread may use it
  return *gate;
}

void mark_written(const void* ptr, std::size_t bytes) {
  alloc::Arena* arena = state().marking_arena.load(std::memory_order_acquire);
  if (arena != nullptr) arena->mark_written(ptr, bytes);  // the arena is never destroyed
}

void mark_all_written() {
  alloc::Arena* arena = state().marking_arena.load(std::memory_order_acquire);
  if (arena != nullptr) arena->mark_all_written();
}

std::size_t pin_exported(const void* ptr, std::size_t bytes) {
  State& s = state();
  alloc::Arena* arena = nullptr;
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    arena = s.arena;
  }
  return arena != nullptr ? arena->pin(ptr, bytes) : 0;
}

void unpin_exported(const void* ptr, std::size_t bytes) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);  // the controller lives while it is held
  if (s.arena == nullptr) return;
  s.arena->unpin(ptr, bytes);
  if (s.controller) s.controller->pins_released();
}

namespace {
// Under s.mutex. True the first time (the caller announces it).
bool note_safe_mode(State& s, const std::string& reason) {
  if (!s.safe_mode_reason.empty()) return false;
  s.safe_mode_reason = reason.empty() ? std::string("unspecified") : reason;
  return true;
}

void announce_safe_mode(const std::string& reason) {
  std::fprintf(stderr,
               "acb: safe mode (%s): every offload copies all memory, the device is given up only at a revoke "
               "deadline, and memory is offloaded only while the enabling thread waits inside acb\n",
               reason.c_str());
}
}  // namespace

namespace {
// The connection hint for a first connection the broker refused because it
// has no such device (EnableOptions::unknown_device_hint).
[[noreturn]] void rethrow_with_hint(const client::BrokerError& error, const std::string& hint) {
  const std::string what = error.what();
  if (hint.empty() || what.find("does not exist") == std::string::npos) throw;  // called in its catch block
  throw client::BrokerError(hint + " (" + what + ")");
}

// Whether enable(options) can take over the connection disable() kept.
bool reuses_kept_connection(const State& s, const EnableOptions& options) {
  return s.unmanaged && s.host == options.host && s.port == options.port && s.broker_device == options.broker_device &&
         s.broker_device_uuid == options.broker_device_uuid && s.gang == options.gang;
}

// Under s.mutex, while enabled: makes what a device operation needs, in this
// order: the driver and the arena (alloc::process_arena, on first use of the
// device), the tracker's arena, the lease controller (the broker connection),
// and in emulation the arena-backed CPU allocator. The controller of an
// earlier enable() kept by disable() is reused when it names the same broker
// and device. Throws (driver, broker) with nothing of it in use. The caller
// has called before_reconnect for a new connection, outside s.mutex (it takes
// the GIL, which a thread waiting for s.mutex may hold).
void activate_locked(State& s) {
  const EnableOptions& options = *s.enabled_options;
  // enable() refused a device other than an earlier enable()'s, so s.arena is
  // this arena or not set yet.
  alloc::Arena& arena = alloc::process_arena(options.device);
  // Ops ran without dirty tracking until now (while disabled, or on memory
  // allocated before this first device op): no backup taken before may be
  // trusted as current any more.
  arena.mark_all_written();
  s.arena = &arena;
  s.marking_arena.store(&arena, std::memory_order_release);
  s.tracker->track(arena);

  ControllerOptions controller_options;
  controller_options.client.host = options.host;
  controller_options.client.port = options.port;
  controller_options.client.priority = options.priority;
  controller_options.client.name = options.name;
  controller_options.client.device = options.broker_device;
  controller_options.client.device_uuid = options.broker_device_uuid;
  // Its tensors live on this process's GPU: a drain must not move it elsewhere.
  controller_options.client.fixed = options.broker_device >= 0 || !options.broker_device_uuid.empty();
  controller_options.client.gang = options.gang;
  controller_options.client.need_bytes = arena.stats().reserved_bytes;
  controller_options.idle_gap = std::chrono::milliseconds(options.idle_gap_ms);
  controller_options.reconnect_timeout = std::chrono::milliseconds(std::max<std::int64_t>(0, options.reconnect_timeout_ms));
  controller_options.yield_sync_timeout =
      std::chrono::milliseconds(std::max<std::int64_t>(1, acb::options::int_value("yield_sync_timeout_ms")));
  controller_options.before_reconnect = options.before_reconnect;

  if (reuses_kept_connection(s, options)) {
    s.controller = std::move(s.unmanaged);
    if (options.priority != s.priority) s.controller->set_priority(options.priority);
  } else {
    try {
      s.controller = std::make_unique<LeaseController>(arena, process_gate(), controller_options);
    } catch (const client::BrokerError& e) {
      rethrow_with_hint(e, options.unknown_device_hint);
    }
  }
  s.host = options.host;
  s.port = options.port;
  s.broker_device = options.broker_device;
  s.broker_device_uuid = options.broker_device_uuid;
  s.gang = options.gang;
  s.priority = options.priority;
  LeaseController* controller = s.controller.get();
  arena.set_out_of_memory_handler([controller](std::size_t requested_bytes) {
    return controller->regrow(requested_bytes);
  });
  if (options.emulated) {
    if (s.cpu_allocator == nullptr) s.cpu_allocator = new ArenaCpuAllocator(arena);
    s.cpu_allocator->install();
  }
}

// Under s.mutex, after activate_locked(), with every new op gated: only now
// may the broker ask for the memory kept since disable(); a new connection
// reports it before the old one (which had it pinned) lets it go.
void manage_locked(State& s) {
  s.controller->manage();
  s.unmanaged.reset();
  if (!s.safe_mode_reason.empty()) s.controller->enter_safe_mode(s.safe_mode_reason);
}

// The gate's acquirer from enable() until the first device op: that op (on
// any thread) activates the session, then acquires as every later one does.
// A failure fails the op and leaves the gate released: the next op tries
// again.
void acquire_on_first_use() {
  State& s = state();
  std::function<void()> find_broker;
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    if (!s.enabled_options) return;  // disable() ran meanwhile: ops run ungated
    if (!s.controller) find_broker = s.enabled_options->before_reconnect;
  }
  // The embedded broker is found or started only now, when this process first needs one.
  if (find_broker) find_broker();
  LeaseController* controller = nullptr;
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    if (!s.enabled_options) return;
    if (!s.controller) {
      activate_locked(s);  // installs the controller's own acquirer for the ops after this one
      manage_locked(s);
    }
    controller = s.controller.get();
  }
  // Outside s.mutex: the wait for the grant must not block status() or
  // disable(). The controller lives on: only disable() and the next
  // enable() replace it, and neither runs while an op is in flight.
  controller->acquire();
}
}  // namespace

void enable(const EnableOptions& options) {
  State& s = state();
  bool new_connection_now = false;
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    new_connection_now = !s.enabled_options && s.unmanaged && !reuses_kept_connection(s, options);
  }
  // Outside s.mutex (see activate_locked); enable() is not called concurrently.
  if (new_connection_now && options.before_reconnect) options.before_reconnect();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.enabled_options) throw std::logic_error("acb is already enabled in this process");
  if (s.arena != nullptr && s.arena->device() != options.device) {
    throw std::logic_error("acb: enable() on device " + std::to_string(options.device) +
                           " after an earlier enable() on device " + std::to_string(s.arena->device()) +
                           " in the same process is not supported");
  }
  s.enabled_options = options;
  if (s.tracker == nullptr) s.tracker = new DirtyTracker();
  Gate& gate = process_gate();
  gate.mark_released();  // the first op acquires
  // Nothing touches the device or the broker here (docs/torch.md, "Lazy
  // start"): the first device op does, through acquire_on_first_use(). The
  // one exception is a process that used the device before disable(): its
  // kept connection counts that memory as pinned, and is handed over now.
  const bool activate_now = s.unmanaged != nullptr;
  if (activate_now) {
    try {
      activate_locked(s);
    } catch (...) {
      s.enabled_options.reset();
      gate.force_open();
      throw;
    }
  } else {
    gate.set_acquirer(&acquire_on_first_use);
  }
  activate_op_hook(gate, *s.tracker, options.emulated);
  attach_current_thread();
  // An op another thread started before this enable() is not gated and may
  // still run: enable() is documented to be called while no other thread
  // computes.
  if (!options.safe_mode_reason.empty() && note_safe_mode(s, options.safe_mode_reason))
    announce_safe_mode(s.safe_mode_reason);
  if (activate_now) manage_locked(s);
  static const int atfork_registered = pthread_atfork(nullptr, nullptr, &after_fork_in_child);
  (void)atfork_registered;
}

void disable() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (!s.enabled_options) return;
  s.enabled_options.reset();
  Gate& gate = process_gate();
  if (!s.controller) {
    // Never used the device since enable(): nothing to make resident or hand over.
    gate.set_acquirer(nullptr);
    gate.force_open();
    deactivate_op_hook();
    return;
  }
  std::exception_ptr failure;
  try {
    // The memory stays resident and counted by the broker, pinned: ops now
    // run ungated, so the other processes must plan around it.
    s.controller->unmanage();
  } catch (...) {
    failure = std::current_exception();  // e.g. the broker is gone: still leave cleanly
  }
  s.arena->set_out_of_memory_handler(nullptr);
  if (failure) {
    s.controller.reset();
  } else {
    s.unmanaged = std::move(s.controller);
  }
  s.arena->restore_all();  // nothing is offloaded once unmanaged; an evict before that may have raced
  gate.force_open();
  deactivate_op_hook();
  if (s.cpu_allocator != nullptr) s.cpu_allocator->uninstall();
  if (failure) std::rethrow_exception(failure);
}

bool enabled() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  return s.enabled_options.has_value();
}

bool activated() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  return s.controller != nullptr;
}

void enter_safe_mode(const std::string& reason) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (note_safe_mode(s, reason)) announce_safe_mode(s.safe_mode_reason);
  if (s.controller) s.controller->enter_safe_mode(s.safe_mode_reason);
}

ControllerStatus status() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.enabled_options && !s.controller) {
    // Enabled, no device op yet: not a broker client, nothing held or resident.
    ControllerStatus idle;
    idle.lease_state = "released";
    idle.broker_device = s.enabled_options->broker_device;
    idle.safe_mode_reason = s.safe_mode_reason;
    return idle;
  }
  return controller_or_throw(s).status();
}

void set_priority(const std::string& priority) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.enabled_options && !s.controller) {
    s.enabled_options->priority = priority;  // what the first connection will say
    return;
  }
  controller_or_throw(s).set_priority(priority);
}

nlohmann::json broker_status() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.enabled_options && !s.controller)
    throw std::logic_error("acb has no broker connection yet: it connects at this process's first device operation");
  return controller_or_throw(s).broker_status();
}

void yield_now() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.enabled_options && !s.controller) return;  // nothing held yet
  controller_or_throw(s).yield_now();
}

}  // namespace acb::torch_hook
