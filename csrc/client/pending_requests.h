// PendingRequests: replies to seq-numbered requests (status, trace, admin
// ops), matched by "seq" and handed to the thread that waits for them.
//
// The requesting thread registers a seq before it sends, then waits; the
// I/O thread completes the slot when a frame with that seq arrives. A reply
// that nobody waits for any more (the waiter timed out) is dropped.
//
// Thread-safety: all methods lock one mutex; safe from any thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace acb::client {

class PendingRequests {
 public:
  /// A fresh seq, registered as awaited. Throws BrokerError when the
  /// connection is already lost.
  std::uint64_t open();
  /// Waits for the reply to seq and forgets it. Throws BrokerError on an
  /// "error" reply (with its reason), on loss, or when timeout passes.
  nlohmann::json wait(std::uint64_t seq, std::chrono::milliseconds timeout);
  /// Forgets seq without waiting (e.g. its send failed).
  void abandon(std::uint64_t seq);

  /// I/O thread: a frame with a seq arrived. Returns false when nobody waits for it.
  bool complete(std::uint64_t seq, nlohmann::json reply);
  /// I/O thread: the connection is gone; every waiter throws with reason.
  void fail_all(const std::string& reason);

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::uint64_t next_seq_ = 1;
  std::map<std::uint64_t, std::optional<nlohmann::json>> slots_;
  std::string lost_;
};

}  // namespace acb::client
