#include "fake_broker.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <stdexcept>

namespace acb::test {

FakeBroker::FakeBroker(Options options) : options_(std::move(options)), impostor_(options_.impostor) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (listen_fd_ < 0 || ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listen_fd_, 16) != 0 || ::pipe(wake_pipe_) != 0) {
    throw std::runtime_error("FakeBroker: cannot listen on 127.0.0.1");
  }
  socklen_t len = sizeof addr;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  thread_ = std::thread([this] { run(); });
}

FakeBroker::~FakeBroker() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  const char byte = 0;
  [[maybe_unused]] const auto n = ::write(wake_pipe_[1], &byte, 1);
  thread_.join();
  for (auto& c : conns_) {
    if (c.fd >= 0) ::close(c.fd);
  }
  ::close(listen_fd_);
  ::close(wake_pipe_[0]);
  ::close(wake_pipe_[1]);
}

void FakeBroker::set_handler(Handler handler) {
  std::lock_guard lock(mutex_);
  handler_ = std::move(handler);
}

void FakeBroker::send(int connection, const nlohmann::json& message) {
  send_raw(connection, wire::encode_message(message));
}

void FakeBroker::send_raw(int connection, const std::string& bytes) {
  int fd = -1;
  {
    std::lock_guard lock(mutex_);
    if (connection < 0 || static_cast<std::size_t>(connection) >= conns_.size()) {
      throw std::runtime_error("FakeBroker: no connection " + std::to_string(connection));
    }
    fd = conns_[static_cast<std::size_t>(connection)].fd;
  }
  std::lock_guard lock(send_mutex_);
  std::size_t off = 0;
  while (off < bytes.size()) {
    const ssize_t n = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return;  // the client went away; tests look at the client side
    off += static_cast<std::size_t>(n);
  }
}

void FakeBroker::close(int connection) {
  std::lock_guard lock(mutex_);
  auto& c = conns_.at(static_cast<std::size_t>(connection));
  if (c.fd >= 0) ::shutdown(c.fd, SHUT_RDWR);
}

void FakeBroker::set_impostor(bool impostor) {
  std::lock_guard lock(mutex_);
  impostor_ = impostor;
}

std::optional<nlohmann::json> FakeBroker::wait_for(const std::string& op, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  std::optional<nlohmann::json> found;
  changed_.wait_for(lock, timeout, [&] {
    for (auto it = received_.begin(); it != received_.end(); ++it) {
      if ((*it)["op"] == op) {
        found = std::move(*it);
        received_.erase(it);
        return true;
      }
    }
    return false;
  });
  return found;
}

bool FakeBroker::wait_count(const std::string& op, std::size_t count, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  return changed_.wait_for(lock, timeout, [&] { return counts_[op] >= count; });
}

std::vector<nlohmann::json> FakeBroker::hellos() const {
  std::lock_guard lock(mutex_);
  return hellos_;
}

void FakeBroker::on_frame(int index, const nlohmann::json& message) {
  Handler handler;
  {
    std::lock_guard lock(mutex_);
    auto& c = conns_[static_cast<std::size_t>(index)];
    if (!c.greeted) {
      hellos_.push_back(message);
    } else {
      received_.push_back(message);
      ++counts_[message.value("op", std::string())];
      if (c.authenticated) handler = handler_;
    }
  }
  changed_.notify_all();
  if (on_handshake(index, message)) return;
  if (handler) handler(*this, index, message);
}

bool FakeBroker::on_handshake(int index, const nlohmann::json& message) {
  const std::string op = message.value("op", std::string());
  bool impostor = false;
  Conn c;
  {
    std::lock_guard lock(mutex_);
    auto& conn = conns_[static_cast<std::size_t>(index)];
    if (conn.authenticated) return false;
    impostor = impostor_;
    if (!conn.greeted) {
      conn.greeted = true;
      conn.admin = message.value("role", std::string()) == "admin";
      const auto nonce = wire::parse_hex32(message.value("client_nonce", std::string()));
      if (nonce) conn.client_nonce = *nonce;
      conn.broker_nonce = auth::fresh_nonce();
    }
    c.admin = conn.admin;
    c.client_nonce = conn.client_nonce;
    c.broker_nonce = conn.broker_nonce;
  }
  const auth::Role role = c.admin ? auth::Role::admin : auth::Role::client;
  if (op == "hello") {
    const std::string proving_token = impostor ? options_.token + "-not-it" : options_.token;
    send(index, {{"op", "challenge"},
                 {"broker_nonce", wire::to_hex(c.broker_nonce)},
                 {"broker_proof", wire::to_hex(auth::broker_proof(proving_token, role, c.client_nonce, c.broker_nonce))}});
    if (impostor) {
      // A squatter pushes on as if the handshake had succeeded.
      send_welcome(index, kImpostorClientId);
      send(index, {{"op", "grant"}, {"device", 0}, {"lease", 1}, {"quantum_ms", 50}});
    }
    return true;
  }
  if (op == "auth") {
    const auto proof = wire::parse_hex32(message.value("client_proof", std::string()));
    if (impostor || !proof ||
        !auth::proofs_equal(*proof, auth::client_proof(options_.token, role, c.broker_nonce, c.client_nonce))) {
      send(index, {{"op", "error"}, {"reason", "authentication failed"}});
      close(index);
      return true;
    }
    {
      std::lock_guard lock(mutex_);
      conns_[static_cast<std::size_t>(index)].authenticated = true;
    }
    send_welcome(index, 100 + static_cast<std::uint64_t>(index));
    return true;
  }
  send(index, {{"op", "error"}, {"reason", "the handshake comes first"}});
  close(index);
  return true;
}

void FakeBroker::send_welcome(int index, std::uint64_t client_id) {
  send(index, {{"op", "welcome"},
               {"version", wire::kProtocolVersion},
               {"client_id", client_id},
               {"device", 0},
               {"device_capacity_bytes", options_.capacity_bytes},
               {"heartbeat_interval_ms", options_.heartbeat_interval_ms},
               {"heartbeat_timeout_ms", options_.heartbeat_interval_ms * 5}});
}

void FakeBroker::run() {
  for (;;) {
    std::vector<pollfd> fds{{wake_pipe_[0], POLLIN, 0}, {listen_fd_, POLLIN, 0}};
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return;
      for (const auto& c : conns_) fds.push_back({c.fd, static_cast<short>(c.fd >= 0 ? POLLIN : 0), 0});
    }
    if (::poll(fds.data(), fds.size(), -1) < 0) continue;
    if (fds[0].revents) return;
    if (fds[1].revents & POLLIN) {
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd >= 0) {
        std::lock_guard lock(mutex_);
        Conn c;
        c.fd = fd;
        conns_.push_back(std::move(c));
      }
    }
    for (std::size_t i = 2; i < fds.size(); ++i) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      const int index = static_cast<int>(i - 2);
      char buffer[4096];
      const ssize_t n = ::recv(fds[i].fd, buffer, sizeof buffer, 0);
      std::vector<nlohmann::json> frames;
      {
        std::lock_guard lock(mutex_);
        auto& c = conns_[i - 2];
        if (n <= 0) {
          ::close(c.fd);
          c.fd = -1;
          ++counts_["<closed>"];
          changed_.notify_all();
          continue;
        }
        c.parser.feed(buffer, static_cast<std::size_t>(n));
        std::string payload;
        while (c.parser.next(payload) == wire::FrameParser::Result::good) {
          std::string error;
          if (auto m = wire::parse_message(payload, error)) frames.push_back(std::move(*m));
        }
      }
      for (const auto& m : frames) on_frame(index, m);
    }
  }
}

}  // namespace acb::test
