// Socket: one connected TCP stream to the broker, owned as a file descriptor.
//
// Plain POSIX sockets: connect with a bounded timeout, TCP_NODELAY (a grant
// is a tiny frame and must not wait for Nagle), whole-buffer sends that never
// raise SIGPIPE. Reads are left to the caller's poll loop (recv_some).
//
// Thread-safety: send_all() is serialised by an internal mutex so that user
// threads (acquire, release) and the I/O thread (heartbeats) may all send;
// recv_some() is for one reader thread only. shutdown() may be called from
// any thread and wakes a reader blocked in poll().
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>

namespace acb::client {

class Socket {
 public:
  /// Resolves host and connects within timeout. Throws BrokerError naming
  /// host:port and the reason (refused, timed out, unresolvable).
  Socket(const std::string& host, std::uint16_t port, std::chrono::milliseconds timeout);
  ~Socket();
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;

  int fd() const { return fd_; }
  /// "host:port", for error messages.
  const std::string& peer() const { return peer_; }

  /// Sends every byte. Throws BrokerError when the connection is broken.
  void send_all(std::string_view bytes);
  /// Reads what is available into buffer (blocks only if nothing is).
  /// Returns the byte count; 0 means the peer closed. Throws BrokerError.
  std::size_t recv_some(char* buffer, std::size_t size);
  /// Waits up to timeout for readable data; false on timeout.
  bool wait_readable(std::chrono::milliseconds timeout);
  /// Shuts both directions down, so a blocked poll()/recv() returns.
  void shutdown() noexcept;

 private:
  int fd_ = -1;
  std::string peer_;
  std::mutex send_mutex_;
};

}  // namespace acb::client
