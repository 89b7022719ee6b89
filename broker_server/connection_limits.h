// ConnectionLimits: how many connections the broker holds, per peer uid and
// in total, and whether one more may be admitted.
//
// The broker is a shared service: without a bound, one local user could open
// connections until the broker runs out of descriptors and memory and
// nobody else is served. Every accepted connection is counted under its
// peer's uid (peer_credentials.h) from accept to close, authenticated or
// not; peers whose uid is unknown share one bucket, so that they cannot
// escape the per-uid limit by being unknown. Policy only: the server asks
// admit() at accept and calls release() when the connection is gone.
//
// Thread-safety: none; used from the server's io_context thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>

namespace acb::broker {

struct ConnectionLimitsConfig {
  std::size_t max_connections = 1024;        ///< in total (config max_connections)
  std::size_t max_connections_per_uid = 64;  ///< per peer uid, unknown ones together (max_connections_per_uid)
};

class ConnectionLimits {
 public:
  explicit ConnectionLimits(ConnectionLimitsConfig config = {}) : config_(config) {}

  /// Counts one more connection of `uid` (nullopt: unknown) and returns
  /// nullopt, or counts nothing and returns why it is refused (the text of
  /// the error frame: the uid, the limit, and the config key to raise).
  std::optional<std::string> admit(std::optional<std::uint32_t> uid);
  /// A connection admitted for `uid` is gone.
  void release(std::optional<std::uint32_t> uid);

  std::size_t total() const { return total_; }
  std::size_t of(std::optional<std::uint32_t> uid) const;
  const ConnectionLimitsConfig& config() const { return config_; }

 private:
  ConnectionLimitsConfig config_;
  std::size_t total_ = 0;
  std::map<std::optional<std::uint32_t>, std::size_t> per_uid_;  // no zero entries
};

}  // namespace acb::broker
