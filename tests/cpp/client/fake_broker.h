// FakeBroker: an in-test broker that speaks docs/protocol.md over loopback.
//
// It listens on 127.0.0.1 port 0, runs the broker's side of the handshake
// (hello -> challenge with its proof, auth -> welcome, or an authentication
// error for a wrong client proof), records every later message, and
// runs an optional handler on its own thread for scripted replies (grant on
// acquire, status replies, ...). The test thread can wait for a message with
// a bounded timeout and send frames to a connection at any moment.
//
// As an impostor (Options::impostor, set_impostor) it plays a program that
// holds the broker's port without the token: its challenge carries a proof
// made with another token, followed at once by a welcome and a grant, to see
// whether a client trusts any of it.
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
#include "common/handshake.h"

namespace acb::test {

class FakeBroker {
 public:
  struct Options {
    std::string token = "test-token";
    std::uint64_t heartbeat_interval_ms = 0;  ///< 0: the client sends none
    std::uint64_t capacity_bytes = 1ull << 30;
    bool impostor = false;  ///< does not know the token (see above)
  };
  /// The client_id an impostor's welcome names, so a test can tell whom a client trusted.
  static constexpr std::uint64_t kImpostorClientId = 666;
  /// Called on the broker thread for each message after hello.
  using Handler = std::function<void(FakeBroker&, int connection, const nlohmann::json&)>;

  explicit FakeBroker(Options options);
  FakeBroker() : FakeBroker(Options{}) {}
  ~FakeBroker();
  FakeBroker(const FakeBroker&) = delete;
  FakeBroker& operator=(const FakeBroker&) = delete;

  std::uint16_t port() const { return port_; }
  void set_handler(Handler handler);
  /// From the next hello on, answer as an impostor (true) or as the broker.
  void set_impostor(bool impostor);

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
  /// The hello frames received, in order ("auth" frames are recorded like later messages).
  std::vector<nlohmann::json> hellos() const;

 private:
  struct Conn {
    int fd = -1;
    bool greeted = false;        ///< hello received
    bool authenticated = false;  ///< auth verified, welcome sent
    bool admin = false;
    auth::Nonce client_nonce{};
    auth::Nonce broker_nonce{};
    wire::FrameParser parser;
  };
  void run();
  void on_frame(int index, const nlohmann::json& message);
  /// The broker's side of the handshake; true when `message` was part of it.
  bool on_handshake(int index, const nlohmann::json& message);
  void send_welcome(int index, std::uint64_t client_id);

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
  bool impostor_ = false;
  std::thread thread_;
};

}  // namespace acb::test
