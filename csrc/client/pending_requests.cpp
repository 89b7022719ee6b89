#include "client/pending_requests.h"

#include "client/broker_client.h"

namespace acb::client {

std::uint64_t PendingRequests::open() {
  std::lock_guard lock(mutex_);
  if (!lost_.empty()) throw BrokerError("request: " + lost_);
  const std::uint64_t seq = next_seq_++;
  slots_.emplace(seq, std::nullopt);
  return seq;
}

nlohmann::json PendingRequests::wait(std::uint64_t seq, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  auto it = slots_.find(seq);
  if (it == slots_.end()) throw BrokerError("request: seq " + std::to_string(seq) + " was never opened");
  const bool done = changed_.wait_for(lock, timeout, [&] { return it->second.has_value() || !lost_.empty(); });
  std::optional<nlohmann::json> reply = std::move(it->second);
  slots_.erase(it);
  if (!reply) {
    if (!done) throw BrokerError("request seq " + std::to_string(seq) + ": no reply within " +
                                 std::to_string(timeout.count()) + " ms");
    throw BrokerError("request seq " + std::to_string(seq) + ": " + lost_);
  }
  if (reply->value("op", std::string()) == "error") {
    throw BrokerError("acb broker refused request seq " + std::to_string(seq) + ": " +
                      reply->value("reason", std::string("no reason given")));
  }
  return std::move(*reply);
}

void PendingRequests::abandon(std::uint64_t seq) {
  std::lock_guard lock(mutex_);
  slots_.erase(seq);
}

bool PendingRequests::complete(std::uint64_t seq, nlohmann::json reply) {
  {
    std::lock_guard lock(mutex_);
    auto it = slots_.find(seq);
    if (it == slots_.end() || it->second) return false;
    it->second = std::move(reply);
  }
  changed_.notify_all();
  return true;
}

void PendingRequests::fail_all(const std::string& reason) {
  {
    std::lock_guard lock(mutex_);
    if (lost_.empty()) lost_ = reason.empty() ? std::string("connection to the acb broker lost") : reason;
  }
  changed_.notify_all();
}

}  // namespace acb::client
