// Session: one client's TCP connection to the broker.
//
// It reads bytes into a FrameParser (checked maximum frame size: small until
// the host calls allow_full_frames() after authentication), hands every
// complete payload to its SessionHost (the server), and writes frames from a
// queue with the write_in_progress idiom: at most one async_write is in
// flight, and it gathers every frame queued when it starts (one system call
// for a burst of replies instead of one per frame). A session closes itself
// on any read or write error.
//
// Output is bounded three ways. Backpressure: while more than
// kReadPauseBytes wait to be sent, the session handles no further frames
// and reads nothing, until the peer has read enough that the queue drains
// below kReadResumeBytes; a client that pipelines requests is slowed to the
// pace at which it reads its replies, never closed. Per connection: a frame
// that would take the queue above kMaxQueuedBytes (only what the broker
// sends unasked can, e.g. grants and revokes to a peer that never reads)
// closes the session. In total: every session of one host adds its queue
// to one OutputBudget; past its limit the host closes the session with the
// largest backlog. close_after_error() tells the host at
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
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/buffer.hpp>
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
  /// The OutputBudget is over its limit after `session` queued a frame.
  virtual void on_output_over_budget(Session& session) = 0;
  /// Microseconds the session's next frame must wait (its user's RequestBudget
  /// is in debt); 0: handle it now.
  /// `after_waiting`: the session waited as told and this is its first frame since.
  virtual std::uint64_t frame_wait_us(Session& session, bool after_waiting) = 0;
  /// The session waited as frame_wait_us told it to (or closed while waiting).
  virtual void frame_waited(Session& session) = 0;
};

/// The bytes queued for sending over all sessions of one host.
struct OutputBudget {
  std::size_t queued_bytes = 0;
  std::size_t limit_bytes = 0;  ///< the host sets it (max_queued_output_mib)
  bool over() const { return queued_bytes > limit_bytes; }
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
  bool admitted = false;               ///< counted in the server's ConnectionLimits
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  /// Largest backlog of unsent bytes before a peer that does not read is dropped.
  static constexpr std::size_t kMaxQueuedBytes = 8u << 20;
  /// Above this backlog the session stops handling and reading frames...
  static constexpr std::size_t kReadPauseBytes = 256u << 10;
  /// ...until the backlog is below this.
  static constexpr std::size_t kReadResumeBytes = 64u << 10;
  /// How long a closing session waits for the peer to close after the error frame.
  static constexpr int kLingerMs = 2000;
  /// How much input a closing session discards while it waits: a peer that
  /// sends more is not reading the error frame either, and draining it for
  /// kLingerMs at loopback speed would cost the broker's thread its time.
  static constexpr std::size_t kMaxLingerDiscardBytes = 64u << 10;

  /// `budget` must outlive the session's last close().
  Session(boost::asio::ip::tcp::socket socket, SessionHost& host, ClientId id, OutputBudget& budget);
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  /// Starts reading. Call once, after the session is owned by a shared_ptr.
  void start();
  /// Lifts the frame limit from wire::kMaxUnauthenticatedFrameBytes (every
  /// connection starts there) to wire::kMaxFrameBytes; call once authenticated.
  void allow_full_frames() { parser_.set_max_payload_bytes(wire::kMaxFrameBytes); }
  /// Queues one already framed message.
  void send_frame(std::string frame);
  /// Queues `error_frame`, stops reading, and closes once it is written and
  /// the peer closed, or kLingerMs after the last of these steps.
  void close_after_error(std::string error_frame);
  /// For a connection refused at accept, before start(): writes `error_frame`
  /// if the socket takes it at once, then closes. No linger: a flood of
  /// refused connections must not hold descriptors.
  void refuse(const std::string& error_frame);
  /// Closes the socket now; pending frames are dropped.
  void close();

  ClientId id() const { return id_; }
  const std::string& peer() const { return peer_; }
  bool closing() const { return closing_; }
  /// Bytes queued and not yet written.
  std::size_t queued_bytes() const { return queued_bytes_; }
  /// Whether backpressure has paused reading.
  bool read_paused() const { return read_paused_; }
  PeerState& state() { return state_; }

 private:
  void do_read();
  void on_read(const boost::system::error_code& ec, std::size_t bytes);
  void handle_frames();
  void throttle(std::uint64_t wait_us);
  void enqueue(std::string frame);
  void do_write();
  void on_write(const boost::system::error_code& ec, std::size_t bytes);
  void finish();
  void linger();
  void arm_linger_timer();
  void close_socket();

  boost::asio::ip::tcp::socket socket_;
  boost::asio::steady_timer linger_timer_;
  boost::asio::steady_timer throttle_timer_;
  SessionHost& host_;
  ClientId id_;
  std::string peer_;
  wire::FrameParser parser_;
  std::string payload_;  // reused for every frame: no allocation per message once grown
  std::array<char, 4096> read_buffer_{};
  std::vector<std::string> queued_;                     // frames waiting for the next write
  std::vector<std::string> writing_;                    // frames of the write in flight
  std::vector<boost::asio::const_buffer> write_buffers_;  // writing_, as one gather list
  OutputBudget& budget_;
  std::size_t queued_bytes_ = 0;  // queued_ and writing_ together
  bool write_in_progress_ = false;
  bool read_in_progress_ = false;
  bool read_paused_ = false;  // backpressure: frames are left in parser_ until the queue drains
  bool throttled_ = false;    // the user's request budget is in debt: frames wait for throttle_timer_
  bool just_waited_ = false;  // the next frame is the first since throttle_timer_ fired
  bool closing_ = false;   // input is discarded; close when the queue is flushed
  std::size_t discarded_bytes_ = 0;  // input discarded since closing_, up to kMaxLingerDiscardBytes
  bool finished_ = false;  // host told (exactly once)
  bool closed_ = false;    // the socket is closed
  PeerState state_;
};

}  // namespace acb::broker
