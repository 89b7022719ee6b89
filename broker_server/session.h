// Session: one client's TCP connection to the broker.
//
// It reads bytes into a FrameParser (checked maximum frame size), hands every
// complete payload to its SessionHost (the server), and writes frames from a
// queue with the write_in_progress idiom: at most one async_write is in
// flight and the queue's front is the frame being written. A session closes
// itself on any read or write error. close_after_error() tells the host at
// once that the client is gone, queues a last error frame, and closes
// gracefully: once the queue is flushed it shuts down its sending side and
// discards input until the peer closes or kLingerMs pass, so that the error
// frame is not destroyed by a reset caused by unread input. The host hears
// on_session_closed() exactly once.
//
// Thread-safety: none; everything runs on the server's one io_context thread.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include "broker_server/arbiter.h"
#include "broker_server/handshake.h"
#include "common/frame.h"

namespace acb::broker {

class Session;

/// What a session reports to; the server implements it.
class SessionHost {
 public:
  virtual ~SessionHost() = default;
  /// One complete frame payload arrived.
  virtual void on_frame(Session& session, std::string_view payload) = 0;
  /// The framing broke (oversized length); the session is already closing.
  virtual void on_framing_error(Session& session, const std::string& reason) = 0;
  /// The connection is gone; called once.
  virtual void on_session_closed(Session& session) = 0;
};

/// What the server knows about the peer once it said hello.
struct PeerState {
  bool authenticated = false;
  bool admin = false;
  bool in_arbiter = false;                 ///< registered with Arbiter::on_hello
  std::optional<TimeUs> waiting_since_us;  ///< an acquire is pending since
  std::uint64_t reported_resident_bytes = 0;
  std::string name;
  TimeUs connected_us = 0;            ///< when the connection was accepted (server clock)
  std::optional<std::uint32_t> uid;  ///< the peer's uid (peer_credentials.h); nullopt: unknown
  std::optional<Handshake> handshake;  ///< challenged, waiting for "auth"
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  /// Largest backlog of unsent bytes before a peer that does not read is dropped.
  static constexpr std::size_t kMaxQueuedBytes = 8u << 20;
  /// How long a closing session waits for the peer to close after the error frame.
  static constexpr int kLingerMs = 2000;

  Session(boost::asio::ip::tcp::socket socket, SessionHost& host, ClientId id);
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  /// Starts reading. Call once, after the session is owned by a shared_ptr.
  void start();
  /// Queues one already framed message.
  void send_frame(std::string frame);
  /// Queues `error_frame`, stops reading, and closes once it is written.
  void close_after_error(std::string error_frame);
  /// Closes the socket now; pending frames are dropped.
  void close();

  ClientId id() const { return id_; }
  const std::string& peer() const { return peer_; }
  bool closing() const { return closing_; }
  PeerState& state() { return state_; }

 private:
  void do_read();
  void on_read(const boost::system::error_code& ec, std::size_t bytes);
  void do_write();
  void on_write(const boost::system::error_code& ec, std::size_t bytes);
  void finish();
  void linger();
  void close_socket();

  boost::asio::ip::tcp::socket socket_;
  boost::asio::steady_timer linger_timer_;
  SessionHost& host_;
  ClientId id_;
  std::string peer_;
  wire::FrameParser parser_;
  std::string payload_;  // reused for every frame: no allocation per message once grown
  std::array<char, 4096> read_buffer_{};
  std::deque<std::string> write_queue_;
  std::size_t queued_bytes_ = 0;
  bool closing_ = false;   // input is discarded; close when the queue is flushed
  bool finished_ = false;  // host told (exactly once)
  bool closed_ = false;    // the socket is closed
  PeerState state_;
};

}  // namespace acb::broker
