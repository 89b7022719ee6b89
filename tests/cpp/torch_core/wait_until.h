// Bounded waiting for the torch core tests: poll a condition that another
// thread will make true, yielding between polls, or wait for a Latch another
// thread opens; both give up after a timeout (the caller REQUIREs the
// result), so a regression fails instead of hanging.
#pragma once

#include <chrono>
#include <future>
#include <thread>

namespace acb::test {

template <class Pred>
bool wait_until(Pred&& pred, std::chrono::milliseconds timeout = std::chrono::milliseconds{5000}) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(200));  // a poll interval, not synchronisation
  }
  return true;
}

/// A one-shot signal between threads.
struct Latch {
  std::promise<void> promise;
  std::shared_future<void> future = promise.get_future().share();
  void open() { promise.set_value(); }
  bool wait(std::chrono::milliseconds timeout = std::chrono::milliseconds{5000}) const {
    return future.wait_for(timeout) == std::future_status::ready;
  }
};

}  // namespace acb::test
