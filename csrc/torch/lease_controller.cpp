// LeaseController: acquire/yield/evict policy and the idle-gap monitor (see
// lease_controller.h). Ordering rules that keep memory safe:
//   - release is sent before the gate is marked released, so a waiting op
//     never starts a second acquire while the client still holds;
//   - evicts are executed on the I/O thread under the gate's state lock, so
//     they finish before a later grant is read and never run while holding.
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
    : arena_(arena), gate_(gate), options_(std::move(options)) {
  if (options_.idle_gap.count() < 1) options_.idle_gap = std::chrono::milliseconds{1};
  client_ = std::make_unique<client::BrokerClient>(options_.client);
  client_->on_revoke([this](const client::Revoke& revoke) { on_revoke(revoke); });
  client_->on_evict([this](const client::Evict& evict) { on_evict(evict); });
  gate_.set_acquirer([this] { acquire(); });
  monitor_ = std::thread([this] { monitor_loop(); });
}

LeaseController::~LeaseController() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  if (monitor_.joinable()) monitor_.join();
  gate_.set_acquirer(nullptr);
  client_.reset();  // joins the I/O thread: no handler runs after this
}

std::uint64_t LeaseController::declared_need() const {
  const alloc::Stats stats = arena_.stats();
  std::lock_guard<std::mutex> lock(mutex_);
  return std::max<std::uint64_t>({stats.reserved_bytes_peak, stats.reserved_bytes, need_floor_bytes_});
}

void LeaseController::acquire() {
  const Clock::time_point start = Clock::now();
  std::uint64_t need = declared_need();
  for (int attempt = 0;; ++attempt) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      declared_bytes_ = need;
    }
    client_->acquire(need);
    try {
      arena_.restore_all();
      break;
    } catch (const alloc::OutOfMemory& e) {
      // The broker granted less room than restoring takes (e.g. another
      // process grew meanwhile): give the lease back and ask for more.
      client_->release(arena_.resident_bytes());
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

void LeaseController::yield_now() {
  if (!gate_.close_and_drain()) return;
  try {
    arena_.driver().synchronize_device(arena_.device());
    client_->release(arena_.resident_bytes());
  } catch (...) {
    // The connection is gone: the broker has reclaimed the lease anyway.
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ++releases_;
  }
  gate_.mark_released();
}

bool LeaseController::regrow(std::size_t requested_bytes) {
  if (gate_.state() != LeaseState::holding) return false;
  std::uint64_t need = 0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    // Strictly above what the broker knows, or it never answers.
    need = std::max<std::uint64_t>(declared_bytes_, arena_.stats().reserved_bytes) + requested_bytes;
    need_floor_bytes_ = need;
    declared_bytes_ = need;
    ++oom_regrows_;
  }
  // An acquire while holding is a growth request: the arbiter evicts other
  // residents until the larger need fits, then re-grants. The memory and
  // the gate stay as they are meanwhile (this op is in flight).
  try {
    client_->acquire(need);
  } catch (const client::LeaseRejected&) {
    return false;  // above the device's capacity: a real out-of-memory
  }
  return true;
}

void LeaseController::on_revoke(const client::Revoke& revoke) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ++revokes_;
    revoke_pending_ = true;
    // No deadline: yield at the next idle gap only, however long the region runs.
    revoke_deadline_ = revoke.deadline_ms ? Clock::now() + std::chrono::milliseconds(*revoke.deadline_ms)
                                          : Clock::time_point::max();
  }
  wake_.notify_all();
}

void LeaseController::on_evict(const client::Evict& evict) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ++evicts_;
  }
  try {
    gate_.with_state_locked([&](LeaseState state) {
      // Not holding means no op is in flight and none can start before the
      // next grant, which this I/O thread has not read yet.
      if (state == LeaseState::released || state == LeaseState::acquiring) {
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
  try {
    client_->report_residency(arena_.resident_bytes());
  } catch (const client::BrokerError&) {
  }
}

void LeaseController::monitor_loop() {
  const auto tick = std::max(std::chrono::milliseconds{1}, options_.idle_gap / 2);
  std::uint32_t last_entries = gate_.entries();
  Clock::time_point last_activity = Clock::now();
  bool in_region = false;
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stop_) {
    wake_.wait_for(lock, tick);
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
    if (!revoke_pending_) continue;
    const LeaseState state = gate_.state();
    if (state == LeaseState::released) {
      revoke_pending_ = false;  // already given back
      continue;
    }
    if (state != LeaseState::holding) continue;  // acquiring: honour it once held
    const bool idle = !in_region && gate_.in_flight() == 0;
    if (idle || now >= revoke_deadline_) {
      revoke_pending_ = false;
      lock.unlock();
      yield_now();
      lock.lock();
    }
  }
}

void LeaseController::set_priority(const std::string& priority) {
  client_->request({{"op", "set_priority"}, {"priority", priority}});
}

nlohmann::json LeaseController::broker_status() { return client_->request({{"op", "status"}}); }

ControllerStatus LeaseController::status() const {
  ControllerStatus out;
  out.lease_state = state_name(gate_.state());
  out.client_id = client_->welcome().client_id;
  out.broker_device = client_->welcome().device;
  const alloc::Stats stats = arena_.stats();
  out.resident_bytes = arena_.resident_bytes();
  out.offloaded_bytes = stats.offloaded_bytes;
  out.reserved_bytes_peak = stats.reserved_bytes_peak;
  out.offloads = stats.offload_count;
  out.offload_copied_bytes = stats.offload_copied_bytes;
  out.skipped_clean_bytes = stats.skipped_clean_bytes;
  out.restored_bytes = stats.restored_bytes;
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
  return out;
}

}  // namespace acb::torch_hook
