// FakeBroker: an in-test broker that speaks docs/protocol.md over loopback.
//
// It listens on 127.0.0.1 port 0, answers hello with a welcome (or an
// authentication error for a wrong token), records every later message, and
// runs an optional handler on its own thread for scripted replies (grant on
// acquire, status replies, ...). The test thread can wait for a message with
// a bounded timeout and send frames to a connection at any moment.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/frame.h"

namespace acb::test {

class FakeBroker {
 public:
  struct Options {
    std::string token = "test-token";
    std::uint64_t heartbeat_interval_ms = 0;  ///< 0: the client sends none
    std::uint64_t capacity_bytes = 1ull << 30;
  };
  /// Called on the broker thread for each message after hello.
  using Handler = std::function<void(FakeBroker&, int connection, const nlohmann::json&)>;

  explicit FakeBroker(Options options);
  FakeBroker() : FakeBroker(Options{}) {}
  ~FakeBroker();
  FakeBroker(const FakeBroker&) = delete;
  FakeBroker& operator=(const FakeBroker&) = delete;

  std::uint16_t port() const { return port_; }
  void set_handler(Handler handler);

  /// Sends a message (or raw bytes) to connection `connection` (0 = first accepted).
  void send(int connection, const nlohmann::json& message);
  void send_raw(int connection, const std::string& bytes);
  /// Closes one connection from the broker's side.
  void close(int connection);

  /// Waits up to timeout for a recorded message with this op and removes it.
  std::optional<nlohmann::json> wait_for(const std::string& op,
                                         std::chrono::milliseconds timeout = std::chrono::milliseconds{5000});
  /// Waits until at least `count` messages with this op were recorded in total.
  bool wait_count(const std::string& op, std::size_t count,
                  std::chrono::milliseconds timeout = std::chrono::milliseconds{5000});
  /// The hello frames received, in order.
  std::vector<nlohmann::json> hellos() const;

 private:
  struct Conn {
    int fd = -1;
    bool greeted = false;
    wire::FrameParser parser;
  };
  void run();
  void on_frame(int index, const nlohmann::json& message);

  Options options_;
  int listen_fd_ = -1;
  int wake_pipe_[2] = {-1, -1};
  std::uint16_t port_ = 0;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<Conn> conns_;
  std::deque<nlohmann::json> received_;
  std::vector<nlohmann::json> hellos_;
  std::map<std::string, std::size_t> counts_;
  Handler handler_;
  std::mutex send_mutex_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace acb::test
