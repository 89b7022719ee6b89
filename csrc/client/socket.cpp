#include "client/socket.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "client/broker_client.h"

namespace acb::client {
namespace {

std::string errno_text(int err) { return std::strerror(err); }

struct AddrinfoDeleter {
  void operator()(addrinfo* ai) const noexcept { ::freeaddrinfo(ai); }
};

// Non-blocking connect bounded by poll; the descriptor is returned blocking.
int connect_one(const addrinfo& ai, int timeout_ms, std::string& error) {
  const int fd = ::socket(ai.ai_family, ai.ai_socktype | SOCK_CLOEXEC, ai.ai_protocol);
  if (fd < 0) {
    error = "socket(): " + errno_text(errno);
    return -1;
  }
  const int flags = ::fcntl(fd, F_GETFL, 0);
  ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  int rc = ::connect(fd, ai.ai_addr, ai.ai_addrlen);
  if (rc != 0 && errno == EINPROGRESS) {
    pollfd p{fd, POLLOUT, 0};
    rc = ::poll(&p, 1, timeout_ms);
    if (rc == 0) {
      error = "connect timed out after " + std::to_string(timeout_ms) + " ms";
      ::close(fd);
      return -1;
    }
    int so_error = 0;
    socklen_t len = sizeof so_error;
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len);
    if (rc < 0 || so_error != 0) {
      error = errno_text(rc < 0 ? errno : so_error);
      ::close(fd);
      return -1;
    }
  } else if (rc != 0) {
    error = errno_text(errno);
    ::close(fd);
    return -1;
  }
  ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

}  // namespace

Socket::Socket(const std::string& host, std::uint16_t port, std::chrono::milliseconds timeout)
    : peer_(host + ":" + std::to_string(port)) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* raw = nullptr;
  const std::string service = std::to_string(port);
  if (const int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &raw); rc != 0) {
    throw BrokerError("cannot resolve acb broker host " + peer_ + ": " + ::gai_strerror(rc));
  }
  std::unique_ptr<addrinfo, AddrinfoDeleter> list(raw);
  std::string error = "no address";
  for (const addrinfo* ai = list.get(); ai != nullptr; ai = ai->ai_next) {
    fd_ = connect_one(*ai, static_cast<int>(timeout.count()), error);
    if (fd_ >= 0) return;
  }
  throw BrokerError("no acb broker at " + peer_ + ": " + error);
}

Socket::~Socket() {
  if (fd_ >= 0) ::close(fd_);
}

void Socket::send_all(std::string_view bytes) {
  std::lock_guard lock(send_mutex_);
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw BrokerError("send of " + std::to_string(bytes.size()) + " bytes to the acb broker at " + peer_ +
                        " failed: " + errno_text(errno));
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
}

std::size_t Socket::recv_some(char* buffer, std::size_t size) {
  for (;;) {
    const ssize_t n = ::recv(fd_, buffer, size, 0);
    if (n >= 0) return static_cast<std::size_t>(n);
    if (errno == EINTR) continue;
    if (errno == ECONNRESET) return 0;
    throw BrokerError("recv from the acb broker at " + peer_ + " failed: " + errno_text(errno));
  }
}

bool Socket::wait_readable(std::chrono::milliseconds timeout) {
  pollfd p{fd_, POLLIN, 0};
  for (;;) {
    const int rc = ::poll(&p, 1, static_cast<int>(timeout.count()));
    if (rc >= 0) return rc > 0;
    if (errno != EINTR) throw BrokerError("poll on the acb broker connection " + peer_ + ": " + errno_text(errno));
  }
}

void Socket::shutdown() noexcept {
  if (fd_ >= 0) ::shutdown(fd_, SHUT_RDWR);
}

}  // namespace acb::client
