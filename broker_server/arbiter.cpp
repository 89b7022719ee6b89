// The arbiter's client events: hello, acquire, release, residency, heartbeat,
// disconnect, tick. Admin changes are in arbiter_admin.cpp, read-only views in
// arbiter_inspect.cpp, the shared scheduling steps in arbiter_core.cpp.
#include "broker_server/arbiter.h"

#include <set>
#include <string>

#include "broker_server/arbiter_state.h"
#include "broker_server/policy_placement.h"

namespace acb::broker {

const char* to_string(Priority p) {
  switch (p) {
    case Priority::inference:
      return "inference";
    case Priority::training:
      return "training";
    case Priority::batch:
      return "batch";
  }
  return "unknown";
}

std::optional<Priority> parse_priority(const std::string& text) {
  if (text == "inference") return Priority::inference;
  if (text == "training") return Priority::training;
  if (text == "batch") return Priority::batch;
  return std::nullopt;
}

const char* to_string(RevokeReason r) {
  switch (r) {
    case RevokeReason::preempt:
      return "preempt";
    case RevokeReason::quantum:
      return "quantum";
    case RevokeReason::drain:
      return "drain";
    case RevokeReason::share:
      return "share";
    case RevokeReason::gang:
      return "gang";
  }
  return "unknown";
}

const char* to_string(ClientState s) {
  switch (s) {
    case ClientState::idle:
      return "idle";
    case ClientState::waiting:
      return "waiting";
    case ClientState::holding:
      return "holding";
    case ClientState::revoked:
      return "revoked";
  }
  return "unknown";
}

Arbiter::Arbiter(ArbiterConfig config) : state_(std::make_unique<State>(config)) {}
Arbiter::~Arbiter() = default;
Arbiter::Arbiter(Arbiter&&) noexcept = default;
Arbiter& Arbiter::operator=(Arbiter&&) noexcept = default;

namespace {

std::string over_capacity(std::uint64_t need, DeviceId device, std::uint64_t capacity) {
  return "need " + std::to_string(need) + " bytes exceeds the capacity " +
         std::to_string(capacity) + " bytes of device " + std::to_string(device);
}

std::string over_quota(std::uint64_t need, ClientId client, std::uint64_t quota) {
  return "need " + std::to_string(need) + " bytes exceeds the quota " + std::to_string(quota) +
         " bytes of client " + std::to_string(client);
}

/// Why `need` can never be granted to `c` where it is placed; empty when it can.
std::string refusal(const ClientRec& c, const DeviceRec& d, std::uint64_t need) {
  if (need > d.capacity_bytes) return over_capacity(need, d.id, d.capacity_bytes);
  if (c.quota_bytes != 0 && need > c.quota_bytes) return over_quota(need, c.id, c.quota_bytes);
  return {};
}

}  // namespace

Placement Arbiter::on_hello(ClientId client, const HelloInfo& info, TimeUs now) {
  State& s = *state_;
  if (s.clients.count(client))
    return {std::nullopt, "client " + std::to_string(client) + " already said hello"};
  std::optional<GangKey> gang;
  std::set<DeviceId> gang_taken;  // a rank is never placed beside another of its gang
  if (info.gang) {
    gang = GangKey{info.uid, info.gang->job};
    if (std::string why = s.gang_refusal(*gang, *info.gang); !why.empty()) return {std::nullopt, std::move(why)};
    gang_taken = s.gang_devices(*gang);
  }
  std::optional<DeviceId> device;
  if (info.pinned_device) {
    auto it = s.devices.find(*info.pinned_device);
    if (it == s.devices.end())
      return {std::nullopt, "device " + std::to_string(*info.pinned_device) + " does not exist"};
    if (it->second.draining)
      return {std::nullopt, "device " + std::to_string(*info.pinned_device) + " is draining"};
    if (gang_taken.count(it->first))
      return {std::nullopt, "device " + std::to_string(it->first) + " already has a rank of gang \"" +
                                info.gang->job + "\": the ranks of a gang need distinct devices"};
    device = it->first;
  } else {
    std::vector<policy::DeviceLoad> loads = s.device_loads();
    std::erase_if(loads, [&](const policy::DeviceLoad& l) { return gang_taken.count(l.device) != 0; });
    device = policy::choose_device(loads, info.need_bytes);
    // No device holds the need: place it anyway, its acquire is rejected with the reason.
    if (!device) device = policy::choose_device(loads, 0);
    if (!device && !gang_taken.empty())
      return {std::nullopt, "no device left for a rank of gang \"" + info.gang->job +
                                "\": its ranks need distinct devices"};
    if (!device)
      return {std::nullopt,
              s.devices.empty() ? "no device to place the client on" : "every device is draining"};
  }
  ClientRec c;
  c.id = client;
  c.name = SharedName(info.name);
  c.pid = info.pid;
  c.priority = info.priority;
  c.device = *device;
  // A need no device here can hold is refused, not stored: stored, it would
  // weigh on every later placement (policy_placement.h) for nothing.
  const std::uint64_t capacity = s.devices.at(*device).capacity_bytes;
  if (info.need_bytes > capacity)
    c.refused_need = over_capacity(info.need_bytes, *device, capacity);
  else
    c.need_bytes = info.need_bytes;
  c.uid = info.uid;
  c.fixed = info.fixed && info.pinned_device.has_value();
  c.last_heard_us = now;
  ClientRec& placed = s.clients.emplace(client, std::move(c)).first->second;
  s.devices.at(*device).members.insert(client);
  if (gang) s.join_gang(placed, *gang, *info.gang);
  return {device, {}};
}

Decisions Arbiter::on_acquire(ClientId client, std::optional<std::uint64_t> need_bytes,
                              TimeUs now) {
  State& s = *state_;
  Decisions out;
  ClientRec* c = s.find_client(client);
  if (!c) return out;
  s.touch(*c, now);
  if (c->holds()) {
    // Idempotent unless it grows; growth is re-granted once it fits.
    if (!need_bytes) return out;
    if (*need_bytes <= c->need_bytes) {
      c->growth_need_bytes.reset();
      return out;
    }
    std::string why = refusal(*c, s.devices.at(c->device), *need_bytes);
    if (!why.empty()) {
      s.reject(*c, std::move(why), out);
      return out;
    }
    c->growth_need_bytes = *need_bytes;
    s.schedule_all(now, out);
    return out;
  }
  if (!need_bytes && !c->refused_need.empty()) {
    s.reject(*c, c->refused_need, out);  // the need of its hello, which was never stored
    return out;
  }
  c->refused_need.clear();
  const std::uint64_t stored_need = c->need_bytes;
  const std::uint64_t need = need_bytes.value_or(c->need_bytes);
  c->need_bytes = need;
  if (c->state == ClientState::idle) s.enqueue(*c, now);
  s.leave_draining(*c, now, out);
  if (c->state != ClientState::waiting) return out;  // rejected while leaving a draining device
  std::string why = refusal(*c, s.devices.at(c->device), need);
  if (!why.empty()) {
    s.dequeue(*c);
    c->need_bytes = stored_need;  // a refused need is not kept to weigh on placement
    s.reject(*c, std::move(why), out);
  }
  s.schedule_all(now, out);
  return out;
}

Decisions Arbiter::on_release(ClientId client, std::optional<std::uint64_t> resident_bytes,
                              TimeUs now, bool pinned) {
  State& s = *state_;
  Decisions out;
  ClientRec* c = s.find_client(client);
  if (!c) return out;
  s.touch(*c, now);
  if (c->holds()) {
    (void)s.count_overdue(*c, now);  // released, but late: still an offence
    s.end_lease(*c, now);
    s.gang_rank_released(*c, /*left=*/false, now, out);
  }
  else if (c->state == ClientState::waiting)
    s.dequeue(*c);
  if (resident_bytes) s.apply_residency(*c, *resident_bytes, now, out, pinned);
  s.leave_draining(*c, now, out);
  s.schedule_all(now, out);
  return out;
}

Decisions Arbiter::on_residency(ClientId client, std::uint64_t resident_bytes, TimeUs now,
                               bool pinned) {
  State& s = *state_;
  Decisions out;
  ClientRec* c = s.find_client(client);
  if (!c) return out;
  s.touch(*c, now);
  s.apply_residency(*c, resident_bytes, now, out, pinned);
  s.leave_draining(*c, now, out);
  s.schedule_all(now, out);
  return out;
}

void Arbiter::on_heartbeat(ClientId client, TimeUs now) {
  if (ClientRec* c = state_->find_client(client)) state_->touch(*c, now);
}

Decisions Arbiter::on_disconnect(ClientId client, TimeUs now) {
  State& s = *state_;
  Decisions out;
  if (!s.find_client(client)) return out;
  s.drop_client(client, now, out);
  return out;
}

Decisions Arbiter::on_tick(TimeUs now) {
  State& s = *state_;
  Decisions out;
  std::vector<std::pair<ClientId, std::string>> dead;
  for (auto& [id, c] : s.clients) {
    // Not before the grace has passed too: a holder that is late because its
    // offload is slow still has its memory on the device, and disconnecting
    // it there hands that memory to others while it is in use.
    if (s.deciding_offence(c) && now >= c.revoke_deadline_us + s.config.revoke_grace_ms * 1000) {
      if (const std::size_t offences = s.count_overdue(c, now); offences >= s.offences.max_offences()) {
        dead.emplace_back(id, "missed " + std::to_string(offences) + " revoke deadlines within " +
                                  std::to_string(s.config.revoke_offence_window_ms) +
                                  " ms (revoke_offences_max): release the lease when revoked");
        continue;
      }
    }
    const std::uint64_t timeout_us = s.config.heartbeat_timeout_ms * 1000;
    if (timeout_us != 0 && now >= c.last_heard_us + timeout_us) {
      dead.emplace_back(
          id, "no heartbeat for " + std::to_string((now - c.last_heard_us) / 1000) + " ms");
    } else if (c.evict_deadline_us != 0 && now >= c.evict_deadline_us) {
      dead.emplace_back(id, "did not report residency after being asked to evict " +
                                std::to_string(c.pending_evict_bytes) + " bytes");
    } else if (c.revoked_with_deadline() &&
               now >= c.revoke_deadline_us + s.config.revoke_grace_ms * 1000) {
      dead.emplace_back(id, "lease " + std::to_string(c.lease) +
                                " not released within its revoke deadline + " +
                                std::to_string(s.config.revoke_grace_ms) + " ms grace");
    }
  }
  for (auto& [id, reason] : dead) s.kill(id, std::move(reason), now, out);
  s.schedule_all(now, out);
  return out;
}

}  // namespace acb::broker
