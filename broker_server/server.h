// Server: the broker's I/O around the Arbiter, on one io_context thread.
//
// It accepts connections (one Session each) and keeps the table of them,
// validates every frame (message.h), authenticates the connection (hello,
// challenge, auth: handshake.h), hands each message of an authenticated one
// to its RequestHandler (request_handler.h: arbiter calls and replies), and
// delivers the arbiter's decisions to their clients' sessions as frames
// (replies.h). A steady_timer
// calls Arbiter::on_tick when Arbiter::next_wakeup says something falls due
// (quantum expiry, revoke deadlines, heartbeat timeouts, aging), re-armed
// after every event that may bring that sooner; while some connection has
// not authenticated, or with --idle-exit-s and no client, it also fires
// every kHousekeepingPeriodUs to close connections that say no hello within
// the heartbeat timeout (they would otherwise hold a descriptor and keep an
// idle broker alive forever) and to exit when idle. With nothing due, the
// broker sleeps until the next event. Connections beyond
// max_connections_per_uid or max_connections (connection_limits.h) get an
// error frame at accept and are closed. When accept fails for want of
// descriptors it backs off (accept_backoff.h) and closes the oldest
// unauthenticated connection, so that it serves again. Any protocol
// violation closes only the connection that committed it: the peer gets an
// error frame, stderr gets one line with the peer and the reason.
//
// Admin connections (role "admin", admin token) are not arbiter clients:
// they hold no lease and are not placed on a device; they may use every op
// except acquire/release/residency (request_handler.h). SIGHUP's reload
// applies what config_reload.h finds changed.
//
// Thread-safety: none; every method runs on the io_context's one thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include "broker_server/accept_backoff.h"
#include "broker_server/arbiter.h"
#include "broker_server/config.h"
#include "broker_server/connection_limits.h"
#include "broker_server/message.h"
#include "broker_server/metrics.h"
#include "broker_server/metrics_http.h"
#include "broker_server/request_budget.h"
#include "broker_server/request_handler.h"
#include "broker_server/session.h"

namespace acb::broker {

struct Tokens {
  std::string client;
  std::string admin;
};

class Server final : public SessionHost, private RequestHost {
 public:
  /// How often connections without hello and --idle-exit-s are checked,
  /// while there is any such connection or the broker has no client.
  static constexpr TimeUs kHousekeepingPeriodUs = 500'000;
  /// Least time between two ticks.
  static constexpr TimeUs kMinTickSpacingUs = 1'000;

  /// `command_line` is kept so that reload() can merge the same flags again.
  Server(boost::asio::io_context& io, BrokerConfig config, CommandLine command_line, Tokens tokens);
  ~Server() override;
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  /// Binds both listeners and starts accepting. Throws boost::system::system_error
  /// (e.g. address in use) naming nothing; the caller adds the address.
  void start();
  /// Closes the listeners and every connection; io_context::run then returns.
  void stop();
  /// SIGHUP: re-reads the config file and applies what can change at run time
  /// (quantum_ms, new devices). Errors are logged; the running config stays.
  void reload();

  /// Serves a connection that did not come through the listener (the fuzzer
  /// feeds one end of a socketpair), with the same limits as an accepted one.
  void adopt(boost::asio::ip::tcp::socket socket) { on_accepted(std::move(socket)); }

  std::uint16_t port() const;
  std::uint16_t metrics_port() const;
  const BrokerConfig& config() const { return config_; }
  /// What the I/O layer counts (the fuzzer checks internal_errors_total).
  const BrokerMetrics& metrics() const { return metrics_; }
  /// The Prometheus text of the metrics endpoint.
  std::string render_metrics() const;

  // SessionHost
  void on_frame(Session& session, std::string_view payload) override;
  void on_framing_error(Session& session, const std::string& reason) override;
  void on_session_closed(Session& session) override;
  void on_output_over_budget(Session& session) override;
  std::uint64_t frame_wait_us(Session& session, bool after_waiting) override;
  void frame_waited(Session& session) override;

 private:
  void do_accept();
  void on_accepted(boost::asio::ip::tcp::socket socket);
  void back_off_accepting(const boost::system::error_code& ec);
  /// Arms the timer for the arbiter's next_wakeup (and housekeeping when
  /// needed), earlier than it is armed only: call it after anything that may
  /// have made something due sooner.
  void schedule_tick(TimeUs now);
  bool needs_housekeeping() const;
  void on_tick();
  void close_silent_connections(TimeUs now);
  TimeUs now_us() const;

  void handle_frame(Session& session, std::string_view payload);
  void internal_error(Session& session, std::string_view what);
  /// hello -> challenge; auth -> admit (RequestHandler::admit) or close (broker_server/handshake.h).
  void handle_hello(Session& session, const HelloMessage& hello);
  void handle_auth(Session& session, const AuthMessage& auth, TimeUs now);
  void send(Session& session, const nlohmann::json& message);

  // RequestHost
  void apply(const Decisions& decisions, TimeUs now) override;
  void protocol_error(Session& session, const std::string& reason) override;

  boost::asio::io_context& io_;
  BrokerConfig config_;
  CommandLine command_line_;
  Tokens tokens_;
  Arbiter arbiter_;  ///< its config() holds the running quantum (set_quantum, reload)
  BrokerMetrics metrics_;
  RequestHandler requests_;  ///< after arbiter_, config_ and metrics_, which it holds references to
  boost::asio::ip::tcp::acceptor acceptor_;
  MetricsHttp metrics_http_;
  boost::asio::steady_timer tick_timer_;
  boost::asio::steady_timer accept_timer_;  ///< the next accept after a resource failure
  AcceptBackoff accept_backoff_;
  std::chrono::steady_clock::time_point epoch_;
  std::chrono::steady_clock::time_point idle_since_;
  std::unordered_map<ClientId, std::shared_ptr<Session>> sessions_;
  ConnectionLimits connection_limits_;
  OutputBudget output_budget_;  ///< what all sessions have queued, and its bound
  RequestBudget request_budget_;  ///< each user's share of this thread
  std::chrono::steady_clock::time_point last_refusal_logged_{};
  ClientId next_id_ = 1;
  std::size_t authenticated_ = 0;
  bool stopped_ = false;
  bool tick_armed_ = false;
  TimeUs tick_at_us_ = 0;            ///< when the armed timer fires
  TimeUs last_housekeeping_us_ = 0;
  TimeUs last_tick_us_ = 0;
};

}  // namespace acb::broker
