#include "broker_server/connection_limits.h"

namespace acb::broker {

std::optional<std::string> ConnectionLimits::admit(std::optional<std::uint32_t> uid) {
  const std::string who = uid ? "uid " + std::to_string(*uid) : std::string("peers of unknown uid");
  if (of(uid) >= config_.max_connections_per_uid) {
    return "too many connections from " + who + " (limit " + std::to_string(config_.max_connections_per_uid) +
           "); close some, or ask the operator to raise max_connections_per_uid";
  }
  if (total_ >= config_.max_connections) {
    return "too many connections to this broker (limit " + std::to_string(config_.max_connections) +
           "); try again later, or ask the operator to raise max_connections";
  }
  ++per_uid_[uid];
  ++total_;
  return std::nullopt;
}

void ConnectionLimits::release(std::optional<std::uint32_t> uid) {
  auto it = per_uid_.find(uid);
  if (it == per_uid_.end()) return;
  if (--it->second == 0) per_uid_.erase(it);
  --total_;
}

std::size_t ConnectionLimits::of(std::optional<std::uint32_t> uid) const {
  auto it = per_uid_.find(uid);
  return it == per_uid_.end() ? 0 : it->second;
}

}  // namespace acb::broker
