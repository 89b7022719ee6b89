// The scheduling steps shared by the arbiter's events (arbiter_state.h).
#include <algorithm>
#include <string>

#include "broker_server/arbiter_state.h"
#include "broker_server/policy_memory.h"
#include "broker_server/policy_placement.h"
#include "broker_server/policy_queue.h"

namespace acb::broker {

namespace {
using policy::saturating_add;
using policy::saturating_sub;

// How long a client that answered an evict having released nothing is left
// alone (ClientRec::unevictable_bytes): long enough that asking again does
// not spin, short enough that a transient cause (an evict that crossed the
// client's own release) costs a waiter little.
constexpr TimeUs kUnevictableHoldOffUs = 50'000;
}  // namespace

ClientRec* Arbiter::State::find_client(ClientId id) {
  auto it = clients.find(id);
  return it == clients.end() ? nullptr : &it->second;
}

DeviceRec& Arbiter::State::device(DeviceId id, const char* call) {
  auto it = devices.find(id);
  if (it == devices.end())
    throw ArbiterError(std::string(call) + ": device " + std::to_string(id) + " does not exist");
  return it->second;
}

ClientRec& Arbiter::State::client(ClientId id, const char* call) {
  auto it = clients.find(id);
  if (it == clients.end())
    throw ArbiterError(std::string(call) + ": client " + std::to_string(id) + " is not connected");
  return it->second;
}

std::uint64_t Arbiter::State::reserved_bytes(const ClientRec& c) const {
  return c.holds() ? std::max(c.need_bytes, c.resident_bytes) : c.resident_bytes;
}

std::uint64_t Arbiter::State::device_bytes(const DeviceRec& d,
                                           std::optional<ClientId> except) const {
  std::uint64_t total = 0;
  for (ClientId id : d.members)
    if (id != except) total += reserved_bytes(clients.at(id));
  return total;
}

// A rank of a ready gang competes with the gang's one key (arbiter_gang.cpp),
// so that gangs are in the same order on every device.
policy::Waiter Arbiter::State::waiter_of(const ClientRec& c, TimeUs now) const {
  policy::Waiter w{c.id, c.priority, c.wait_since_us, c.wait_seq, penalized(c, now)};
  const GangRec* g = gang_of(c);
  if (g == nullptr || !gang_ready(*g)) return w;
  for (ClientId id : g->members) {
    const ClientRec& r = clients.at(id);
    w.priority = std::max(w.priority, r.priority);  // its worst class
    w.wait_since_us = std::max(w.wait_since_us, r.wait_since_us);  // since it is complete
    w.seq = std::max(w.seq, r.wait_seq);
    w.penalized = w.penalized || penalized(r, now);
  }
  return w;
}

/// The waiters that may be granted (eligible): a rank of an incomplete gang
/// neither is granted nor asks anyone to give the device away.
std::vector<policy::Waiter> Arbiter::State::waiters_of(const DeviceRec& d, TimeUs now) const {
  std::vector<policy::Waiter> waiters;
  waiters.reserve(d.queue.size());
  for (ClientId id : d.queue)
    if (const ClientRec& c = clients.at(id); eligible(c)) waiters.push_back(waiter_of(c, now));
  return waiters;
}

std::vector<ClientId> Arbiter::State::ordered_queue(const DeviceRec& d, TimeUs now) const {
  std::vector<ClientId> order = policy::order_waiters(waiters_of(d, now), now, config.aging_ms);
  for (ClientId id : d.queue)  // then the ranks of incomplete gangs, in arrival order
    if (!eligible(clients.at(id))) order.push_back(id);
  return order;
}

std::optional<ClientId> Arbiter::State::queue_head(const DeviceRec& d, TimeUs now) const {
  return policy::first_waiter(waiters_of(d, now), now, config.aging_ms);
}

int Arbiter::State::waiter_class(const ClientRec& c, TimeUs now) const {
  const policy::Waiter w = waiter_of(c, now);
  return policy::effective_class(w.priority, w.wait_since_us, now, config.aging_ms);
}

void Arbiter::State::apply_residency(ClientRec& c, std::uint64_t reported, TimeUs now,
                                     Decisions& out, bool pinned) {
  // An answer to an evict that released nothing: all that is left must stay
  // for now. An unasked report (or a lease) makes everything evictable again.
  const bool answered_without_release = c.pending_evict_bytes != 0 && reported >= c.resident_bytes;
  c.unevictable_bytes = answered_without_release ? reported : 0;
  c.unevictable_until_us = answered_without_release ? now + kUnevictableHoldOffUs : 0;
  // A report is the new truth: whatever was asked before is superseded.
  c.pending_evict_bytes = 0;
  c.evict_deadline_us = 0;
  c.pinned = pinned;
  const DeviceRec& d = devices.at(c.device);
  // More than the device can hold as accounted (a stale or wrong report): only
  // what fits is accounted, and the rest is asked back.
  c.resident_bytes = std::min(reported, saturating_sub(d.capacity_bytes, device_bytes(d, c.id)));
  const std::uint64_t unaccounted = reported - c.resident_bytes;
  c.unaccounted_bytes = unaccounted;
  // Over the quota: still accounted (the bytes are really there) until evicted.
  const std::uint64_t over_quota =
      c.quota_bytes != 0 && c.resident_bytes > c.quota_bytes ? c.resident_bytes - c.quota_bytes : 0;
  // Pinned bytes cannot be offloaded: asking would only be answered by the
  // same report (the device's other users plan around them instead).
  if (unaccounted + over_quota == 0 || answered_without_release || c.pinned) return;
  ++counters.evict_requests;
  counters.evict_requested_bytes += unaccounted + over_quota;
  if (over_quota != 0) arm_evict(c, over_quota, now);
  out.push_back(Evict{c.id, c.device, unaccounted + over_quota});
}

void Arbiter::State::enqueue(ClientRec& c, TimeUs now) {
  c.state = ClientState::waiting;
  c.wait_since_us = now;
  c.wait_seq = next_wait_seq++;
  devices.at(c.device).queue.push_back(c.id);
}

void Arbiter::State::dequeue(ClientRec& c) {
  auto& q = devices.at(c.device).queue;
  q.erase(std::remove(q.begin(), q.end(), c.id), q.end());
  c.state = ClientState::idle;
}

void Arbiter::State::arm_evict(ClientRec& c, std::uint64_t bytes, TimeUs now) {
  c.pending_evict_bytes += bytes;
  if (c.evict_deadline_us == 0)
    c.evict_deadline_us = now + (config.quantum_deadline_ms + config.revoke_grace_ms) * 1000;
}

void Arbiter::State::evict(ClientRec& c, std::uint64_t bytes, TimeUs now, Decisions& out) {
  if (bytes == 0) return;
  arm_evict(c, bytes, now);
  ++counters.evict_requests;
  counters.evict_requested_bytes += bytes;
  out.push_back(Evict{c.id, c.device, bytes});
}

void Arbiter::State::reject(ClientRec& c, std::string reason, Decisions& out) {
  ++counters.rejects;
  out.push_back(Reject{c.id, std::move(reason)});
}

void Arbiter::State::end_lease(ClientRec& c, TimeUs now) {
  DeviceRec& d = devices.at(c.device);
  if (d.holder == c.id) {
    d.holder.reset();
    d.free_since_us = now;
  }
  close_slice(c, now);
  c.state = ClientState::idle;
  c.growth_need_bytes.reset();
  c.revoke_deadline_us = 0;
}

bool Arbiter::State::make_room(DeviceRec& d, ClientRec& requester, std::uint64_t need_bytes,
                               TimeUs now, Decisions& out, std::uint64_t* pinned_blocking) {
  std::uint64_t others = 0, pending = 0, pinned = 0;
  std::vector<policy::Resident> residents;
  for (ClientId id : d.members) {
    if (id == requester.id) continue;
    const ClientRec& m = clients.at(id);
    // Bytes reported beyond what fit are really on the device, and already
    // asked back (apply_residency): no grant counts on them, none re-asks.
    others = saturating_add(others, saturating_add(reserved_bytes(m), m.unaccounted_bytes));
    pending = saturating_add(pending, saturating_add(m.pending_evict_bytes, m.unaccounted_bytes));
    if (m.pinned) {
      pinned += m.resident_bytes;  // counted, never evicted
      continue;
    }
    const std::uint64_t kept = now < m.unevictable_until_us ? m.unevictable_bytes : 0;
    const std::uint64_t evictable = saturating_sub(m.resident_bytes, m.pending_evict_bytes + kept);
    if (!m.holds() && evictable > 0)
      residents.push_back({id, m.priority, m.last_grant_us, evictable});
  }
  const std::uint64_t deficit =
      policy::fit_deficit(d.capacity_bytes, others, requester.resident_bytes, need_bytes);
  if (deficit == 0) return true;
  if (pinned_blocking != nullptr && d.capacity_bytes < pinned + std::max(need_bytes, requester.resident_bytes))
    *pinned_blocking = pinned;
  if (pending >= deficit) return false;  // enough is already on its way out
  for (const policy::EvictRequest& r :
       policy::plan_evictions(std::move(residents), deficit - pending))
    evict(clients.at(r.client), r.bytes, now, out);
  return false;
}

void Arbiter::State::schedule(DeviceRec& d, TimeUs now, Decisions& out) {
  if (d.holder) {
    ClientRec& h = clients.at(*d.holder);
    std::uint64_t pinned = 0;
    if (h.growth_need_bytes && make_room(d, h, *h.growth_need_bytes, now, out, &pinned)) {
      h.need_bytes = *h.growth_need_bytes;
      h.growth_need_bytes.reset();
      out.push_back(Grant{h.id, d.id, h.lease, 0});
    } else if (h.growth_need_bytes && pinned != 0) {
      // The holder is blocked in an allocation: a growth that can only fit
      // once pinned memory leaves is a real out-of-memory now, not a wait.
      reject(h,
             "growth to " + std::to_string(*h.growth_need_bytes) + " bytes does not fit device " +
                 std::to_string(d.id) + " (" + std::to_string(d.capacity_bytes) + " bytes) beside " +
                 std::to_string(pinned) + " bytes pinned by processes running without acb (acb.disable())",
             out);
      h.growth_need_bytes.reset();
    }
    auto revoke = [&](RevokeReason reason, std::optional<std::uint64_t> deadline_ms) {
      revoke_holder(h, reason, deadline_ms, now, out);
    };
    // A drain gives the holder a deadline, unless it has one already.
    if (d.draining && !h.revoked_with_deadline()) {
      revoke(RevokeReason::drain, config.quantum_deadline_ms);
      return;
    }
    const bool quantum_used = saturating_sub(now, h.lease_start_us) >= config.quantum_ms * 1000;
    if (h.state == ClientState::revoked) {
      // Already revoked with a longer deadline (quantum, drain) or none
      // (share), and the head of the queue got more urgent: a better class
      // now waits, so the short preempt deadline applies from here; or, after
      // a share revoke, an equal class waits (it came so, or aged into the
      // holder's class) and the lease has used its quantum, so the quantum
      // deadline does: a busy holder keeps the device no longer than that.
      const std::optional<ClientId> first = queue_head(d, now);
      if (!first) return;
      const int head_class = waiter_class(clients.at(*first), now);
      if (head_class < h.lease_class && h.revoke_deadline_us > now + config.preempt_deadline_ms * 1000) {
        revoke(RevokeReason::preempt, config.preempt_deadline_ms);
      } else if (head_class == h.lease_class && h.revoked_without_deadline() && quantum_used) {
        revoke(RevokeReason::quantum, config.quantum_deadline_ms);
      }
      return;
    }
    const std::optional<ClientId> first = queue_head(d, now);
    if (!first) return;
    const ClientRec& head = clients.at(*first);
    const int head_class = waiter_class(head, now);
    if (head_class < h.lease_class) {
      revoke(RevokeReason::preempt, config.preempt_deadline_ms);
    } else if (quantum_used) {
      // An equal class takes turns by quanta. A worse class gets the device
      // whenever the holder is idle (lazy holding must not keep an idle
      // device from it), but never forces a busy holder off until it ages.
      if (head_class == h.lease_class) {
        revoke(RevokeReason::quantum, config.quantum_deadline_ms);
      } else {
        revoke(RevokeReason::share, std::nullopt);
      }
    } else if (head_class == h.lease_class && !penalized(head, now)) {
      // An equal class waits inside the quantum: the holder gives the device
      // away at its next idle gap (at once if it is idle now), and keeps it
      // while busy until the quantum ends (the quantum revoke above). Only
      // the holder knows whether it is busy; a revoke without a deadline
      // lets it decide without a round trip. A revoke offender is not
      // served early: a free device reaches it only once it has been free
      // a quantum, so an early release would leave the device idle.
      revoke(RevokeReason::share, std::nullopt);
    }
    return;
  }
  if (d.held_for) {
    serve_reserved(d, now, out);
    return;
  }
  if (d.draining) return;
  const std::optional<ClientId> first = queue_head(d, now);
  if (!first) return;
  ClientRec& head = clients.at(*first);
  if (GangRec* g = gang_of(head)) {
    grant_gang(*g, now, out);
    return;
  }
  // A revoke offender goes behind every waiter of its class, and also behind
  // those that come back within a quantum of the device falling free: else
  // it takes the idle device between a punctual client's leases and holds it
  // until its deadline again (docs/scheduling.md, "Revoke offences").
  if (penalty_hold_until(d, head, now)) return;
  if (!make_room(d, head, head.need_bytes, now, out)) return;
  grant(head, d, waiter_class(head, now), now, out);
  // The new holder may owe the next waiter a revoke already (an equal class
  // queued behind it: yield at the idle gap); decided now, not at the next event.
  schedule(d, now, out);
}

void Arbiter::State::revoke_holder(ClientRec& h, RevokeReason reason, std::optional<std::uint64_t> deadline_ms,
                                   TimeUs now, Decisions& out) {
  revoke_one(h, reason, deadline_ms, now, out);
  const GangRec* g = gang_of(h);
  if (g == nullptr) return;
  for (ClientId id : g->members) {
    ClientRec& o = clients.at(id);
    const bool sooner = o.state == ClientState::holding || h.revoke_deadline_us < o.revoke_deadline_us;
    if (id != h.id && o.holds() && sooner) revoke_one(o, reason, deadline_ms, now, out);
  }
}

void Arbiter::State::revoke_one(ClientRec& h, RevokeReason reason, std::optional<std::uint64_t> deadline_ms,
                                TimeUs now, Decisions& out) {
  h.state = ClientState::revoked;
  h.revoke_deadline_us = deadline_ms ? now + *deadline_ms * 1000 : kNoRevokeDeadline;
  ++counters.revokes;
  if (reason == RevokeReason::preempt) {
    ++counters.preemptions;
    ++h.preemptions;
  }
  out.push_back(Revoke{h.id, h.device, h.lease, deadline_ms, reason});
}

void Arbiter::State::grant(ClientRec& head, DeviceRec& d, int cls, TimeUs now, Decisions& out) {
  dequeue(head);
  const std::uint64_t waited = now > head.wait_since_us ? now - head.wait_since_us : 0;
  head.state = ClientState::holding;
  head.unevictable_bytes = 0;  // what it keeps may change while it holds
  head.unevictable_until_us = 0;
  head.lease = ++next_lease;
  head.lease_start_us = now;
  head.lease_class = cls;
  head.last_grant_us = now;
  head.waited_us_total += waited;
  ++head.grants;
  ++counters.grants;
  d.holder = head.id;
  open_slice(head, now);
  out.push_back(Grant{head.id, d.id, head.lease, waited});
}

void Arbiter::State::schedule_all(TimeUs now, Decisions& out) {
  last_schedule_us = std::max(last_schedule_us, now);
  for (auto& [id, d] : devices) schedule(d, now, out);
  reap_devices();
}

std::vector<policy::DeviceLoad> Arbiter::State::device_loads(std::optional<DeviceId> except) const {
  std::vector<policy::DeviceLoad> loads;
  for (const auto& [id, d] : devices) {
    if (id == except) continue;
    std::uint64_t placed_need = 0;
    for (ClientId m : d.members) placed_need += clients.at(m).need_bytes;
    loads.push_back(
        {id, d.capacity_bytes, d.draining, d.members.size(), d.queue.size(), placed_need});
  }
  return loads;
}

std::optional<DeviceId> Arbiter::State::move_target(const ClientRec& c,
                                                    std::uint64_t need_bytes) const {
  std::vector<policy::DeviceLoad> loads = device_loads(c.device);
  if (c.gang) {  // never beside another rank of its gang
    const std::set<DeviceId> taken = gang_devices(*c.gang, c.id);
    std::erase_if(loads, [&](const policy::DeviceLoad& l) { return taken.count(l.device) != 0; });
  }
  return policy::choose_device(loads, need_bytes);
}

bool Arbiter::State::relocate(ClientRec& c, TimeUs now, Decisions& out) {
  if (c.holds()) return true;  // moved after it releases
  if (c.fixed) return false;  // its process computes on this GPU: it cannot follow
  const auto target = move_target(c, c.need_bytes);
  if (!target) return false;
  if (c.resident_bytes > 0) {
    // Its memory lives on the draining device: it moves once it reports 0.
    evict(c, c.resident_bytes - c.pending_evict_bytes, now, out);
    return true;
  }
  DeviceRec& from = devices.at(c.device);
  DeviceRec& to = devices.at(*target);
  from.members.erase(c.id);
  to.members.insert(c.id);
  if (c.state == ClientState::waiting) {
    from.queue.erase(std::remove(from.queue.begin(), from.queue.end(), c.id), from.queue.end());
    to.queue.push_back(c.id);  // keeps its wait_since: the move costs it no place
  }
  c.device = *target;
  return true;
}

void Arbiter::State::leave_draining(ClientRec& c, TimeUs now, Decisions& out) {
  if (c.holds() || !devices.at(c.device).draining) return;
  if (relocate(c, now, out) || c.state != ClientState::waiting) return;
  dequeue(c);
  reject(c,
         c.fixed ? "device " + std::to_string(c.device) + " is draining and this client is fixed to it (its GPU)"
                  : "device " + std::to_string(c.device) + " is draining and no other device can take " +
                        std::to_string(c.need_bytes) + " bytes",
         out);
}

void Arbiter::State::forget_client(ClientId id, TimeUs now, Decisions& out) {
  ClientRec& c = clients.at(id);
  (void)count_overdue(c, now);  // leaving past its revoke deadline (disconnected, or closed): an offence
  if (c.holds()) {
    end_lease(c, now);
    gang_rank_released(c, /*left=*/true, now, out);
  }
  if (c.state == ClientState::waiting) dequeue(c);
  leave_gang(c);
  devices.at(c.device).members.erase(id);
  clients.erase(id);
  ++counters.disconnects;
}

void Arbiter::State::drop_client(ClientId id, TimeUs now, Decisions& out) {
  forget_client(id, now, out);
  schedule_all(now, out);
}

void Arbiter::State::kill(ClientId id, std::string reason, TimeUs now, Decisions& out) {
  out.push_back(Disconnect{id, std::move(reason)});
  forget_client(id, now, out);
}

void Arbiter::State::reap_devices() {
  std::erase_if(devices,
                [](const auto& kv) { return kv.second.removing && kv.second.members.empty(); });
}

void Arbiter::State::open_slice(ClientRec& c, TimeUs now) {
  slices.push_back(LeaseSlice{c.device, c.id, c.name, now, std::nullopt});
  c.slice = first_slice + slices.size() - 1;
  while (slices.size() > config.timeline_capacity) {
    slices.pop_front();
    ++first_slice;
  }
}

void Arbiter::State::close_slice(ClientRec& c, TimeUs now) {
  if (c.slice && *c.slice >= first_slice && *c.slice - first_slice < slices.size())
    slices[*c.slice - first_slice].end_us = now;
  c.slice.reset();
}

}  // namespace acb::broker
