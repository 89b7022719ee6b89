// The arbiter's read-only views: queries, snapshot, timeline, next wake-up,
// and the invariant checker.
#include <algorithm>
#include <set>
#include <stdexcept>
#include <string>

#include "broker_server/arbiter.h"
#include "broker_server/arbiter_state.h"
#include "broker_server/policy_queue.h"

namespace acb::broker {

bool Arbiter::has_client(ClientId client) const { return state_->clients.count(client) != 0; }

std::optional<DeviceId> Arbiter::device_of(ClientId client) const {
  auto it = state_->clients.find(client);
  if (it == state_->clients.end()) return std::nullopt;
  return it->second.device;
}

std::uint64_t Arbiter::capacity_of(DeviceId device) const {
  auto it = state_->devices.find(device);
  if (it == state_->devices.end())
    throw ArbiterError("capacity_of: device " + std::to_string(device) + " does not exist");
  return it->second.capacity_bytes;
}

const ArbiterCounters& Arbiter::counters() const { return state_->counters; }
const ArbiterConfig& Arbiter::config() const { return state_->config; }

Snapshot Arbiter::snapshot(TimeUs now) const {
  return snapshot(now, std::nullopt, state_->clients.size());
}

Snapshot Arbiter::snapshot(TimeUs now, std::optional<ClientId> after,
                           std::size_t max_clients) const {
  const State& s = *state_;
  Snapshot snap;
  for (const auto& [id, d] : s.devices)
    snap.devices.push_back({id, d.name, d.capacity_bytes, s.device_bytes(d), d.holder,
                            s.ordered_queue(d, now), d.draining});
  snap.clients_total = s.clients.size();
  for (const auto& [id, c] : s.clients) ++snap.clients_by_state[static_cast<int>(c.state)];
  for (auto it = after ? s.clients.upper_bound(*after) : s.clients.begin(); it != s.clients.end();
       ++it) {
    if (snap.clients.size() == max_clients) {
      if (!snap.clients.empty()) snap.next_after = snap.clients.back().client_id;
      break;
    }
    const ClientRec& c = it->second;
    snap.clients.push_back({it->first, c.name, c.pid, c.priority, c.device, c.state,
                            c.resident_bytes, c.need_bytes, c.quota_bytes, c.grants,
                            c.waited_us_total, c.preemptions, c.gang ? c.gang->second : std::string(),
                            c.local_rank});
  }
  return snap;
}

std::vector<LeaseSlice> Arbiter::timeline(std::size_t max_slices) const {
  const auto& slices = state_->slices;
  const std::size_t n = std::min(max_slices, slices.size());
  return std::vector<LeaseSlice>(slices.end() - static_cast<std::ptrdiff_t>(n), slices.end());
}

std::optional<TimeUs> Arbiter::next_wakeup(TimeUs now) const {
  const State& s = *state_;
  std::optional<TimeUs> at;
  auto consider = [&](TimeUs t) { at = at ? std::min(*at, t) : t; };
  for (const auto& [id, c] : s.clients) {
    if (s.config.heartbeat_timeout_ms != 0)
      consider(c.last_heard_us + s.config.heartbeat_timeout_ms * 1000);
    if (c.evict_deadline_us != 0) consider(c.evict_deadline_us);
    if (c.revoked_with_deadline())
      consider(c.revoke_deadline_us + s.config.revoke_grace_ms * 1000);
    // (A deadline whose offence would reach revoke_offences_max disconnects at
    // the same moment, deadline + grace, only with another reason.)
    if (c.state == ClientState::waiting && s.eligible(c)) {
      const policy::Waiter w = s.waiter_of(c, now);
      if (auto t = policy::next_aging_step(w.priority, w.wait_since_us, now, s.config.aging_ms)) consider(*t);
    }
    // A waiter's penalty ending changes the queue's order (and may end a
    // hold); one that ended since the last scheduling is due now.
    if (c.state == ClientState::waiting)
      if (auto end = s.offences.last_penalty_end(s.offender(c)); end && *end > s.last_schedule_us) consider(*end);
  }
  for (const auto& [id, d] : s.devices) {
    // A penalised head held off a free device (penalty_hold_until) until a
    // quantum after it fell free: due then, or now if that passed since the
    // last scheduling.
    const std::optional<ClientId> head = s.queue_head(d, now);
    if (!d.holder && head && !d.draining && !d.held_for) {
      const TimeUs until = d.free_since_us + s.config.quantum_ms * 1000;
      if (until > s.last_schedule_us && s.penalized(s.clients.at(*head), s.last_schedule_us)) consider(until);
    }
    if (!d.holder || !head) continue;
    const ClientRec& h = s.clients.at(*d.holder);
    const TimeUs quantum_end = h.lease_start_us + s.config.quantum_ms * 1000;
    if (h.state == ClientState::holding) {
      // Any waiter but a better class or an unpenalised equal one (revoked at
      // once) is served at the end of the quantum: an equal class by a
      // quantum revoke, a worse by a share revoke.
      consider(quantum_end);
    } else if (h.revoked_without_deadline()) {
      // Shared without a deadline: a better class (one that aged since) is
      // due now, an equal class at the end of the quantum, when the holder's
      // deadline starts.
      const int head_class = s.waiter_class(s.clients.at(*head), now);
      if (head_class < h.lease_class) consider(now);
      if (head_class == h.lease_class) consider(quantum_end);
    }
  }
  if (at && *at < now) at = now;
  return at;
}

namespace {
[[noreturn]] void broken(const std::string& what) {
  throw std::logic_error("arbiter invariant broken: " + what);
}
std::string dev(DeviceId d) { return "device " + std::to_string(d); }
std::string cli(ClientId c) { return "client " + std::to_string(c); }
}  // namespace

// Linear in the number of clients (plus a sort of each queue): tests call it
// after every event of a simulation with hundreds of clients.
void Arbiter::validate() const {
  const State& s = *state_;
  std::size_t placed = 0;
  for (const auto& [id, d] : s.devices) {
    if (d.id != id) broken(dev(id) + " is filed under another id");
    std::size_t holders = 0, waiting = 0;
    std::uint64_t bytes = 0;
    std::vector<const ClientRec*> members;  // in id order, like d.members
    members.reserve(d.members.size());
    for (ClientId m : d.members) {
      auto it = s.clients.find(m);
      if (it == s.clients.end()) broken(dev(id) + " lists unknown " + cli(m));
      const ClientRec& c = it->second;
      members.push_back(&c);
      bytes += s.reserved_bytes(c);
      if (c.device != id)
        broken(cli(m) + " is a member of " + dev(id) + " but placed on " + dev(c.device));
      if (c.holds()) {
        ++holders;
        if (d.holder != m) broken(cli(m) + " holds but is not the holder of " + dev(id));
      }
      if (c.state == ClientState::waiting) ++waiting;
      if (c.pending_evict_bytes > c.resident_bytes)
        broken(cli(m) + " has more bytes asked to evict than resident");
      if (c.growth_need_bytes && !c.holds()) broken(cli(m) + " grows without holding");
    }
    placed += d.members.size();
    if (holders > 1) broken(dev(id) + " has " + std::to_string(holders) + " holders");
    if (d.holder && holders != 1) broken(dev(id) + " holder is not a holding member");
    // The queue is exactly the waiting members, each once: sorted, unique,
    // a subset of the waiting members, and as many.
    std::vector<ClientId> q = d.queue;
    std::sort(q.begin(), q.end());
    if (std::adjacent_find(q.begin(), q.end()) != q.end())
      broken(dev(id) + " queues a client twice");
    auto m = members.begin();
    for (ClientId w : q) {
      while (m != members.end() && (*m)->id < w) ++m;
      if (m == members.end() || (*m)->id != w) broken(dev(id) + " queues non-member " + cli(w));
      if ((*m)->state != ClientState::waiting)
        broken(dev(id) + " queues " + cli(w) + " that is not waiting");
    }
    if (q.size() != waiting)
      broken(dev(id) + " has " + std::to_string(waiting) + " waiting members but " +
             std::to_string(q.size()) + " queued");
    if (bytes > d.capacity_bytes)
      broken(dev(id) + " accounts " + std::to_string(bytes) + " bytes over its capacity " +
             std::to_string(d.capacity_bytes));
    if (d.removing && d.members.empty()) broken(dev(id) + " is removed but still listed");
  }
  // Members are filed under the device they name, so each client is in at most
  // one member set; equal totals mean every client is in exactly one.
  if (placed != s.clients.size())
    broken(std::to_string(s.clients.size()) + " clients but " + std::to_string(placed) + " placed");
  s.validate_gangs();
}

void Arbiter::State::validate_gangs() const {
  std::size_t ranks = 0;
  for (const auto& [key, g] : gangs) {
    const std::string name = "gang \"" + key.second + "\"";
    if (g.members.empty() || g.members.size() > g.size)
      broken(name + " has " + std::to_string(g.members.size()) + " ranks of " + std::to_string(g.size));
    std::set<DeviceId> on;
    std::size_t holding = 0, revoked_with_deadline = 0, revoked = 0;
    for (ClientId id : g.members) {
      auto it = clients.find(id);
      if (it == clients.end() || it->second.gang != key)
        broken(name + " lists " + cli(id) + " that is not its rank");
      const ClientRec& c = it->second;
      if (!on.insert(c.device).second) broken(name + " has two ranks on " + dev(c.device));
      holding += c.holds() ? 1 : 0;
      revoked += c.state == ClientState::revoked ? 1 : 0;
      revoked_with_deadline += c.revoked_with_deadline() ? 1 : 0;
    }
    ranks += g.members.size();
    if (revoked != 0 && revoked != holding) broken(name + " has holders that are not revoked beside revoked ones");
    // A device the gang keeps idle for a rank that released: anyone else
    // waiting there has the gang on its way out.
    bool others_wait = false;
    for (const auto& [id, d] : devices)
      if (d.held_for == key)
        for (ClientId w : d.queue) others_wait = others_wait || clients.at(w).gang != key;
    if (others_wait && revoked_with_deadline != holding)
      broken(name + " keeps a device idle that another client waits for, and not every holder is revoked "
                    "with a deadline");
  }
  std::size_t in_gangs = 0;
  for (const auto& [id, c] : clients) in_gangs += c.gang ? 1 : 0;
  if (in_gangs != ranks)
    broken(std::to_string(in_gangs) + " clients name a gang but gangs list " + std::to_string(ranks));
  for (const auto& [id, d] : devices) {
    if (!d.held_for) continue;
    if (d.holder) broken(dev(id) + " is held for a gang and has a holder");
    auto it = gangs.find(*d.held_for);
    bool holds = false;
    if (it != gangs.end())
      for (ClientId m : it->second.members) holds = holds || clients.at(m).holds();
    if (!holds) broken(dev(id) + " is held for gang \"" + d.held_for->second + "\", which holds nothing");
  }
}

}  // namespace acb::broker
