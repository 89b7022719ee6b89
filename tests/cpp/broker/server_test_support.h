// What the server tests share: a real Server on loopback on its own
// io_context thread (as in acb-broker), and a blocking test client whose
// every read is bounded by a poll() timeout.
#pragma once

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/post.hpp>

#include "acb_catch.hpp"
#include "broker_server/server.h"
#include "common/frame.h"
#include "common/handshake.h"
#include "common/hex.h"

namespace acb::broker::test {

using nlohmann::json;

inline constexpr int kTimeoutMs = 5000;
inline const Tokens kTokens{"client-token", "admin-token"};

class RunningServer {
 public:
  explicit RunningServer(BrokerConfig config = make_config(), CommandLine command_line = {})
      : io_(1), server_(io_, std::move(config), std::move(command_line), kTokens) {
    server_.start();
    thread_ = std::thread([this] { io_.run(); });
  }
  ~RunningServer() {
    boost::asio::post(io_, [this] { server_.stop(); });
    thread_.join();
  }
  std::uint16_t port() const { return server_.port(); }
  /// Runs Server::reload on the server's thread; false when it did not return within timeout_ms.
  bool reload(int timeout_ms) {
    auto done = std::make_shared<std::promise<void>>();
    auto returned = done->get_future();
    boost::asio::post(io_, [this, done] {
      server_.reload();
      done->set_value();
    });
    return returned.wait_for(std::chrono::milliseconds(timeout_ms)) == std::future_status::ready;
  }
  std::uint16_t metrics_port() const { return server_.metrics_port(); }

  static BrokerConfig make_config() {
    BrokerConfig c;
    c.port = 0;
    c.metrics_port = 0;
    c.devices = {DeviceSpec{"0", 1ull << 30}};
    c.arbiter.quantum_ms = 60000;
    c.arbiter.heartbeat_timeout_ms = 60000;  // these clients do not heartbeat
    c.arbiter.aging_ms = 600000;             // nor answer the revoke that aging would cause
    c.connections.max_connections_per_uid = 1024;  // every test client is this process's uid
    return c;
  }

 private:
  boost::asio::io_context io_;
  Server server_;
  std::thread thread_;
};

/// `receive_buffer_bytes` > 0: SO_RCVBUF before connecting, so that a peer
/// that does not read lets little pile up in its own kernel buffers.
inline int connect_loopback(std::uint16_t port, int receive_buffer_bytes = 0) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error("socket failed");
  if (receive_buffer_bytes > 0) ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer_bytes, sizeof receive_buffer_bytes);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    throw std::runtime_error("connect to 127.0.0.1:" + std::to_string(port) + " failed");
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

/// The response to `GET path` on the metrics port, headers included.
inline std::string http_get(std::uint16_t port, const std::string& path) {
  const int fd = connect_loopback(port);
  const std::string request = "GET " + path + " HTTP/1.1\r\nHost: localhost\r\n\r\n";
  REQUIRE(::send(fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size()));
  std::string response;
  char buf[4096];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    REQUIRE(::poll(&p, 1, kTimeoutMs) == 1);
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    response.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return response;
}

// Reads with poll() and a bounded timeout: a test never waits forever.
class TestClient {
 public:
  explicit TestClient(std::uint16_t port, int receive_buffer_bytes = 0)
      : fd_(connect_loopback(port, receive_buffer_bytes)) {}
  ~TestClient() { ::close(fd_); }
  TestClient(const TestClient&) = delete;
  TestClient& operator=(const TestClient&) = delete;

  void send_raw(const std::string& bytes) {
    std::size_t sent = 0;
    while (sent < bytes.size()) {
      const ssize_t n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) throw std::runtime_error("send failed");
      sent += static_cast<std::size_t>(n);
    }
  }
  void send(const json& message) { send_raw(acb::wire::encode_message(message)); }

  /// The next message; nullopt once the broker closed the connection.
  std::optional<json> recv(int timeout_ms = kTimeoutMs) {
    std::string payload;
    for (;;) {
      if (parser_.next(payload) == acb::wire::FrameParser::Result::good) return json::parse(payload);
      pollfd p{fd_, POLLIN, 0};
      const int ready = ::poll(&p, 1, timeout_ms);
      if (ready == 0) throw std::runtime_error("no message within " + std::to_string(timeout_ms) + " ms");
      char buf[4096];
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) return std::nullopt;
      parser_.feed(buf, static_cast<std::size_t>(n));
    }
  }
  json expect(const std::string& op) {
    auto m = recv();
    REQUIRE(m);
    INFO(m->dump());
    REQUIRE((*m)["op"] == op);
    return *m;
  }
  /// Sends hello (with the members of `extra` too) and returns the challenge,
  /// checked against `token`: `broker_proved` says whether the broker's proof verifies with it.
  json challenge(const std::string& name, const std::string& token, const std::string& role, bool& broker_proved,
                 const json& extra = json::object()) {
    nonce_ = acb::auth::fresh_nonce();
    role_ = role == "admin" ? acb::auth::Role::admin : acb::auth::Role::client;
    json hello = {{"op", "hello"}, {"versions", {acb::wire::kProtocolVersion}},
                  {"client_nonce", acb::wire::to_hex(nonce_)}, {"name", name}, {"pid", 1}, {"role", role}};
    hello.update(extra);
    send(hello);
    auto c = expect("challenge");
    broker_nonce_ = *acb::wire::parse_hex32(c["broker_nonce"].get<std::string>());
    const auto proof = acb::wire::parse_hex32(c["broker_proof"].get<std::string>());
    REQUIRE(proof);
    broker_proved = acb::auth::proofs_equal(*proof, acb::auth::broker_proof(token, role_, nonce_, broker_nonce_));
    return c;
  }
  /// Answers the challenge with a proof made from `token`.
  void auth(const std::string& token) {
    send({{"op", "auth"},
          {"client_proof", acb::wire::to_hex(acb::auth::client_proof(token, role_, broker_nonce_, nonce_))}});
  }
  /// The whole handshake with the right token: the broker proves it, then welcomes.
  json hello(const std::string& name, const std::string& token = kTokens.client, const std::string& role = "client",
             const json& extra = json::object()) {
    bool proved = false;
    challenge(name, token, role, proved, extra);
    CHECK(proved);
    auth(token);
    return expect("welcome");
  }
  /// After an error the broker closes: returns the error's reason.
  std::string expect_error_then_close() {
    auto error = expect("error");
    CHECK_FALSE(recv());
    return error["reason"];
  }

 private:
  int fd_;
  acb::wire::FrameParser parser_;
  acb::auth::Nonce nonce_{};
  acb::auth::Nonce broker_nonce_{};
  acb::auth::Role role_ = acb::auth::Role::client;
};

}  // namespace acb::broker::test
