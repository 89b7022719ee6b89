// Gang leases: the ranks of one multi-process job are granted together.
//
// A rank of a collective job computes only while every other rank does (a
// collective waits for all), so a rank granted alone holds its device for
// nothing, and two jobs that each got one of two devices would wait on each
// other forever. So (docs/scheduling.md, "Gangs"):
//  - the ranks of a gang are placed on distinct devices;
//  - a rank competes in its device's queue only once every rank of its gang
//    is connected and waiting, and then with one key for the whole gang (its
//    worst class, waiting since its last rank asked): gangs are in the same
//    order on every device, so that two gangs never each hold the head of
//    one device the other needs;
//  - the gang is granted when each rank is first on its free device and
//    fits there, all in one decision; until then its devices are granted to
//    nobody else (the head waits, as a single client waits for room);
//  - a revoke of one holder is a revoke of all of them (revoke_holder);
//  - the gang's lease is one lease across its devices: when one rank's lease
//    ends while others hold, its device is reserved for the gang until the
//    last rank has released. The rank gets it back at once when it asks
//    again, revoked as the others are: a rank that went idle between
//    collectives must be able to take part in the next one, which its
//    partners are already waiting in, holding their devices. Anyone else
//    waiting for a reserved device has the gang's holders revoked (reason
//    gang, deadline quantum_deadline_ms), and so does a rank that leaves (a
//    disconnect: its partners have lost the rank they compute with).
#include <string>

#include "broker_server/arbiter_state.h"

namespace acb::broker {

GangRec* Arbiter::State::gang_of(const ClientRec& c) {
  if (!c.gang) return nullptr;
  auto it = gangs.find(*c.gang);
  return it == gangs.end() ? nullptr : &it->second;
}

const GangRec* Arbiter::State::gang_of(const ClientRec& c) const {
  if (!c.gang) return nullptr;
  auto it = gangs.find(*c.gang);
  return it == gangs.end() ? nullptr : &it->second;
}

std::string Arbiter::State::gang_refusal(const GangKey& key, const GangInfo& info) const {
  const std::string name = "gang \"" + info.job + "\"";
  if (info.job.empty()) return "a gang needs a job key";
  if (info.local_world_size == 0) return name + ": the local world size must be at least 1";
  if (info.local_rank && *info.local_rank >= info.local_world_size)
    return name + ": local rank " + std::to_string(*info.local_rank) + " is not below the local world size " +
           std::to_string(info.local_world_size);
  std::size_t usable = 0;
  for (const auto& [id, d] : devices) usable += d.draining ? 0 : 1;
  if (info.local_world_size > usable)
    return name + " needs " + std::to_string(info.local_world_size) + " distinct devices; the broker has " +
           std::to_string(usable) + " that are not draining";
  auto it = gangs.find(key);
  if (it == gangs.end()) return {};
  const GangRec& g = it->second;
  if (g.size != info.local_world_size)
    return name + " has " + std::to_string(g.size) + " ranks on this node, this rank says " +
           std::to_string(info.local_world_size);
  if (g.members.size() >= g.size) return name + " already has its " + std::to_string(g.size) + " ranks connected";
  if (info.local_rank && g.ranks.count(*info.local_rank))
    return name + ": local rank " + std::to_string(*info.local_rank) + " is already connected";
  return {};
}

std::set<DeviceId> Arbiter::State::gang_devices(const GangKey& key, std::optional<ClientId> except) const {
  std::set<DeviceId> taken;
  auto it = gangs.find(key);
  if (it == gangs.end()) return taken;
  for (ClientId id : it->second.members)
    if (id != except) taken.insert(clients.at(id).device);
  return taken;
}

void Arbiter::State::join_gang(ClientRec& c, const GangKey& key, const GangInfo& info) {
  GangRec& g = gangs[key];
  if (g.members.empty()) g.size = info.local_world_size;
  g.members.insert(c.id);
  if (info.local_rank) g.ranks.insert(*info.local_rank);
  c.gang = key;
  c.local_rank = info.local_rank;
}

void Arbiter::State::leave_gang(const ClientRec& c) {
  GangRec* g = gang_of(c);
  if (g == nullptr) return;
  g->members.erase(c.id);
  if (c.local_rank) g->ranks.erase(*c.local_rank);
  if (g->members.empty()) gangs.erase(*c.gang);
}

bool Arbiter::State::gang_ready(const GangRec& g) const {
  if (g.members.size() != g.size) return false;
  for (ClientId id : g.members)
    if (clients.at(id).state != ClientState::waiting) return false;
  return true;
}

bool Arbiter::State::eligible(const ClientRec& c) const {
  const GangRec* g = gang_of(c);
  return g == nullptr || gang_ready(*g);
}

void Arbiter::State::grant_gang(GangRec& g, TimeUs now, Decisions& out) {
  std::vector<ClientRec*> ranks;
  for (ClientId id : g.members) {
    ClientRec& c = clients.at(id);
    const DeviceRec& d = devices.at(c.device);
    if (d.holder || d.draining || d.held_for || queue_head(d, now) != id || penalty_hold_until(d, c, now)) return;
    ranks.push_back(&c);
  }
  // Every device makes its room at once, not one after the other.
  bool fits = true;
  for (ClientRec* c : ranks) fits = make_room(devices.at(c->device), *c, c->need_bytes, now, out) && fits;
  if (!fits) return;
  const int cls = waiter_class(*ranks.front(), now);  // the gang's, while it is still waiting
  for (ClientRec* c : ranks) grant(*c, devices.at(c->device), cls, now, out);
  // The new holders may owe a waiter behind them a revoke already (schedule's last step).
  for (ClientRec* c : ranks) schedule(devices.at(c->device), now, out);
}

namespace {
// The revoked holders' earliest deadline is kept by every holder revoked later.
std::uint64_t remaining_ms(TimeUs deadline_us, TimeUs now) {
  return deadline_us > now ? (deadline_us - now + 999) / 1000 : 0;
}
}  // namespace

void Arbiter::State::revoke_gang_holders(const GangRec& g, TimeUs now, Decisions& out) {
  const TimeUs deadline_us = now + config.quantum_deadline_ms * 1000;
  for (ClientId id : g.members) {
    ClientRec& o = clients.at(id);
    if (o.holds() && (o.state == ClientState::holding || o.revoke_deadline_us > deadline_us))
      revoke_one(o, RevokeReason::gang, config.quantum_deadline_ms, now, out);
  }
}

void Arbiter::State::gang_rank_released(const ClientRec& c, bool left, TimeUs now, Decisions& out) {
  const GangRec* g = gang_of(c);
  if (g == nullptr) return;
  bool others_hold = false;
  for (ClientId id : g->members) others_hold = others_hold || (id != c.id && clients.at(id).holds());
  if (others_hold) {
    devices.at(c.device).held_for = *c.gang;
    if (left) revoke_gang_holders(*g, now, out);
    return;
  }
  for (auto& [id, d] : devices)  // the last rank released: the gang's devices are free for all
    if (d.held_for == c.gang) d.held_for.reset();
}

void Arbiter::State::serve_reserved(DeviceRec& d, TimeUs now, Decisions& out) {
  auto g_it = gangs.find(*d.held_for);
  if (g_it == gangs.end()) return;  // not reached: the last rank's release frees the device
  const GangRec& g = g_it->second;
  ClientRec* rank = nullptr;
  const ClientRec* holder = nullptr;  // one of the gang's holders: its lease class and revoke
  for (ClientId id : g.members) {
    ClientRec& c = clients.at(id);
    if (c.device == d.id && c.state == ClientState::waiting) rank = &c;
    if (c.holds() && (holder == nullptr || c.revoke_deadline_us < holder->revoke_deadline_us)) holder = &c;
  }
  if (holder == nullptr) return;
  if (rank != nullptr && make_room(d, *rank, rank->need_bytes, now, out)) {
    const ClientRec& like = *holder;  // granting may not move it, but read what is needed first
    const bool revoked = like.state == ClientState::revoked;
    const bool with_deadline = like.revoked_with_deadline();
    const std::uint64_t deadline_ms = remaining_ms(like.revoke_deadline_us, now);
    const int lease_class = like.lease_class;
    d.held_for.reset();
    grant(*rank, d, lease_class, now, out);
    if (revoked)
      revoke_one(*rank, RevokeReason::gang, with_deadline ? std::optional<std::uint64_t>(deadline_ms) : std::nullopt,
                 now, out);
    schedule(d, now, out);  // others waiting here: as for any holder
    return;
  }
  // Someone else waits for the device the gang keeps idle: the gang gives its lease back.
  for (ClientId id : d.queue)
    if (clients.at(id).gang != d.held_for) {
      revoke_gang_holders(g, now, out);
      return;
    }
}

}  // namespace acb::broker
