// AcceptBackoff: when accept fails for want of resources, how long to wait
// before the next try, and when to say so in the log.
//
// Out of descriptors (EMFILE, ENFILE) or kernel memory (ENOBUFS, ENOMEM),
// accept fails at once while the pending connection stays queued, so
// retrying at once spins at 100% CPU and writes a log line per attempt,
// starving the connections that are still served. The server instead waits
// kFirstDelay, doubling to kMaxDelay while the failures go on, logs one line
// when a burst of failures starts and one when accepting works again.
// Policy only; the server owns the timer.
//
// Thread-safety: none; used from the server's io_context thread.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>

#include <boost/system/error_code.hpp>

namespace acb::broker {

class AcceptBackoff {
 public:
  static constexpr std::chrono::milliseconds kFirstDelay{50};
  static constexpr std::chrono::milliseconds kMaxDelay{1000};

  /// Whether `ec` from accept means "out of resources" (back off) rather than
  /// one lost connection (accept again at once).
  static bool is_resource_error(const boost::system::error_code& ec);

  /// A resource failure: the delay before the next accept.
  std::chrono::milliseconds on_failure() {
    ++failures_;
    const auto delay = next_delay_;
    next_delay_ = std::min(next_delay_ * 2, kMaxDelay);
    return delay;
  }
  /// An accept worked: returns how many failures the burst it ends had (0: none).
  std::uint64_t on_success() {
    const auto failures = failures_;
    failures_ = 0;
    next_delay_ = kFirstDelay;
    return failures;
  }
  /// Failures in the current burst; 1 right after the first.
  std::uint64_t failures() const { return failures_; }

 private:
  std::uint64_t failures_ = 0;
  std::chrono::milliseconds next_delay_ = kFirstDelay;
};

}  // namespace acb::broker
