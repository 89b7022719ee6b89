// Gate: slow paths (see gate.h). Every change of open_ happens under mutex_,
// which is what lets enter_slow() re-check it and count itself in safely.
#include "torch/gate.h"

#include <utility>

namespace acb::torch_hook {

void Gate::set_acquirer(Acquirer acquirer) {
  std::lock_guard<std::mutex> lock(mutex_);
  acquirer_ = std::move(acquirer);
}

LeaseState Gate::state() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return state_;
}

void Gate::enter_slow() {
  exit();  // not in flight while waiting, or a drain would wait for us
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    if (state_ == LeaseState::holding && open_.load()) {
      in_flight_.fetch_add(1, std::memory_order_seq_cst);
      return;
    }
    if (state_ == LeaseState::released && acquirer_) {
      state_ = LeaseState::acquiring;
      Acquirer acquirer = acquirer_;
      lock.unlock();
      try {
        acquirer();
      } catch (...) {
        lock.lock();
        state_ = LeaseState::released;
        changed_.notify_all();
        throw;
      }
      lock.lock();
      state_ = LeaseState::holding;
      open_.store(true);
      changed_.notify_all();
      continue;
    }
    changed_.wait(lock);
  }
}

void Gate::notify_drained() {
  { std::lock_guard<std::mutex> lock(mutex_); }
  changed_.notify_all();
}

bool Gate::close_and_drain() {
  std::unique_lock<std::mutex> lock(mutex_);
  if (state_ != LeaseState::holding) return false;
  state_ = LeaseState::yielding;
  draining_.store(true);
  open_.store(false);
  changed_.wait(lock, [&] { return (in_flight_.load() & kCountMask) == 0; });
  draining_.store(false);
  return true;
}

void Gate::mark_released() {
  std::lock_guard<std::mutex> lock(mutex_);
  state_ = LeaseState::released;
  open_.store(false);
  changed_.notify_all();
}

void Gate::reopen() {
  std::lock_guard<std::mutex> lock(mutex_);
  state_ = LeaseState::holding;
  open_.store(true);
  changed_.notify_all();
}

void Gate::force_open() { reopen(); }

}  // namespace acb::torch_hook
