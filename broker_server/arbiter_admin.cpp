// The arbiter's runtime administration: devices, priorities, quotas, quantum.
#include <string>

#include "broker_server/arbiter.h"
#include "broker_server/arbiter_state.h"
#include "broker_server/policy_queue.h"

namespace acb::broker {

DeviceId Arbiter::add_device(std::string name, std::uint64_t capacity_bytes) {
  State& s = *state_;
  if (capacity_bytes == 0)
    throw ArbiterError("add_device: device \"" + name + "\" has capacity 0 bytes");
  DeviceRec d;
  d.id = s.next_device++;
  d.name = std::move(name);
  d.capacity_bytes = capacity_bytes;
  const DeviceId id = d.id;
  s.devices.emplace(id, std::move(d));
  return id;
}

Decisions Arbiter::drain_device(DeviceId device, TimeUs now) {
  State& s = *state_;
  Decisions out;
  DeviceRec& d = s.device(device, "drain_device");
  d.draining = true;
  // Copy: relocation changes the member set.
  const std::vector<ClientId> members(d.members.begin(), d.members.end());
  for (ClientId id : members) s.leave_draining(s.clients.at(id), now, out);
  s.schedule_all(now, out);
  return out;
}

Decisions Arbiter::remove_device(DeviceId device, TimeUs now) {
  Decisions out = drain_device(device, now);
  state_->devices.at(device).removing = true;
  state_->reap_devices();
  return out;
}

Decisions Arbiter::set_priority(ClientId client, Priority priority, TimeUs now) {
  State& s = *state_;
  Decisions out;
  ClientRec& c = s.client(client, "set_priority");
  c.priority = priority;
  // The holder is judged by its new class from now on: lowering it may let a waiter preempt.
  if (c.holds()) c.lease_class = policy::class_of(priority);
  s.schedule_all(now, out);
  return out;
}

Decisions Arbiter::set_quota(ClientId client, std::uint64_t quota_bytes, TimeUs now) {
  State& s = *state_;
  Decisions out;
  ClientRec& c = s.client(client, "set_quota");
  c.quota_bytes = quota_bytes;
  if (quota_bytes != 0) {
    auto over = [&](std::uint64_t need) {
      return "need " + std::to_string(need) + " bytes exceeds the quota " +
             std::to_string(quota_bytes) + " bytes of client " + std::to_string(client);
    };
    if (c.state == ClientState::waiting && c.need_bytes > quota_bytes) {
      s.dequeue(c);
      s.reject(c, over(c.need_bytes), out);
    }
    if (c.growth_need_bytes && *c.growth_need_bytes > quota_bytes) {
      s.reject(c, over(*c.growth_need_bytes), out);
      c.growth_need_bytes.reset();
    }
    const std::uint64_t kept = c.resident_bytes - c.pending_evict_bytes;
    if (kept > quota_bytes) s.evict(c, kept - quota_bytes, now, out);
  }
  s.schedule_all(now, out);
  return out;
}

Decisions Arbiter::set_quantum(std::uint64_t quantum_ms, TimeUs now) {
  State& s = *state_;
  Decisions out;
  if (quantum_ms == 0) throw ArbiterError("set_quantum: quantum_ms must be > 0");
  s.config.quantum_ms = quantum_ms;
  s.schedule_all(now, out);
  return out;
}

}  // namespace acb::broker
