// DeviceSync: synchronises a device with a time limit, for the yield path.
//
// cuCtxSynchronize cannot be interrupted, and it can wait indefinitely: a
// collective's kernel waits for a peer rank, and the peer may itself wait for
// this device (gated by the broker until this process yields). So the call
// runs on a worker thread of its own and the caller waits for it at most a
// given time. A synchronisation that did not finish in time keeps running:
// busy() stays true until it returns, and a later synchronize() waits for it
// before synchronising again.
//
// Errors of the driver (DriverError: an illegal address, a lost device) come
// back as an outcome, with the driver's text, never as a lost connection.
//
// Thread-safety: every method is thread-safe. The destructor joins the
// worker, except when a synchronisation is still stuck in the driver: then
// the worker is left to finish on its own (it touches only shared state).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "alloc/driver.h"

namespace acb::torch_hook {

/// What a bounded synchronisation found.
struct SyncOutcome {
  enum class Kind { done, failed, timed_out };
  Kind kind = Kind::done;
  /// failed: the driver's error text.
  std::string error;
};

class DeviceSync {
 public:
  DeviceSync(alloc::Driver& driver, int device);
  ~DeviceSync();
  DeviceSync(const DeviceSync&) = delete;
  DeviceSync& operator=(const DeviceSync&) = delete;

  /// Waits until all work on the device submitted before the call is done,
  /// or `timeout` has passed (timed_out; the synchronisation goes on).
  SyncOutcome synchronize(std::chrono::milliseconds timeout);
  /// True while a synchronisation runs in the driver (one that timed out, until it returns).
  bool busy() const;

 private:
  struct State;
  /// The worker's loop; it holds `state` so that it may outlive this object.
  static void work(const std::shared_ptr<State>& state, alloc::Driver& driver, int device);

  std::shared_ptr<State> state_;
  std::thread worker_;
};

}  // namespace acb::torch_hook
