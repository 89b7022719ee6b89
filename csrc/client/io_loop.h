// IoLoop: the client's background I/O thread.
//
// It owns the read side of the broker connection: it polls the socket,
// splits the byte stream into frames, and hands each message to a sink on
// this same thread (grants wake acquire(), revokes run the user's callback).
// Between frames it sends a heartbeat whenever nothing was sent for one
// heartbeat interval, so a process busy computing (or holding the GIL)
// still looks alive to the broker.
//
// The loop ends when the peer closes, a frame is malformed, the sink throws,
// or stop() shuts the socket down; it then calls on_lost exactly once.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "client/socket.h"
#include "common/frame.h"

namespace acb::client {

class IoLoop {
 public:
  struct Sink {
    std::function<void(nlohmann::json&)> on_message;  ///< each message, in order
    std::function<void(const std::string&)> on_lost;  ///< once, with the reason
  };

  /// Starts the thread. `parser` may already hold bytes that arrived with
  /// the welcome; `heartbeat_interval` 0 disables heartbeats.
  IoLoop(Socket& socket, wire::FrameParser parser, std::chrono::milliseconds heartbeat_interval, Sink sink);
  /// Stops the thread (shuts the socket down) and joins it.
  ~IoLoop();
  IoLoop(const IoLoop&) = delete;
  IoLoop& operator=(const IoLoop&) = delete;

  /// Sends one message; any thread. Counts as liveness, postponing the next heartbeat.
  void send(const nlohmann::json& message);

  /// Shuts the connection down and joins the thread; idempotent. Must not be
  /// called from the I/O thread itself.
  void stop();

  /// True on the I/O thread (inside a callback), where waiting for a frame would deadlock.
  bool on_io_thread() const { return std::this_thread::get_id() == thread_.get_id(); }

 private:
  void run();
  void read_available();

  Socket& socket_;
  wire::FrameParser parser_;
  std::chrono::milliseconds heartbeat_interval_;
  Sink sink_;
  std::atomic<std::int64_t> last_send_ns_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace acb::client
