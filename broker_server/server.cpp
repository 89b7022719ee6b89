#include "broker_server/server.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <stdexcept>
#include <vector>

#include "broker_server/descriptor_limit.h"
#include "broker_server/config_reload.h"
#include "broker_server/peer_credentials.h"
#include "broker_server/peer_text.h"
#include "broker_server/replies.h"
#include "common/frame.h"
#include "common/handshake.h"

namespace acb::broker {

namespace asio = boost::asio;
using boost::system::error_code;
using nlohmann::json;

namespace {

asio::ip::address resolve_host(asio::io_context& io, const std::string& host) {
  error_code ec;
  auto address = asio::ip::make_address(host, ec);
  if (!ec) return address;
  asio::ip::tcp::resolver resolver(io);
  auto results = resolver.resolve(host, "", ec);
  if (ec || results.empty()) throw ConfigError("cannot resolve --host " + host + ": " + ec.message());
  return results.begin()->endpoint().address();
}

}  // namespace

Server::Server(asio::io_context& io, BrokerConfig config, CommandLine command_line, Tokens tokens)
    : io_(io),
      config_(std::move(config)),
      command_line_(std::move(command_line)),
      tokens_(std::move(tokens)),
      arbiter_(config_.arbiter),
      requests_(arbiter_, config_, metrics_, *this),
      acceptor_(io),
      metrics_http_(io, [this] { return render_metrics(); }),
      tick_timer_(io),
      accept_timer_(io),
      epoch_(std::chrono::steady_clock::now()),
      idle_since_(epoch_),
      connection_limits_(config_.connections),
      request_budget_(static_cast<std::uint32_t>(::getuid())) {
  for (const auto& device : config_.devices) {
    requests_.add_device(device.name, arbiter_capacity(device.capacity_bytes), device.uuid);
  }
  output_budget_.limit_bytes = static_cast<std::size_t>(config_.max_queued_output_mib) << 20;
  if (const auto fit = connections_within_descriptor_limit(); fit && *fit < config_.connections.max_connections) {
    std::fprintf(stderr,
                 "acb-broker: max_connections %zu lowered to %zu: the descriptor limit (ulimit -n) is %zu, "
                 "%zu of them kept for the broker itself; raise ulimit -n to allow more\n",
                 config_.connections.max_connections, *fit, *fit + kReservedDescriptors, kReservedDescriptors);
    ConnectionLimitsConfig limits = config_.connections;
    limits.max_connections = *fit;
    connection_limits_ = ConnectionLimits(limits);
  }
}

Server::~Server() = default;

void Server::start() {
  const auto address = resolve_host(io_, config_.host);
  if (!address.is_loopback()) {
    std::fprintf(stderr,
                 "acb-broker: warning: listening on %s, which is not loopback; anyone who can reach it "
                 "and holds the token can use the devices\n",
                 config_.host.c_str());
  }
  const asio::ip::tcp::endpoint endpoint(address, config_.port);
  acceptor_.open(endpoint.protocol());
  acceptor_.set_option(asio::socket_base::reuse_address(true));
  acceptor_.bind(endpoint);
  acceptor_.listen(asio::socket_base::max_listen_connections);
  metrics_http_.start(asio::ip::tcp::endpoint(address, config_.metrics_port));
  idle_since_ = std::chrono::steady_clock::now();
  do_accept();
  schedule_tick(now_us());
}

void Server::stop() {
  if (stopped_) return;
  stopped_ = true;
  error_code ignored;
  acceptor_.close(ignored);
  metrics_http_.close();
  tick_timer_.cancel();
  accept_timer_.cancel();
  std::vector<std::shared_ptr<Session>> sessions;
  for (auto& [id, session] : sessions_) sessions.push_back(session);
  for (auto& session : sessions) session->close();
  // Sessions lingering after an error hold timers; nothing they do matters any more.
  io_.stop();
}

std::uint16_t Server::port() const {
  error_code ec;
  const auto endpoint = acceptor_.local_endpoint(ec);
  return ec ? 0 : endpoint.port();
}

std::uint16_t Server::metrics_port() const { return metrics_http_.port(); }

TimeUs Server::now_us() const {
  return static_cast<TimeUs>(
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - epoch_).count());
}

void Server::do_accept() {
  acceptor_.async_accept([this](const error_code& ec, asio::ip::tcp::socket socket) {
    if (stopped_ || ec == asio::error::operation_aborted) return;
    if (AcceptBackoff::is_resource_error(ec)) {
      back_off_accepting(ec);
      return;
    }
    if (const auto failures = accept_backoff_.on_success(); failures > 0 && !ec) {
      std::fprintf(stderr, "acb-broker: accepting again after %llu failed attempt(s)\n",
                   static_cast<unsigned long long>(failures));
    }
    if (ec) {
      // The peer gave up before we took it (ECONNABORTED and the like): only it is lost.
      std::fprintf(stderr, "acb-broker: accept failed: %s\n", ec.message().c_str());
    } else {
      on_accepted(std::move(socket));
    }
    do_accept();
  });
}

void Server::back_off_accepting(const error_code& ec) {
  const auto delay = accept_backoff_.on_failure();
  // The oldest connection that has not authenticated gives its descriptor
  // back, so that a flood of silent connections cannot lock clients out.
  std::shared_ptr<Session> oldest;
  for (const auto& [id, session] : sessions_) {
    if (session->state().authenticated || session->closing()) continue;
    if (!oldest || session->state().connected_us < oldest->state().connected_us) oldest = session;
  }
  if (accept_backoff_.failures() == 1) {
    std::fprintf(stderr,
                 "acb-broker: accept failed: %s; %s, retrying every %lld ms at most (raise the descriptor "
                 "limit, ulimit -n, or lower max_connections); one line per burst\n",
                 ec.message().c_str(),
                 oldest ? "closing the oldest unauthenticated connection" : "no unauthenticated connection to close",
                 static_cast<long long>(AcceptBackoff::kMaxDelay.count()));
  }
  if (oldest) oldest->close();
  accept_timer_.expires_after(delay);
  accept_timer_.async_wait([this](const error_code& timer_ec) {
    if (timer_ec || stopped_) return;
    do_accept();
  });
}

void Server::on_accepted(asio::ip::tcp::socket socket) {
  const ClientId id = next_id_++;
  const auto uid = loopback_peer_uid(socket);
  auto session = std::make_shared<Session>(std::move(socket), *this, id, output_budget_);
  session->state().connected_us = now_us();
  session->state().uid = uid;
  if (auto refusal = connection_limits_.admit(uid)) {
    ++metrics_.connections_refused_total;
    session->refuse(wire::encode_message(error_message(*refusal)));
    // One line a second at most: a peer opening connections in a loop must not flood the log.
    const auto now = std::chrono::steady_clock::now();
    if (now - last_refusal_logged_ >= std::chrono::seconds(1)) {
      std::fprintf(stderr, "acb-broker: refusing %s (client %llu): %s (%llu refused in all)\n",
                   session->peer().c_str(), static_cast<unsigned long long>(id), refusal->c_str(),
                   static_cast<unsigned long long>(metrics_.connections_refused_total));
      last_refusal_logged_ = now;
    }
    return;
  }
  session->state().admitted = true;
  sessions_.emplace(id, session);
  session->start();
  schedule_tick(now_us());  // its hello timeout needs housekeeping
}

bool Server::needs_housekeeping() const {
  if (config_.idle_exit_s > 0 && sessions_.empty()) return true;
  // A closing session has already left sessions_ (Session::finish), so every
  // session that is not authenticated is one that may still say no hello.
  return sessions_.size() > authenticated_;
}

void Server::schedule_tick(TimeUs now) {
  std::optional<TimeUs> at = arbiter_.next_wakeup(now);
  if (needs_housekeeping()) {
    const TimeUs housekeeping = last_housekeeping_us_ + kHousekeepingPeriodUs;
    at = at ? std::min(*at, housekeeping) : housekeeping;
  }
  if (!at) {
    // Nothing can become due without an event: sleep until one comes.
    if (tick_armed_) tick_timer_.cancel();
    tick_armed_ = false;
    return;
  }
  // At least kMinTickSpacingUs after the last tick: something the arbiter
  // says is due now but a tick leaves due costs a wake-up a millisecond, not a spin.
  const TimeUs when = std::max({*at, now, last_tick_us_ + kMinTickSpacingUs});
  if (tick_armed_ && tick_at_us_ <= when) return;  // an earlier wake-up recomputes then
  tick_armed_ = true;
  tick_at_us_ = when;
  tick_timer_.expires_at(epoch_ + std::chrono::microseconds(when));  // cancels a later wait
  tick_timer_.async_wait([this](const error_code& ec) {
    if (ec || stopped_) return;  // operation_aborted: re-armed earlier, or stopped
    tick_armed_ = false;
    on_tick();
    if (!stopped_) schedule_tick(now_us());
  });
}

void Server::on_tick() {
  const TimeUs now = now_us();
  last_tick_us_ = now;
  try {
    apply(arbiter_.on_tick(now), now);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "acb-broker: arbiter tick failed: %s\n", e.what());
  }
  if (now - last_housekeeping_us_ < kHousekeepingPeriodUs) return;
  last_housekeeping_us_ = now;
  close_silent_connections(now);
  if (config_.idle_exit_s > 0 && sessions_.empty() &&
      std::chrono::steady_clock::now() - idle_since_ >= std::chrono::seconds(config_.idle_exit_s)) {
    std::fprintf(stderr, "acb-broker: no client for %llu s, exiting (--idle-exit-s)\n",
                 static_cast<unsigned long long>(config_.idle_exit_s));
    stop();
  }
}

void Server::close_silent_connections(TimeUs now) {
  const TimeUs limit_us = config_.arbiter.heartbeat_timeout_ms * 1000;
  std::vector<std::shared_ptr<Session>> silent;
  for (const auto& [id, session] : sessions_) {
    const auto& state = session->state();
    if (!state.authenticated && !session->closing() && now - state.connected_us > limit_us) silent.push_back(session);
  }
  for (const auto& session : silent) {
    // Challenged but never answered counts as silent too: it holds a descriptor all the same.
    protocol_error(*session, std::string(session->state().handshake ? "no auth" : "no hello") + " within " +
                                 std::to_string(config_.arbiter.heartbeat_timeout_ms) + " ms");
  }
}

void Server::send(Session& session, const json& message) { session.send_frame(wire::encode_message(message)); }

void Server::protocol_error(Session& session, const std::string& reason) {
  ++metrics_.protocol_errors_total;
  std::fprintf(stderr, "acb-broker: protocol error from %s (client %llu): %s; closing that connection\n",
               session.peer().c_str(), static_cast<unsigned long long>(session.id()), log_text(reason).c_str());
  session.close_after_error(wire::encode_message(error_message(reason)));
}

void Server::on_framing_error(Session& session, const std::string& reason) {
  if (session.state().authenticated) {
    protocol_error(session, reason);
  } else {
    protocol_error(session, reason + " (kMaxUnauthenticatedFrameBytes: frames are limited to " +
                                std::to_string(wire::kMaxUnauthenticatedFrameBytes) +
                                " bytes until the handshake is complete)");
  }
}

std::uint64_t Server::frame_wait_us(Session& session, bool after_waiting) {
  return request_budget_.wait_us(session.state().uid, now_us(), after_waiting);
}

void Server::frame_waited(Session& session) { request_budget_.waited(session.state().uid); }

void Server::on_frame(Session& session, std::string_view payload) {
  // What the frame made this thread build for its sender is its cost
  // (RequestBudget): no write completes while the frame is handled.
  const std::size_t queued_before = session.queued_bytes();
  struct Charge {
    Server& server;
    Session& session;
    std::size_t before;
    ~Charge() {
      const std::size_t after = session.queued_bytes();
      server.request_budget_.charge(session.state().uid, after > before ? after - before : 0, server.now_us());
    }
  } charge{*this, session, queued_before};
  // The boundary of everything a frame sets off (validation, hello, requests,
  // arbiter calls, encoding): whatever throws closes this one connection only.
  try {
    handle_frame(session, payload);
  } catch (const std::exception& e) {
    internal_error(session, e.what());
  } catch (...) {
    internal_error(session, "unknown exception");
  }
}

void Server::internal_error(Session& session, std::string_view what) {
  ++metrics_.internal_errors_total;
  std::fprintf(stderr, "acb-broker: internal error on a frame from %s (client %llu): %s; closing that connection\n",
               session.peer().c_str(), static_cast<unsigned long long>(session.id()), log_text(what).c_str());
  try {
    session.close_after_error(wire::encode_message(error_message("internal error: " + bounded_text(what))));
  } catch (...) {
    session.close();  // not even the error frame could be built: close without it
  }
}

void Server::handle_frame(Session& session, std::string_view payload) {
  if (config_.debug) {
    std::fprintf(stderr, "acb-broker: client %llu: %s\n", static_cast<unsigned long long>(session.id()),
                 log_text(payload).c_str());
  }
  std::string error;
  auto parsed = wire::parse_message(payload, error);
  if (!parsed) {
    protocol_error(session, error);
    return;
  }
  ClientMessage message;
  try {
    message = validate_message(*parsed);
  } catch (const ProtocolError& e) {
    protocol_error(session, e.what());
    return;
  }
  const TimeUs now = now_us();
  auto& state = session.state();
  if (!state.authenticated) {
    const auto* hello = std::get_if<HelloMessage>(&message);
    const auto* auth = std::get_if<AuthMessage>(&message);
    if (hello && !state.handshake) {
      handle_hello(session, *hello);
    } else if (auth && state.handshake) {
      handle_auth(session, *auth, now);
      if (state.authenticated) session.allow_full_frames();
    } else {
      protocol_error(session, std::string(state.handshake ? "the frame after \"challenge\" must be \"auth\""
                                                          : "the first frame must be \"hello\"") +
                                  ", not \"" + op_name(message) + "\"");
    }
    return;
  }
  if (std::holds_alternative<HelloMessage>(message) || std::holds_alternative<AuthMessage>(message)) {
    protocol_error(session, std::string("a second \"") + op_name(message) + "\" on one connection");
    return;
  }
  try {
    requests_.handle(session, message, now);
  } catch (const std::exception& e) {
    // The arbiter refused an event it should have accepted: the client's view
    // and ours differ, so only closing this connection restores a known state.
    ++metrics_.internal_errors_total;
    std::fprintf(stderr, "acb-broker: internal error on %s from client %llu: %s\n", op_name(message),
                 static_cast<unsigned long long>(session.id()), log_text(e.what()).c_str());
    session.close_after_error(wire::encode_message(error_message(std::string("internal error: ") + e.what())));
  }
}

void Server::handle_hello(Session& session, const HelloMessage& hello) {
  const auto version = negotiate_version(hello.versions);
  if (!version) {
    protocol_error(session, "no common protocol version (this broker speaks " +
                                std::to_string(wire::kProtocolVersion) +
                                "; version 1 sent the token in clear and is refused: upgrade the client)");
    return;
  }
  auto& state = session.state();
  try {
    state.handshake.emplace(hello, *version, hello.admin ? tokens_.admin : tokens_.client);
  } catch (const auth::HandshakeError& e) {
    std::fprintf(stderr, "acb-broker: cannot authenticate %s: %s\n", session.peer().c_str(), e.what());
    session.close_after_error(wire::encode_message(error_message(std::string("internal error: ") + e.what())));
    return;
  }
  send(session, state.handshake->challenge());
}

void Server::handle_auth(Session& session, const AuthMessage& auth, TimeUs now) {
  auto& state = session.state();
  const Handshake handshake = std::move(*state.handshake);
  state.handshake.reset();
  const HelloMessage& hello = handshake.hello();
  if (!handshake.accepts(auth)) {
    // The same answer whatever was wrong (token, role, nonce): a prober learns nothing.
    ++metrics_.auth_failures_total;
    std::fprintf(stderr, "acb-broker: authentication failed from %s (role %s, name \"%s\"); closing that connection\n",
                 session.peer().c_str(), hello.admin ? "admin" : "client", log_text(hello.client.name, 64).c_str());
    session.close_after_error(wire::encode_message(error_message("authentication failed")));
    return;
  }
  const auto welcome = requests_.admit(session, hello, handshake.version(), now);
  if (!welcome) return;  // refused: the session is closing with the reason
  if (state.in_arbiter) schedule_tick(now);  // its heartbeat timeout is due some day
  state.authenticated = true;
  state.admin = hello.admin;
  state.name = hello.client.name;
  ++authenticated_;
  send(session, *welcome);
}

void Server::apply(const Decisions& decisions, TimeUs now) {
  for (const auto& decision : decisions) {
    const ClientId client = decision_client(decision);
    auto it = sessions_.find(client);
    if (it == sessions_.end()) continue;  // gone already; the arbiter hears on_disconnect
    const std::shared_ptr<Session> session = it->second;
    if (std::holds_alternative<Grant>(decision)) {
      // Measured here, from the acquire frame to the grant frame, so that the
      // histogram covers exactly what a client waits for.
      auto& state = session->state();
      if (state.waiting_since_us) {
        metrics_.lease_wait.observe(static_cast<double>(now - std::min(now, *state.waiting_since_us)) / 1e6);
        state.waiting_since_us.reset();
      }
    }
    if (const auto* disconnect = std::get_if<Disconnect>(&decision)) {
      std::fprintf(stderr, "acb-broker: disconnecting client %llu (%s, %s): %s\n",
                   static_cast<unsigned long long>(client), log_text(session->state().name).c_str(),
                   session->peer().c_str(), log_text(disconnect->reason).c_str());
      session->close_after_error(wire::encode_message(decision_message(decision, arbiter_.config().quantum_ms)));
      continue;
    }
    send(*session, decision_message(decision, arbiter_.config().quantum_ms));
  }
  // Every arbiter event comes through here: what it changed may fall due sooner.
  schedule_tick(now);
}

void Server::on_session_closed(Session& session) {
  const ClientId id = session.id();
  auto& state = session.state();
  // Keep the session alive until this returns; erasing may drop the last owner.
  auto keep = sessions_.find(id) != sessions_.end() ? sessions_[id] : nullptr;
  sessions_.erase(id);
  if (state.admitted) connection_limits_.release(state.uid);
  state.admitted = false;
  if (state.authenticated) --authenticated_;
  if (sessions_.empty()) idle_since_ = std::chrono::steady_clock::now();
  if (state.in_arbiter) {
    state.in_arbiter = false;
    if (stopped_) return;
    const TimeUs now = now_us();
    try {
      if (arbiter_.has_client(id)) apply(arbiter_.on_disconnect(id, now), now);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "acb-broker: arbiter failed to reclaim client %llu: %s\n",
                   static_cast<unsigned long long>(id), e.what());
    }
  }
}

void Server::on_output_over_budget(Session& session) {
  // The peer with the largest backlog is the one that reads least: it goes,
  // not whoever happened to queue the frame that crossed the bound.
  while (output_budget_.over()) {
    std::shared_ptr<Session> largest;
    for (const auto& [id, s] : sessions_) {
      if (!largest || s->queued_bytes() > largest->queued_bytes()) largest = s;
    }
    if (!largest || largest->queued_bytes() == 0) return;  // only closing sessions hold the rest
    std::fprintf(stderr,
                 "acb-broker: closing %s (client %llu): %zu bytes queued to it while all connections together "
                 "exceed the output bound of %zu bytes (queued after a frame to client %llu)\n",
                 largest->peer().c_str(), static_cast<unsigned long long>(largest->id()), largest->queued_bytes(),
                 output_budget_.limit_bytes, static_cast<unsigned long long>(session.id()));
    ++metrics_.output_bound_closes_total;
    largest->close();
  }
}

void Server::reload() {
  if (command_line_.config_file.empty()) {
    std::fprintf(stderr, "acb-broker: SIGHUP: no --config file, nothing to reload\n");
    return;
  }
  BrokerConfig next;
  try {
    next = load_config(command_line_);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "acb-broker: SIGHUP: keeping the running configuration: %s\n", e.what());
    return;
  }
  const TimeUs now = now_us();
  std::vector<std::string> known;
  for (const auto& d : arbiter_.snapshot(now, std::nullopt, 0).devices) known.push_back(d.name);
  const ReloadChanges changes = reload_changes(config_, arbiter_.config().quantum_ms, known, next);
  if (changes.quantum_ms) apply(arbiter_.set_quantum(*changes.quantum_ms, now), now);
  for (const auto& d : changes.added_devices) requests_.add_device(d.name, arbiter_capacity(d.capacity_bytes), d.uuid);
  take_run_time_settings(config_, next);
  output_budget_.limit_bytes = static_cast<std::size_t>(config_.max_queued_output_mib) << 20;
  config_.arbiter.quantum_ms = arbiter_.config().quantum_ms;
  std::fprintf(stderr, "acb-broker: reloaded %s: quantum_ms=%llu, %zu device(s) added%s\n",
               command_line_.config_file.c_str(), static_cast<unsigned long long>(arbiter_.config().quantum_ms),
               changes.added_devices.size(),
               changes.needs_restart ? "; changes to host, ports, deadlines or heartbeat need a restart" : "");
}

std::string Server::render_metrics() const {
  const TimeUs now = now_us();
  // Devices only: the metrics list no client, so they copy none.
  return render_prometheus(metrics_, arbiter_.counters(), arbiter_.snapshot(now, std::nullopt, 0), authenticated_);
}

}  // namespace acb::broker
