// Session (see session.h).
#include "torch/session.h"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <memory>
#include <mutex>
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
  std::unique_ptr<LeaseController> controller;
  // After disable(): the controller that keeps the broker counting this
  // process's memory (pinned, LeaseController::unmanage); reused by the next
  // enable() naming the same broker and device.
  std::unique_ptr<LeaseController> unmanaged;
  // The broker, device and priority of the last enable().
  std::string host;
  std::uint16_t port = 0;
  int broker_device = -1;
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

void enable(const EnableOptions& options) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.controller) throw std::logic_error("acb is already enabled in this process");
  alloc::Arena& arena = alloc::process_arena(options.device);
  if (s.arena != nullptr && s.arena != &arena) {
    throw std::logic_error("acb: enable() on device " + std::to_string(options.device) +
                           " after an earlier enable() on device " + std::to_string(s.arena->device()) +
                           " in the same process is not supported");
  }
  // While disabled, ops ran without dirty tracking: no backup taken before
  // may be trusted as current any more.
  if (s.arena != nullptr) arena.mark_all_written();
  s.arena = &arena;
  s.marking_arena.store(&arena, std::memory_order_release);
  if (s.tracker == nullptr) s.tracker = new DirtyTracker(arena);

  ControllerOptions controller_options;
  controller_options.client.host = options.host;
  controller_options.client.port = options.port;
  controller_options.client.priority = options.priority;
  controller_options.client.name = options.name;
  controller_options.client.device = options.broker_device;
  // Its tensors live on this process's GPU: a drain must not move it elsewhere.
  controller_options.client.fixed = options.broker_device >= 0;
  controller_options.client.need_bytes = arena.stats().reserved_bytes;
  controller_options.idle_gap = std::chrono::milliseconds(options.idle_gap_ms);
  controller_options.reconnect_timeout = std::chrono::milliseconds(std::max<std::int64_t>(0, options.reconnect_timeout_ms));
  controller_options.yield_sync_timeout =
      std::chrono::milliseconds(std::max<std::int64_t>(1, acb::options::int_value("yield_sync_timeout_ms")));
  controller_options.before_reconnect = options.before_reconnect;

  Gate& gate = process_gate();
  gate.mark_released();  // the first op acquires
  const bool same_broker = s.unmanaged && s.host == options.host && s.port == options.port &&
                           s.broker_device == options.broker_device;
  if (same_broker) {
    s.controller = std::move(s.unmanaged);
    if (options.priority != s.priority) s.controller->set_priority(options.priority);
  } else {
    try {
      s.controller = std::make_unique<LeaseController>(arena, gate, controller_options);
    } catch (...) {
      gate.force_open();
      throw;
    }
  }
  s.host = options.host;
  s.port = options.port;
  s.broker_device = options.broker_device;
  s.priority = options.priority;
  LeaseController* controller = s.controller.get();
  arena.set_out_of_memory_handler([controller](std::size_t requested_bytes) {
    return controller->regrow(requested_bytes);
  });
  if (options.emulated) {
    if (s.cpu_allocator == nullptr) s.cpu_allocator = new ArenaCpuAllocator(arena);
    s.cpu_allocator->install();
  }
  activate_op_hook(gate, *s.tracker, options.emulated);
  attach_current_thread();
  // Only now, with every new op gated, may the broker ask for the memory
  // kept since disable(); a new connection reports it before the old one
  // (which had it pinned) lets it go. An op another thread started before
  // this enable() is not gated and may still run: enable() is documented to
  // be called while no other thread computes.
  s.controller->manage();
  s.unmanaged.reset();
  if (!options.safe_mode_reason.empty() && note_safe_mode(s, options.safe_mode_reason))
    announce_safe_mode(s.safe_mode_reason);
  if (!s.safe_mode_reason.empty()) s.controller->enter_safe_mode(s.safe_mode_reason);
  static const int atfork_registered = pthread_atfork(nullptr, nullptr, &after_fork_in_child);
  (void)atfork_registered;
}

void disable() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (!s.controller) return;
  Gate& gate = process_gate();
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
  return controller_or_throw(s).status();
}

void set_priority(const std::string& priority) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  controller_or_throw(s).set_priority(priority);
}

nlohmann::json broker_status() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  return controller_or_throw(s).broker_status();
}

void yield_now() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  controller_or_throw(s).yield_now();
}

}  // namespace acb::torch_hook
