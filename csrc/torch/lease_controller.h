// LeaseController: the process's side of GPU sharing. It joins the broker
// client (lease traffic), the arena (offload/restore) and the gate (which ops
// may run), and owns one monitor thread that watches for idle gaps.
//
// Policy (docs/torch.md, "Lease"):
//   - The first op that finds the gate closed acquires: it declares the
//     arena's peak reserved bytes as its need, waits for the grant, restores
//     every offloaded segment (Arena::restore_all) and opens the gate.
//   - Lazy holding: after a region of work ends the lease is kept until the
//     broker revokes it.
//   - A revoke is honoured at the next idle gap (no op in flight and none
//     entered for idle_gap), or, once its deadline has passed, at the next op
//     boundary: the gate closes, in-flight ops finish, the device is
//     synchronised and the lease is released with the memory left resident.
//   - An evict offloads the bytes asked for on the I/O thread, then reports
//     the residency. It is executed only while no op can run before it ends:
//     not holding, and no grant read for the acquire in progress (the
//     arbiter also evicts a holder whose residency report it cannot account
//     for, and such an evict can follow the grant while the acquirer
//     restores). Otherwise memory stays and the report says so. gate.h has
//     the ordering rules.
//     Pinned (exported) memory stays too; once a pin ends after such an
//     evict the residency is reported again, unasked (pins_released).
//   - Unmanaged (acb.disable()): the process keeps its connection, holds
//     once to make every byte resident, then releases the lease reporting
//     its memory as pinned. Its ops then run ungated, so nothing is ever
//     offloaded: evicts are answered with the pinned residency, revokes are
//     ignored, and the monitor reports the residency whenever it changes, so
//     the broker plans the other processes around memory it cannot move.
//     manage() (acb.enable() again) makes it evictable again.
//   - Safe mode (enter_safe_mode(): work acb cannot see may run, e.g. a C++
//     extension launching kernels on data_ptr() between ops on the enabling
//     thread). Such work may write any memory at any time except while that
//     thread is inside acb. So: no yield at an idle gap (only at a revoke
//     deadline, after synchronising the device); a release keeps the memory
//     resident and pinned; only while the enabling thread waits in acquire()
//     is the memory evictable, and every offload then copies all of it
//     (every segment marked written first). What it cannot cover: work on
//     threads other than the enabling one that acb does not gate.
//   - A yield synchronises the device for at most yield_sync_timeout
//     (DeviceSync; cuCtxSynchronize may wait forever behind a collective
//     whose peer waits for this device). In time and without error: the
//     release as above. Not in time: the lease is released with the memory
//     resident and pinned, so that the peer can run while nothing of this
//     process is offloaded; evicts are answered with the pinned residency
//     until the synchronisation returns, then the residency is reported
//     again as evictable (if not holding). The device reports an error: the
//     error is printed as one, the process enters safe mode with it as the
//     reason (memory may be in any state the failed work left: nothing is
//     skipped as clean from now on), and the lease is released pinned.
//     Either way stderr says why, and no byte is dropped.
//   - A lost broker connection (the broker stopped or crashed) ends the
//     lease: it is honoured like a revoke past its deadline, at the next op
//     boundary. The next op that needs the device reconnects (calling
//     before_reconnect first, which may start a broker), reports what is
//     resident (soft state) and acquires as usual; it fails with
//     client::BrokerError once reconnect_timeout has passed without a broker.
//
// Region tracking is done by the monitor at tick granularity (idle_gap / 2):
// regions are counted for status(), they do not drive any decision except the
// idle-gap yield.
//
// Thread-safety: every public method is thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "alloc/arena.h"
#include "client/broker_client.h"
#include "torch/controller_status.h"
#include "torch/device_sync.h"
#include "torch/gate.h"

namespace acb::torch_hook {

struct ControllerOptions {
  client::ClientOptions client;
  /// No op in flight for this long ends a region and lets a pending revoke
  /// be honoured: long enough to span Python's overhead between the ops of
  /// one step, short enough that a CPU phase frees the device quickly.
  /// acb.enable() passes idle_gap_ms of csrc/common/options.json
  /// (ACB_IDLE_GAP_MS, default 10, mirrored here for tests).
  std::chrono::milliseconds idle_gap{10};
  /// After losing the broker, how long an op keeps trying to reconnect.
  std::chrono::milliseconds reconnect_timeout{30000};
  /// How long a yield, or unmanage(), waits for the device to synchronise
  /// before it releases the lease with the memory pinned
  /// (ACB_YIELD_SYNC_TIMEOUT_MS, default 2000).
  std::chrono::milliseconds yield_sync_timeout{2000};
  /// Called before each reconnect attempt (e.g. restart the embedded broker);
  /// may throw, which counts as a failed attempt. Empty: plain reconnects.
  std::function<void()> before_reconnect;
};

class LeaseController {
 public:
  /// Connects to the broker (throws client::BrokerError) and installs itself
  /// as the gate's acquirer. The gate starts closed: the first op acquires.
  LeaseController(alloc::Arena& arena, Gate& gate, ControllerOptions options);
  /// Stops the monitor and closes the connection (the broker reclaims the lease).
  ~LeaseController();
  LeaseController(const LeaseController&) = delete;
  LeaseController& operator=(const LeaseController&) = delete;

  /// The gate's acquirer: blocks until the lease is held and memory restored.
  void acquire();
  /// Makes the lease held and all memory resident, then keeps it.
  void acquire_and_hold();
  /// acb.disable(): makes all memory resident, then releases the lease with
  /// it pinned (see the header comment), after the device's work ended or
  /// yield_sync_timeout passed. The caller opens the gate after.
  void unmanage();
  /// acb.enable(): reports the resident memory (evictable again after
  /// unmanage()). The caller has marked the gate released and gates every
  /// op from now on: an evict may offload at once.
  void manage();
  /// Gives the lease back at once if held (waits for in-flight ops).
  void yield_now();
  /// Called when an export's pin on the arena ended: if an evict since the
  /// last report kept pinned memory resident, reports the residency again
  /// (unasked), so the broker may ask for that memory once more.
  void pins_released();
  /// The arena's out-of-memory handler: while holding, asks the broker for
  /// the arena's reserved bytes plus `shortfall_bytes` (the segment it must
  /// map). Returns true when the caller should retry its allocation.
  bool regrow(std::size_t shortfall_bytes);

  /// Enters safe mode for good (see the header comment); the first reason
  /// is kept. Idempotent; announcing it is the caller's job.
  void enter_safe_mode(const std::string& reason);

  void set_priority(const std::string& priority);
  nlohmann::json broker_status();
  ControllerStatus status() const;

 private:
  /// A new broker connection with this controller's handlers installed.
  std::shared_ptr<client::BrokerClient> connect();
  /// The connection in use (replaced by a reconnect; callers keep their copy alive).
  std::shared_ptr<client::BrokerClient> client() const;
  /// Before an acquire: reconnects when the connection was lost.
  void ensure_connected();
  void on_revoke(const client::Revoke& revoke);
  void on_evict(client::BrokerClient& from, const client::Evict& evict);
  void on_lost(const std::string& reason);
  /// `last_entries`: the gate's entry count when the controller was made.
  void monitor_loop(std::uint32_t last_entries);
  void record_wait(double wait_ms);
  /// acquire() proper; `unpinned`: the enabling thread waits in it in safe mode.
  void acquire_and_restore(bool unpinned);
  /// Safe mode, leaving acquire(): the memory is pinned again unless held.
  void leave_acquire(bool unpinned, bool held);
  bool in_safe_mode() const;
  std::uint64_t declared_need() const;
  /// Monitor: a synchronisation that timed out at a yield has returned; the
  /// memory it kept pinned is evictable again. Called with `lock` held.
  void late_sync_returned(std::unique_lock<std::mutex>& lock);

  alloc::Arena& arena_;
  Gate& gate_;
  ControllerOptions options_;
  mutable std::mutex mutex_;  // guards everything below
  std::shared_ptr<client::BrokerClient> client_;
  std::condition_variable wake_;
  bool stop_ = false;
  bool revoke_pending_ = false;
  bool unmanaged_ = false;                ///< see unmanage()
  std::string safe_mode_reason_;          ///< empty: not in safe mode
  std::thread::id main_thread_;           ///< the enabling thread (safe mode watches it)
  bool main_inside_ = false;              ///< safe mode: the enabling thread waits in acquire()
  std::uint64_t reported_pinned_bytes_ = 0;  ///< the residency the broker last heard while unmanaged
  std::chrono::steady_clock::time_point revoke_deadline_{};
  std::vector<double> wait_ms_;
  double wait_total_ms_ = 0;
  std::uint64_t switches_ = 0, releases_ = 0, revokes_ = 0, evicts_ = 0, regions_ = 0, oom_regrows_ = 0,
                reconnects_ = 0;
  std::uint64_t need_floor_bytes_ = 0;
  std::uint64_t declared_bytes_ = 0;  ///< the need the broker last heard
  bool evict_kept_pins_ = false;      ///< an evict left pinned memory resident (pins_released)
  bool late_sync_ = false;            ///< a yield released while the device still synchronised
  std::uint64_t yield_sync_timeouts_ = 0;

  DeviceSync device_sync_;
  std::thread monitor_;
};

}  // namespace acb::torch_hook
