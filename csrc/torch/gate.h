// Gate: the safe-point gate between the threads that issue operators and the
// lease controller that gives the device away.
//
// Every operator on the brokered device runs between enter() and exit().
// While the process holds its lease the gate is open and enter() is one
// atomic read-modify-write plus one atomic load. When the gate is closed
// (not holding, or a yield in progress) enter() blocks: the first waiting
// thread runs the acquirer (ask the broker, restore memory), the others wait
// for it, and all proceed once the gate opens again.
//
// The controller closes the gate with close_and_drain(): after it returns no
// operator is in flight on any thread and none can start until the gate is
// reopened or released, which is the safe point for synchronising streams
// and offloading memory.
//
// Invariant: ops may run only while state() == holding and the gate is open;
// the in-flight count and the open flag are both sequentially consistent, so
// an op that increments the count either sees the gate closed or is seen by
// the drain.
//
// Ordering rules (the whole protocol with the lease controller and the
// arena; tests/model/lease_protocol.pml checks them with spin):
//   1. Tensor memory is touched only between enter() and exit(): by an op,
//      by an allocation outside any op (ArenaCpuAllocator holds the gate
//      across Arena::malloc), by a held region (acb.region(), _gating.held,
//      Tensor.tolist in emulation). What an op wrote is marked before exit().
//   2. The gate opens (open_ = true, state holding) only under mutex_, and
//      only after the acquirer has restored every offloaded segment.
//   3. Memory is offloaded only while no op can be in flight: on the I/O
//      thread under with_state_locked(), with the state released, or
//      acquiring while the acquirer still waits for its grant (the I/O
//      thread reads that grant only after the offload). Once the grant is
//      read the acquirer restores and opens the gate without asking anyone,
//      so an evict read after it is not executed.
//   4. A yield closes the gate before it waits for the drain; the lease is
//      released to the broker before mark_released(), so no second acquire
//      starts while the client still holds. Evicts that arrive meanwhile
//      (yielding) are not executed; the broker asks again.
//
// Thread-safety: all methods are thread-safe. The acquirer runs on an op
// thread, outside the gate's mutex, at most one at a time.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>

namespace acb::torch_hook {

enum class LeaseState { released, acquiring, holding, yielding };

class Gate {
 public:
  /// Blocks until the lease is held and memory is resident; throws to fail the op.
  using Acquirer = std::function<void()>;

  Gate() = default;
  Gate(const Gate&) = delete;
  Gate& operator=(const Gate&) = delete;

  void set_acquirer(Acquirer acquirer);

  /// Marks one operator in flight; blocks first while the gate is closed.
  void enter() {
    in_flight_.fetch_add(kEntry + 1, std::memory_order_seq_cst);
    if (open_.load(std::memory_order_seq_cst)) [[likely]] return;
    enter_slow();
  }
  /// One more unit in flight, taken by a thread that is itself between
  /// enter() and exit(), for work it started that outlives its own unit (a
  /// collective still running on a backend's threads). Never blocks: the
  /// caller's unit keeps any drain waiting, so the lease cannot have gone.
  /// Ended with exit(), from any thread.
  void enter_while_held() { in_flight_.fetch_add(kEntry + 1, std::memory_order_seq_cst); }
  /// Ends an operator started with enter().
  void exit() {
    const std::uint64_t before = in_flight_.fetch_sub(1, std::memory_order_seq_cst);
    // seq_cst, not relaxed: with the drain's seq_cst store of draining_ and
    // load of the count, either the drain sees our decrement or we see it
    // draining. A relaxed load may read a stale false (on ARM it can be
    // satisfied before the decrement is visible): a lost wake-up, a drain
    // that waits forever. On x86 both compile to the same plain load.
    if (draining_.load(std::memory_order_seq_cst) && (before & kCountMask) == 1) notify_drained();
  }

  /// Ops in flight now, and the number of ops ever entered (a change means activity).
  std::uint32_t in_flight() const { return static_cast<std::uint32_t>(in_flight_.load() & kCountMask); }
  std::uint32_t entries() const { return static_cast<std::uint32_t>(in_flight_.load() >> 32); }

  LeaseState state() const;

  /// Closes the gate and waits until no op is in flight. Returns false (and
  /// reopens) when the state is not holding. After true, state() == yielding.
  bool close_and_drain();
  /// After close_and_drain(): the lease is given back, ops will acquire again.
  void mark_released();
  /// After close_and_drain(): keep holding, reopen the gate.
  void reopen();
  /// Opens the gate as holding without acquiring (disable(): let ops run freely).
  void force_open();

  /// Runs `fn` while the gate state cannot change (no acquire or yield starts,
  /// and an acquirer already running cannot open the gate).
  template <class Fn>
  auto with_state_locked(Fn&& fn) {
    std::lock_guard<std::mutex> lock(mutex_);
    return fn(state_);
  }

 private:
  static constexpr std::uint64_t kEntry = std::uint64_t{1} << 32;
  static constexpr std::uint64_t kCountMask = kEntry - 1;

  void enter_slow();
  void notify_drained();

  // Low 32 bits: ops in flight; high 32 bits: ops entered (wraps).
  std::atomic<std::uint64_t> in_flight_{0};
  std::atomic<bool> open_{false};
  std::atomic<bool> draining_{false};

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  LeaseState state_ = LeaseState::released;
  Acquirer acquirer_;
};

}  // namespace acb::torch_hook
