#include "client/lease_state.h"

namespace acb::client {

void LeaseState::begin_acquire(bool growth) {
  std::lock_guard lock(mutex_);
  if (!lost_.empty()) throw BrokerError("acquire: " + lost_);
  if (phase_ == Phase::acquiring) throw BrokerError("acquire: another acquire is already waiting on this client");
  // Holding (or revoked, not yet released) with a need: a growth request;
  // the broker answers with a re-grant once the larger need fits.
  if ((phase_ == Phase::holding || phase_ == Phase::revoked) && !growth) {
    throw BrokerError("acquire: this client already holds lease " + std::to_string(grant_ ? grant_->lease : 0) +
                      "; release it first (or pass a larger need_bytes to grow it)");
  }
  // A growth request that fails (reject, timeout) leaves the lease held as it was.
  held_before_growth_.reset();
  if (phase_ == Phase::holding || phase_ == Phase::revoked) held_before_growth_ = std::make_pair(phase_, *grant_);
  phase_ = Phase::acquiring;
  grant_.reset();
  rejected_.reset();
}

void LeaseState::settle_failed_acquire() {
  if (held_before_growth_) {
    phase_ = held_before_growth_->first;
    grant_ = held_before_growth_->second;
    held_before_growth_.reset();
  } else {
    phase_ = Phase::idle;
  }
}

Grant LeaseState::wait(std::optional<std::chrono::milliseconds> timeout) {
  std::unique_lock lock(mutex_);
  auto settled = [this] { return phase_ != Phase::acquiring || !lost_.empty(); };
  if (timeout) {
    if (!changed_.wait_for(lock, *timeout, settled)) {
      settle_failed_acquire();
      throw BrokerError("acquire: no grant within " + std::to_string(timeout->count()) + " ms");
    }
  } else {
    changed_.wait(lock, settled);
  }
  if (rejected_) {
    std::string reason = std::move(*rejected_);
    rejected_.reset();
    throw LeaseRejected("acquire rejected by the acb broker: " + reason);
  }
  if (grant_ && (phase_ == Phase::holding || phase_ == Phase::revoked)) return *grant_;
  phase_ = Phase::idle;
  throw BrokerError("acquire: " + (lost_.empty() ? std::string("the request was withdrawn") : lost_));
}

bool LeaseState::on_grant(const Grant& grant) {
  {
    std::lock_guard lock(mutex_);
    if (phase_ != Phase::acquiring) return false;
    phase_ = Phase::holding;
    grant_ = grant;
    held_before_growth_.reset();
  }
  changed_.notify_all();
  return true;
}

void LeaseState::on_reject(const std::string& reason) {
  {
    std::lock_guard lock(mutex_);
    if (phase_ != Phase::acquiring) return;
    settle_failed_acquire();
    rejected_ = reason;
  }
  changed_.notify_all();
}

void LeaseState::on_revoke(const Revoke& revoke) {
  std::lock_guard lock(mutex_);
  if (phase_ == Phase::holding && grant_ && grant_->lease == revoke.lease) phase_ = Phase::revoked;
}

void LeaseState::on_lost(const std::string& reason) {
  {
    std::lock_guard lock(mutex_);
    if (lost_.empty()) lost_ = reason.empty() ? std::string("connection to the acb broker lost") : reason;
  }
  changed_.notify_all();
}

void LeaseState::on_release() {
  std::lock_guard lock(mutex_);
  phase_ = Phase::idle;
  grant_.reset();
  held_before_growth_.reset();
}

LeaseState::Phase LeaseState::phase() const {
  std::lock_guard lock(mutex_);
  return phase_;
}

bool LeaseState::holds() const {
  std::lock_guard lock(mutex_);
  return phase_ == Phase::holding || phase_ == Phase::revoked;
}

std::string LeaseState::lost_reason() const {
  std::lock_guard lock(mutex_);
  return lost_;
}

}  // namespace acb::client
