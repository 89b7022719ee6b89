// A fixed-seed simulation of hundreds of clients on a few devices.
//
// Simulated clients obey the protocol (release by the revoke deadline, evict
// what they are asked, report residency), except a few rogue ones that ignore
// revokes and evicts and a few silent ones that never heartbeat. Admin changes
// (priority, quota, quantum, drain/remove/add device) happen along the way.
// After every event: validate(), and from the clients' own view: at most one
// holder per device, and at every grant the memory actually kept by the
// others plus the grantee's need fits the device. Once arrivals stop, every
// waiter must be granted (or rejected) within a bounded simulated time.
#include <algorithm>
#include <map>
#include <random>
#include <string>

#include "arbiter_bench.h"

using namespace acb::broker;
using namespace acb::broker::test;

namespace {

struct SimClient {
  ClientId id = 0;
  std::uint64_t need = 0;
  std::optional<std::uint64_t> growth;
  ClientState state = ClientState::idle;
  std::uint64_t lease = 0;
  std::uint64_t actual = 0;  ///< bytes it really keeps on its device
  bool rogue = false, silent = false;
  std::string last_reject;  ///< reason of the last Reject it got
};

enum class Act { acquire, release, evict_done };
struct Pending {
  Act act;
  ClientId client;
  std::uint64_t value;  ///< lease for release, bytes for evict_done
};

class Sim {
 public:
  explicit Sim(std::uint32_t seed) : rng_(seed), arb_(config()) {
    for (std::uint64_t cap : {2048 * MiB, 4096 * MiB, 8192 * MiB}) add_device(cap);
    for (int i = 0; i < 300; ++i) spawn();
  }

  static ArbiterConfig config() {
    ArbiterConfig cfg;
    cfg.quantum_ms = 50;
    cfg.preempt_deadline_ms = 10;
    cfg.quantum_deadline_ms = 30;
    cfg.revoke_grace_ms = 50;
    cfg.aging_ms = 200;
    cfg.heartbeat_timeout_ms = 500;
    cfg.timeline_capacity = 1000;
    return cfg;
  }

  /// Phase 1: arrivals, churn and admin changes for `ms` simulated ms.
  void churn(std::uint64_t ms) {
    for (std::uint64_t i = 0; i < ms; ++i) {
      step(true);
      if (uniform(0, 99) < 30) {  // a new request from an idle client
        const ClientId id = pick_alive();
        if (clients_.at(id).state == ClientState::idle) schedule(0, Act::acquire, id, 0);
      }
      if (uniform(0, 999) < 3) disconnect_random();
      if (uniform(0, 999) < 2) admin_change();
    }
  }

  /// Phase 2: no arrivals; returns simulated ms until nobody waits or holds.
  std::uint64_t settle(std::uint64_t max_ms) {
    arrivals_ = false;
    for (std::uint64_t ms = 0; ms < max_ms; ++ms) {
      bool busy = false;
      for (const auto& [id, c] : clients_)
        if (c.state != ClientState::idle) busy = true;
      if (!busy) return ms;
      step(false);
    }
    return max_ms;
  }

  std::uint64_t events() const { return events_; }
  std::uint64_t grants() const { return grants_; }
  std::uint64_t max_wait_us() const { return max_wait_us_; }
  Arbiter& arbiter() { return arb_; }
  const std::map<ClientId, SimClient>& clients() const { return clients_; }

 private:
  std::uint64_t uniform(std::uint64_t lo, std::uint64_t hi) {
    return std::uniform_int_distribution<std::uint64_t>(lo, hi)(rng_);
  }

  void add_device(std::uint64_t cap) { capacity_[arb_.add_device("sim", cap)] = cap; }

  void spawn() {
    SimClient c;
    c.id = next_id_++;
    const std::uint64_t r = uniform(0, 99);
    c.rogue = r < 2;
    c.silent = r >= 2 && r < 4;
    c.need = uniform(0, 9) == 0 ? uniform(4096, 9000) * MiB : uniform(0, 1500) * MiB;
    HelloInfo info;
    info.name = "sim" + std::to_string(c.id);
    info.priority = static_cast<Priority>(uniform(0, 2));
    info.need_bytes = c.need;
    const Placement p = arb_.on_hello(c.id, info, now_);
    REQUIRE(p.device.has_value());
    clients_.emplace(c.id, c);
    ++events_;
    arb_.validate();
  }

  ClientId pick_alive() {
    auto it = clients_.lower_bound(uniform(1, next_id_ - 1));
    return it == clients_.end() ? clients_.begin()->first : it->first;
  }

  /// A client is forgotten once it is disconnected; decisions never name it again.
  void forget(ClientId id) {
    clients_.erase(id);
    ++dead_;
  }

  void schedule(std::uint64_t delay_ms, Act act, ClientId c, std::uint64_t value) {
    agenda_.emplace(now_ + delay_ms * 1000, Pending{act, c, value});
  }

  void step(bool arrivals) {
    now_ += 1000;
    while (!agenda_.empty() && agenda_.begin()->first <= now_) {
      const Pending p = agenda_.begin()->second;
      agenda_.erase(agenda_.begin());
      perform(p, arrivals);
    }
    if (now_ % 20'000 == 0)
      for (const auto& [id, c] : clients_)
        if (!c.silent) arb_.on_heartbeat(id, now_);
    if (now_ % 5'000 == 0) handle(arb_.on_tick(now_));
    if (now_ % 100'000 == 0) compare_states();
  }

  void perform(const Pending& p, bool arrivals) {
    auto it = clients_.find(p.client);
    if (it == clients_.end()) return;  // disconnected meanwhile
    SimClient& c = it->second;
    switch (p.act) {
      case Act::acquire: {
        if (c.state != ClientState::idle || !arrivals_) return;
        std::optional<std::uint64_t> need;
        const std::uint64_t stored_need = c.need;
        if (uniform(0, 9) == 0) need = c.need = uniform(0, 2500) * MiB;
        c.state = ClientState::waiting;
        c.last_reject.clear();
        const ClientId id = c.id;
        handle(arb_.on_acquire(id, need, now_));
        // A need above the device or the quota is refused and not kept: the stored one stays.
        if (auto again = clients_.find(id);
            need && again != clients_.end() && again->second.last_reject.find("exceeds") != std::string::npos)
          again->second.need = stored_need;
        break;
      }
      case Act::release: {
        if ((c.state != ClientState::holding && c.state != ClientState::revoked) ||
            c.lease != p.value)
          return;
        if (arrivals && uniform(0, 19) == 0 && !c.growth) {  // grow instead of releasing
          c.growth = c.need + uniform(1, 1024) * MiB;
          handle(arb_.on_acquire(c.id, c.growth, now_));
          schedule(uniform(1, 20), Act::release, c.id, c.lease);
          return;
        }
        c.state = ClientState::idle;
        c.growth.reset();
        c.actual = uniform(0, std::max(c.need, c.actual));
        handle(arb_.on_release(c.id, c.actual, now_));
        if (arrivals && uniform(0, 1) == 0) schedule(uniform(0, 50), Act::acquire, c.id, 0);
        break;
      }
      case Act::evict_done: {
        c.actual -= std::min(c.actual, p.value);
        handle(arb_.on_residency(c.id, c.actual, now_));
        break;
      }
    }
  }

  void handle(const Decisions& ds) {
    ++events_;
    arb_.validate();
    for (const Decision& d : ds) {
      if (const Grant* g = std::get_if<Grant>(&d))
        on_grant(*g);
      else if (const Revoke* r = std::get_if<Revoke>(&d)) {
        SimClient& c = clients_.at(r->client);
        // A second revoke of the same lease only shortens the deadline.
        REQUIRE((c.state == ClientState::holding || c.state == ClientState::revoked));
        REQUIRE(r->lease == c.lease);
        c.state = ClientState::revoked;
        // A share revoke has no deadline: honoured at the client's next idle gap.
        if (!c.rogue) schedule(uniform(0, r->deadline_ms.value_or(50)), Act::release, c.id, c.lease);
      } else if (const Evict* e = std::get_if<Evict>(&d)) {
        SimClient& c = clients_.at(e->client);
        REQUIRE(e->bytes > 0);
        if (!c.rogue) schedule(uniform(0, 5), Act::evict_done, c.id, e->bytes);
      } else if (const Reject* j = std::get_if<Reject>(&d)) {
        SimClient& c = clients_.at(j->client);
        REQUIRE_FALSE(j->reason.empty());
        c.last_reject = j->reason;
        if (c.state == ClientState::waiting) c.state = ClientState::idle;
        c.growth.reset();
        ++rejects_;
      } else if (const Disconnect* x = std::get_if<Disconnect>(&d)) {
        REQUIRE(clients_.count(x->client));
        forget(x->client);
        handle(arb_.on_disconnect(x->client, now_));  // what the server does after closing
        if (arrivals_) spawn();
      }
    }
  }

  void on_grant(const Grant& g) {
    SimClient& c = clients_.at(g.client);
    REQUIRE(arb_.device_of(c.id) == g.device);
    const bool regrant = c.state == ClientState::holding || c.state == ClientState::revoked;
    if (regrant) {
      REQUIRE(g.lease == c.lease);
      REQUIRE(c.growth.has_value());
      c.need = *c.growth;
      c.growth.reset();
    } else {
      REQUIRE(c.state == ClientState::waiting);
      c.state = ClientState::holding;
      c.lease = g.lease;
      ++grants_;
      max_wait_us_ = std::max(max_wait_us_, g.waited_us);
      if (!c.rogue) schedule(uniform(1, 10), Act::release, c.id, c.lease);
    }
    // At most one holder per device, and the memory really kept by the others fits.
    std::uint64_t others = 0;
    for (const auto& [id, o] : clients_) {
      // Idle clients with nothing resident cannot conflict: skip the lookup.
      if (id == c.id ||
          (o.actual == 0 && o.state != ClientState::holding && o.state != ClientState::revoked))
        continue;
      if (arb_.device_of(id) != g.device) continue;
      INFO("device " << g.device << " granted to " << c.id << " while " << id << " holds");
      REQUIRE(o.state != ClientState::holding);
      REQUIRE(o.state != ClientState::revoked);
      others += o.actual;
    }
    INFO("grant to " << c.id << " on device " << g.device);
    REQUIRE(others + std::max(c.need, c.actual) <= capacity_.at(g.device));
  }

  void disconnect_random() {
    const ClientId id = pick_alive();
    forget(id);
    handle(arb_.on_disconnect(id, now_));
    spawn();
  }

  void admin_change() {
    const ClientId id = pick_alive();
    switch (uniform(0, 4)) {
      case 0:
        handle(arb_.set_priority(id, static_cast<Priority>(uniform(0, 2)), now_));
        break;
      case 1:
        handle(arb_.set_quota(id, uniform(0, 1) ? 0 : uniform(100, 3000) * MiB, now_));
        break;
      case 2:
        handle(arb_.set_quantum(uniform(10, 100), now_));
        break;
      default: {
        // Replace a device: drain or remove one, add a fresh one.
        auto snap = arb_.snapshot(now_);
        std::vector<DeviceId> live;
        for (const auto& d : snap.devices)
          if (!d.draining) live.push_back(d.device);
        if (live.size() < 2) return;
        const DeviceId victim = live[uniform(0, live.size() - 1)];
        add_device(capacity_.at(victim));
        handle(uniform(0, 1) ? arb_.remove_device(victim, now_) : arb_.drain_device(victim, now_));
      }
    }
  }

  void compare_states() {
    for (const ClientSnapshot& s : arb_.snapshot(now_).clients) {
      const SimClient& c = clients_.at(s.client_id);
      INFO("client " << c.id);
      REQUIRE(s.state == c.state);
      REQUIRE(s.resident_bytes == c.actual);  // the sim never reports more than fits
    }
  }

  std::mt19937_64 rng_;
  Arbiter arb_;
  TimeUs now_ = 1'000'000;
  std::map<DeviceId, std::uint64_t> capacity_;
  std::map<ClientId, SimClient> clients_;
  std::multimap<TimeUs, Pending> agenda_;
  ClientId next_id_ = 1;
  bool arrivals_ = true;
  std::uint64_t events_ = 0, grants_ = 0, rejects_ = 0, dead_ = 0, max_wait_us_ = 0;
};

}  // namespace

TEST_CASE("simulation: 300 clients, 3+ devices, churn and admin changes, invariants hold",
          "[arbiter][simulation]") {
  Sim sim(20261125);
  sim.churn(13000);
  INFO("events " << sim.events() << " grants " << sim.grants());
  CHECK(sim.events() > 20'000);
  CHECK(sim.grants() > 1000);
  // No starvation under churn: every waiter reaches the top class after
  // 2 * aging_ms (400 ms) and is then served FIFO among ~100 waiters per
  // device with leases of at most 10 ms (and revoke deadlines of 10-30 ms).
  CHECK(sim.max_wait_us() < 2'000'000);
  // Once arrivals stop, every waiter is served within a bounded time: each
  // lease lasts at most ~10 ms, so 300 clients drain in well under 60 s.
  const std::uint64_t settle_ms = sim.settle(60'000);
  INFO("settled in " << settle_ms << " ms after " << sim.events() << " events");
  CHECK(settle_ms < 60'000);
  for (const auto& [id, c] : sim.clients()) {
    INFO("client " << id);
    CHECK(c.state == ClientState::idle);
  }
  for (const DeviceSnapshot& d : sim.arbiter().snapshot(0).devices) {
    CHECK(d.queue.empty());
    CHECK_FALSE(d.holder.has_value());
  }
}
