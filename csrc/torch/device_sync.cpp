// DeviceSync (see device_sync.h).
#include "torch/device_sync.h"

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>

namespace acb::torch_hook {

struct DeviceSync::State {
  std::mutex mutex;
  std::condition_variable wake;
  std::uint64_t requested = 0;  ///< synchronisations asked for
  std::uint64_t running = 0;    ///< the request the driver call in progress covers (0: none)
  std::uint64_t completed = 0;  ///< every request up to this one is answered
  std::string error;            ///< the driver's error for `completed`; empty: it succeeded
  bool stop = false;
};

DeviceSync::DeviceSync(alloc::Driver& driver, int device) : state_(std::make_shared<State>()) {
  worker_ = std::thread([state = state_, &driver, device] { work(state, driver, device); });
}

DeviceSync::~DeviceSync() {
  bool stuck = false;
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    state_->stop = true;
    stuck = state_->running != 0;
  }
  state_->wake.notify_all();
  if (stuck)
    worker_.detach();  // a driver call that may never return: joining would hang the process
  else
    worker_.join();
}

SyncOutcome DeviceSync::synchronize(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(state_->mutex);
  const std::uint64_t target = ++state_->requested;
  state_->wake.notify_all();
  SyncOutcome outcome;
  if (!state_->wake.wait_for(lock, timeout, [&] { return state_->completed >= target; })) {
    outcome.kind = SyncOutcome::Kind::timed_out;
    return outcome;
  }
  if (!state_->error.empty()) {
    outcome.kind = SyncOutcome::Kind::failed;
    outcome.error = state_->error;
  }
  return outcome;
}

bool DeviceSync::busy() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->running != 0;
}

void DeviceSync::work(const std::shared_ptr<State>& state, alloc::Driver& driver, int device) {
  std::unique_lock<std::mutex> lock(state->mutex);
  for (;;) {
    state->wake.wait(lock, [&] { return state->stop || state->requested > state->completed; });
    if (state->stop) return;
    // One driver call answers every request made before it starts.
    const std::uint64_t target = state->requested;
    state->running = target;
    lock.unlock();
    std::string error;
    try {
      driver.synchronize_device(device);
    } catch (const std::exception& e) {
      error = e.what();
    }
    lock.lock();
    state->running = 0;
    state->completed = target;
    state->error = std::move(error);
    state->wake.notify_all();
  }
}

}  // namespace acb::torch_hook
