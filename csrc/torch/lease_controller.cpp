// LeaseController: acquire/yield/evict policy and the idle-gap monitor (see
// lease_controller.h; the ordering rules that keep memory safe are in gate.h).
#include "torch/lease_controller.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace acb::torch_hook {

namespace {
using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

const char* state_name(LeaseState state) {
  switch (state) {
    case LeaseState::released: return "released";
    case LeaseState::acquiring: return "acquiring";
    case LeaseState::holding: return "holding";
    case LeaseState::yielding: return "yielding";
  }
  return "unknown";
}
}  // namespace

LeaseController::LeaseController(alloc::Arena& arena, Gate& gate, ControllerOptions options)
    : arena_(arena), gate_(gate), options_(std::move(options)), device_sync_(arena.driver(), arena.device()) {
  if (options_.idle_gap.count() < 1) options_.idle_gap = std::chrono::milliseconds{1};
  main_thread_ = std::this_thread::get_id();
  client_ = connect();
  gate_.set_acquirer([this] { acquire(); });
  // The gate's count is read here, not when the thread first runs: an op that
  // entered and left before then would otherwise go unseen as a region.
  monitor_ = std::thread([this, entries = gate_.entries()] { monitor_loop(entries); });
}

std::shared_ptr<client::BrokerClient> LeaseController::connect() {
  client::ClientOptions client_options;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    client_options = options_.client;
  }
  auto fresh = std::make_shared<client::BrokerClient>(client_options);
  // Handlers run on this connection's I/O thread, which its destructor joins:
  // the raw pointer outlives every call.
  client::BrokerClient* connection = fresh.get();
  fresh->on_revoke([this](const client::Revoke& revoke) { on_revoke(revoke); });
  fresh->on_evict([this, connection](const client::Evict& evict) { on_evict(*connection, evict); });
  fresh->on_lost([this](const std::string& reason) { on_lost(reason); });
  return fresh;
}

std::shared_ptr<client::BrokerClient> LeaseController::client() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return client_;
}

void LeaseController::on_lost(const std::string& reason) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stop_) return;
    if (unmanaged_) {
      // Nothing to give up (acb is disabled); the next enable() reconnects.
      std::fprintf(stderr, "acb: lost the broker connection (%s) while disabled\n", reason.c_str());
      return;
    }
    // The broker has reclaimed the lease: stop using the device at the next
    // op boundary, as for a revoke past its deadline.
    revoke_pending_ = true;
    revoke_deadline_ = Clock::now();
  }
  std::fprintf(stderr,
               "acb: lost the broker connection (%s); the device is given up at the next operator boundary "
               "and the next operator that needs it reconnects\n",
               reason.c_str());
  wake_.notify_all();
}

void LeaseController::ensure_connected() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (client_->connected()) return;  // lost connections report it before on_lost runs
  }
  const Clock::time_point give_up = Clock::now() + options_.reconnect_timeout;
  std::chrono::milliseconds backoff{50};
  std::string last_error;
  for (;;) {
    try {
      if (options_.before_reconnect) options_.before_reconnect();
      std::shared_ptr<client::BrokerClient> fresh = connect();
      // Soft state: the new broker accounts for it (pinned in safe mode; acquire() unpins).
      fresh->report_residency(arena_.resident_bytes(), in_safe_mode());
      std::shared_ptr<client::BrokerClient> old;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        old = std::move(client_);
        client_ = fresh;
        revoke_pending_ = false;  // the lost lease is gone; this process holds none (it is acquiring)
        ++reconnects_;
      }
      std::fprintf(stderr, "acb: reconnected to the broker at %s:%u as client %llu\n",
                   options_.client.host.c_str(), static_cast<unsigned>(options_.client.port),
                   static_cast<unsigned long long>(fresh->welcome().client_id));
      return;  // `old` is closed here, on this op thread
    } catch (const std::exception& e) {
      last_error = e.what();
    }
    const Clock::time_point now = Clock::now();
    if (now >= give_up) {
      throw client::BrokerError("acb: lost the broker and could not reconnect to " + options_.client.host + ":" +
                                std::to_string(options_.client.port) + " within " +
                                std::to_string(options_.reconnect_timeout.count()) + " ms: " + last_error);
    }
    // A retry interval (the broker is not there yet), the last one cut to the timeout.
    std::this_thread::sleep_for(std::min<Clock::duration>(backoff, give_up - now));
    backoff = std::min(backoff * 2, std::chrono::milliseconds{1000});
  }
}

LeaseController::~LeaseController() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  if (monitor_.joinable()) monitor_.join();
  gate_.set_acquirer(nullptr);
  // An op thread may still hold a copy of the connection for a moment: its
  // handlers must not call back into this controller any more.
  client_->on_revoke(nullptr);
  client_->on_evict(nullptr);
  client_->on_lost(nullptr);
  client_.reset();  // the last owner joins the I/O thread
}

std::uint64_t LeaseController::declared_need() const {
  const alloc::Stats stats = arena_.stats();
  std::lock_guard<std::mutex> lock(mutex_);
  return std::max<std::uint64_t>({stats.reserved_bytes_peak, stats.reserved_bytes, need_floor_bytes_});
}

void LeaseController::acquire() {
  // Safe mode: only while the enabling thread waits here can no unseen work
  // run on it, so only then may the broker take the memory (see the header).
  bool unpinned = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!safe_mode_reason_.empty() && std::this_thread::get_id() == main_thread_) main_inside_ = unpinned = true;
  }
  try {
    acquire_and_restore(unpinned);
  } catch (...) {
    leave_acquire(unpinned, /*held=*/false);
    throw;
  }
  leave_acquire(unpinned, /*held=*/true);
}

void LeaseController::leave_acquire(bool unpinned, bool held) {
  if (!unpinned) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    main_inside_ = false;
  }
  if (held) return;  // holding: no evict comes before the next release, which pins
  try {
    client()->report_residency(arena_.resident_bytes(), /*pinned=*/true);
  } catch (const client::BrokerError&) {
  }
}

bool LeaseController::in_safe_mode() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return !safe_mode_reason_.empty();
}

void LeaseController::enter_safe_mode(const std::string& reason) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!safe_mode_reason_.empty()) return;
    safe_mode_reason_ = reason.empty() ? std::string("unspecified") : reason;
  }
  // Released with evictable memory: from now on unseen work may touch it.
  if (gate_.state() == LeaseState::released) {
    try {
      client()->report_residency(arena_.resident_bytes(), /*pinned=*/true);
    } catch (const client::BrokerError&) {
    }
  }
}

void LeaseController::acquire_and_restore(bool unpinned) {
  const Clock::time_point start = Clock::now();
  std::uint64_t need = declared_need();
  int losses = 0;
  for (int attempt = 0;; ++attempt) {
    ensure_connected();
    std::shared_ptr<client::BrokerClient> connection = client();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      declared_bytes_ = need;
    }
    if (unpinned) connection->report_residency(arena_.resident_bytes());  // evictable while we wait
    try {
      connection->acquire(need);
    } catch (const client::BrokerError&) {
      // Lost while waiting (the broker went away): reconnect and ask again.
      if (connection->connected() || ++losses > 3) throw;
      continue;
    }
    try {
      arena_.restore_all();
      break;
    } catch (const alloc::OutOfMemory& e) {
      // The broker granted less room than restoring takes (e.g. another
      // process grew meanwhile): give the lease back and ask for more.
      // In safe mode on another thread than the enabling one, still pinned.
      connection->release(arena_.resident_bytes(), /*pinned=*/in_safe_mode() && !unpinned);
      if (attempt >= 3) throw;
      need = std::max<std::uint64_t>(need, arena_.resident_bytes() + e.requested_bytes());
      std::lock_guard<std::mutex> lock(mutex_);
      need_floor_bytes_ = need;
    }
  }
  record_wait(ms_since(start));
}

void LeaseController::record_wait(double wait_ms) {
  std::lock_guard<std::mutex> lock(mutex_);
  wait_ms_.push_back(wait_ms);
  wait_total_ms_ += wait_ms;
  ++switches_;
}

void LeaseController::acquire_and_hold() {
  gate_.enter();  // acquires when released
  gate_.exit();
  arena_.restore_all();
}

void LeaseController::unmanage() {
  {
    // From here no evict offloads and no revoke yields: once the gate opens
    // for good, ops run at any time.
    std::lock_guard<std::mutex> lock(mutex_);
    unmanaged_ = true;
    revoke_pending_ = false;
  }
  acquire_and_hold();
  // The memory stays pinned from here, so nothing waits for the device's
  // work to end: the wait only keeps the lease while it finishes, and is
  // bounded as at a yield (a collective may wait for a peer that waits for
  // this device). A device error is the program's to see from its own calls.
  const SyncOutcome synced = device_sync_.synchronize(options_.yield_sync_timeout);
  if (synced.kind == SyncOutcome::Kind::failed) {
    std::fprintf(stderr, "acb: error: the device reported an error when synchronised at disable(): %s\n",
                 synced.error.c_str());
  } else if (synced.kind == SyncOutcome::Kind::timed_out) {
    std::fprintf(stderr,
                 "acb: the device did not synchronise within %lld ms at disable(); the lease is released with "
                 "the memory kept on the device, as after every disable() (ACB_YIELD_SYNC_TIMEOUT_MS)\n",
                 static_cast<long long>(options_.yield_sync_timeout.count()));
  }
  const std::uint64_t resident = arena_.resident_bytes();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    reported_pinned_bytes_ = resident;
  }
  client()->release(resident, /*pinned=*/true);
}

void LeaseController::manage() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    main_thread_ = std::this_thread::get_id();
    unmanaged_ = false;
    revoke_pending_ = false;
  }
  try {
    // Also for a fresh connection: memory kept since an earlier enable() is
    // on the device, and the broker must count it before the first acquire.
    client()->report_residency(arena_.resident_bytes(), in_safe_mode());
  } catch (const client::BrokerError&) {
    // Lost meanwhile: the first acquire reconnects and reports it.
  }
}

void LeaseController::yield_now() {
  if (!gate_.close_and_drain()) return;
  bool pinned = in_safe_mode();
  const SyncOutcome synced = device_sync_.synchronize(options_.yield_sync_timeout);
  if (synced.kind == SyncOutcome::Kind::failed) {
    // Not a lost connection: the device failed work of this process. What
    // that work left in memory is all there is; keep every byte where it is.
    const std::string reason = "the device reported an error when synchronised at a yield: " + synced.error;
    std::fprintf(stderr, "acb: error: %s; the lease is released with all memory kept on the device (safe mode)\n",
                 synced.error.c_str());
    enter_safe_mode(reason);
    pinned = true;
  } else if (synced.kind == SyncOutcome::Kind::timed_out) {
    std::fprintf(stderr,
                 "acb: the device did not synchronise within %lld ms at a yield (work still runs on it, e.g. a "
                 "collective waiting for a peer that waits for this device); the lease is released with the "
                 "memory kept on the device until it does (ACB_YIELD_SYNC_TIMEOUT_MS)\n",
                 static_cast<long long>(options_.yield_sync_timeout.count()));
    std::lock_guard<std::mutex> lock(mutex_);
    late_sync_ = true;
    ++yield_sync_timeouts_;
    pinned = true;
  }
  try {
    client()->release(arena_.resident_bytes(), pinned);
  } catch (const client::BrokerError&) {
    // The connection is gone: the broker has reclaimed the lease anyway.
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ++releases_;
  }
  gate_.mark_released();
}

void LeaseController::late_sync_returned(std::unique_lock<std::mutex>& lock) {
  late_sync_ = false;
  if (unmanaged_ || !safe_mode_reason_.empty()) return;  // pinned for other reasons
  std::shared_ptr<client::BrokerClient> connection = client_;
  lock.unlock();
  std::fprintf(stderr, "acb: the device's late synchronisation has returned: its memory is evictable again\n");
  // Holding: the next release reports it. Released: the broker hears it now.
  if (gate_.state() == LeaseState::released) {
    try {
      connection->report_residency(arena_.resident_bytes());
    } catch (const client::BrokerError&) {
    }
  }
  lock.lock();
}

bool LeaseController::regrow(std::size_t shortfall_bytes) {
  if (gate_.state() != LeaseState::holding) return false;
  std::uint64_t need = 0;
  {
    // The arena has already released its cached free segments: what it
    // holds now plus the segment it must map is the real need. The peak or
    // an earlier need would overstate it (a need above the capacity is
    // rejected, a spurious out-of-memory), the request would understate it.
    const std::uint64_t reserved = arena_.stats().reserved_bytes;
    std::lock_guard<std::mutex> lock(mutex_);
    need = reserved + shortfall_bytes;
    // Strictly above what the broker knows, or it never answers; at or below
    // it, the broker's view already had room that the device did not: ask
    // for the shortfall on top of it.
    if (need <= declared_bytes_) need = declared_bytes_ + shortfall_bytes;
    need_floor_bytes_ = need;
    declared_bytes_ = need;
    ++oom_regrows_;
  }
  // An acquire while holding is a growth request: the arbiter evicts other
  // residents until the larger need fits, then re-grants. The memory and
  // the gate stay as they are meanwhile (this op is in flight).
  try {
    client()->acquire(need);
  } catch (const client::LeaseRejected&) {
    return false;  // above the device's capacity: a real out-of-memory
  } catch (const client::BrokerError&) {
    return false;  // no broker to ask: the allocation fails as an out-of-memory
  }
  return true;
}

void LeaseController::on_revoke(const client::Revoke& revoke) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ++revokes_;
    if (unmanaged_) return;  // a revoke of the lease unmanage() is giving back
    revoke_pending_ = true;
    // No deadline: yield at the next idle gap only, however long the region runs.
    revoke_deadline_ = revoke.deadline_ms ? Clock::now() + std::chrono::milliseconds(*revoke.deadline_ms)
                                          : Clock::time_point::max();
  }
  wake_.notify_all();
}

void LeaseController::on_evict(client::BrokerClient& from, const client::Evict& evict) {
  bool unmanaged = false;
  bool safe = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ++evicts_;
    safe = !safe_mode_reason_.empty();
    // late_sync_: work may still run on the device (an offload would wait for it on this I/O thread).
    unmanaged = unmanaged_ || (safe && !main_inside_) || late_sync_;
  }
  if (unmanaged) {
    // Ops run ungated, unseen work may run, or a yield's synchronisation has
    // not returned: nothing may be offloaded. The broker hears why.
    try {
      from.report_residency(arena_.resident_bytes(), /*pinned=*/true);
    } catch (const client::BrokerError&) {
    }
    return;
  }
  try {
    gate_.with_state_locked([&](LeaseState state) {
      // Quiescent: the gate is released, or acquiring with the grant not read
      // yet (the acquirer waits for it, and this I/O thread reads it only
      // after this evict). Once the grant is read the acquirer restores and
      // opens the gate without asking anyone: an offload then would unmap
      // memory the next op runs on. The broker does send evicts to a holder
      // (a residency report it cannot account for), so that case is real;
      // the residency report below tells the broker nothing was released.
      const bool not_holding = state == LeaseState::released || state == LeaseState::acquiring;
      if (not_holding && !from.holds()) {
        if (safe) arena_.mark_all_written();  // unseen writes: no segment may be skipped as clean
        arena_.offload(evict.bytes == 0 ? SIZE_MAX : static_cast<std::size_t>(evict.bytes));
      }
      return 0;
    });
  } catch (const std::exception& e) {
    // E.g. the host backup limit: nothing was released; the residency
    // report below tells the broker so, and the I/O thread must live on.
    std::fprintf(stderr, "acb: evict of %llu bytes on device %d failed: %s\n",
                 static_cast<unsigned long long>(evict.bytes), evict.device, e.what());
  }
  const bool kept_pins = arena_.stats().export_pinned_bytes > 0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    evict_kept_pins_ = evict_kept_pins_ || kept_pins;
  }
  try {
    from.report_residency(arena_.resident_bytes());
  } catch (const client::BrokerError&) {
  }
}

void LeaseController::pins_released() {
  std::shared_ptr<client::BrokerClient> connection;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!evict_kept_pins_) return;
    evict_kept_pins_ = false;
    connection = client_;
  }
  // Unasked: the broker counts all of it as evictable again (it stopped
  // asking when an evict released nothing).
  try {
    if (connection) connection->report_residency(arena_.resident_bytes());
  } catch (const client::BrokerError&) {
  }
}

void LeaseController::monitor_loop(std::uint32_t last_entries) {
  const auto tick = std::max(std::chrono::milliseconds{1}, options_.idle_gap / 2);
  Clock::time_point last_activity = Clock::now();
  bool in_region = false;
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stop_) {
    // While a revoke waits for the idle gap, tick every millisecond: the gap
    // is measured from the last tick that saw activity, so a coarse tick
    // would hand the device over up to a tick late at every switch.
    wake_.wait_for(lock, revoke_pending_ ? std::min(tick, std::chrono::milliseconds{1}) : tick);
    if (stop_) break;
    const Clock::time_point now = Clock::now();
    const std::uint32_t entries = gate_.entries();
    if (entries != last_entries || gate_.in_flight() > 0) {
      last_entries = entries;
      last_activity = now;
      if (!in_region) {
        in_region = true;
        ++regions_;
      }
    } else if (in_region && now - last_activity >= options_.idle_gap) {
      in_region = false;
    }
    if (late_sync_ && !device_sync_.busy()) late_sync_returned(lock);
    if (stop_) break;
    if (unmanaged_) {
      // Ungated ops may grow or shrink the arena: keep the broker's count true.
      const std::uint64_t resident = arena_.resident_bytes();
      if (resident != reported_pinned_bytes_) {
        reported_pinned_bytes_ = resident;
        std::shared_ptr<client::BrokerClient> connection = client_;
        lock.unlock();
        try {
          connection->report_residency(resident, /*pinned=*/true);
        } catch (const client::BrokerError&) {
        }
        lock.lock();
      }
      continue;
    }
    if (!revoke_pending_) continue;
    const LeaseState state = gate_.state();
    if (state == LeaseState::released) {
      revoke_pending_ = false;  // already given back
      continue;
    }
    if (state != LeaseState::holding) continue;  // acquiring: honour it once held
    const bool idle = !in_region && gate_.in_flight() == 0;
    // Safe mode: an idle gap says nothing about unseen work; only the deadline counts.
    if ((idle && safe_mode_reason_.empty()) || now >= revoke_deadline_) {
      revoke_pending_ = false;
      lock.unlock();
      yield_now();
      lock.lock();
    }
  }
}

void LeaseController::set_priority(const std::string& priority) {
  client()->request({{"op", "set_priority"}, {"priority", priority}});
  std::lock_guard<std::mutex> lock(mutex_);
  options_.client.priority = priority;  // a reconnect says hello with it
}

nlohmann::json LeaseController::broker_status() { return client()->request({{"op", "status"}}); }

ControllerStatus LeaseController::status() const {
  ControllerStatus out;
  out.lease_state = state_name(gate_.state());
  const std::shared_ptr<client::BrokerClient> connection = client();
  out.client_id = connection->welcome().client_id;
  out.broker_device = connection->welcome().device;
  const alloc::Stats stats = arena_.stats();
  out.resident_bytes = arena_.resident_bytes();
  out.offloaded_bytes = stats.offloaded_bytes;
  out.reserved_bytes_peak = stats.reserved_bytes_peak;
  out.offloads = stats.offload_count;
  out.offload_copied_bytes = stats.offload_copied_bytes;
  out.skipped_clean_bytes = stats.skipped_clean_bytes;
  out.restored_bytes = stats.restored_bytes;
  out.host_backup_bytes = stats.host_backup_bytes;
  out.host_pinned_bytes = stats.host_pinned_bytes;
  out.host_backup_limit_bytes = arena_.host_backup_limit_bytes();
  std::lock_guard<std::mutex> lock(mutex_);
  out.waits = wait_ms_.size();
  out.wait_total_ms = wait_total_ms_;
  if (!wait_ms_.empty()) {
    std::vector<double> sorted = wait_ms_;
    std::sort(sorted.begin(), sorted.end());
    const std::size_t rank = static_cast<std::size_t>(std::ceil(0.99 * static_cast<double>(sorted.size())));
    out.wait_p99_ms = sorted[std::min(sorted.size() - 1, rank == 0 ? 0 : rank - 1)];
    out.wait_max_ms = sorted.back();
  }
  out.switches = switches_;
  out.releases = releases_;
  out.revokes = revokes_;
  out.evicts = evicts_;
  out.regions = regions_;
  out.oom_regrows = oom_regrows_;
  out.reconnects = reconnects_;
  out.yield_sync_timeouts = yield_sync_timeouts_;
  out.safe_mode_reason = safe_mode_reason_;
  return out;
}

}  // namespace acb::torch_hook
