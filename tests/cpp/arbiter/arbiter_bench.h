// Test harness for the arbiter: a clock, event helpers that validate() after
// every step, and decision filters.
#pragma once

#include <optional>
#include <variant>
#include <vector>

#include "acb_catch.hpp"
#include "broker_server/arbiter.h"

namespace acb::broker::test {

constexpr std::uint64_t MiB = 1ull << 20;

template <class T>
std::vector<T> all_of(const Decisions& ds) {
  std::vector<T> out;
  for (const Decision& d : ds)
    if (const T* t = std::get_if<T>(&d)) out.push_back(*t);
  return out;
}

template <class T>
std::vector<T> for_client(const Decisions& ds, ClientId c) {
  std::vector<T> out;
  for (const T& t : all_of<T>(ds))
    if (t.client == c) out.push_back(t);
  return out;
}

inline bool granted(const Decisions& ds, ClientId c) { return !for_client<Grant>(ds, c).empty(); }

struct Bench {
  Arbiter arb;
  TimeUs now = 1'000'000;

  explicit Bench(ArbiterConfig config = {}) : arb(config) {}

  void advance_ms(std::uint64_t ms) { now += ms * 1000; }

  ClientId hello(ClientId id, Priority p = Priority::training, std::uint64_t need = 0,
                 std::optional<DeviceId> pin = std::nullopt) {
    HelloInfo info;
    info.name = "job" + std::to_string(id);
    info.pid = static_cast<int>(1000 + id);
    info.priority = p;
    info.need_bytes = need;
    info.pinned_device = pin;
    const Placement placement = arb.on_hello(id, info, now);
    INFO(placement.error);
    REQUIRE(placement.device.has_value());
    arb.validate();
    return id;
  }
  Decisions checked(Decisions ds) {
    arb.validate();
    return ds;
  }
  Decisions acquire(ClientId c, std::optional<std::uint64_t> need = std::nullopt) {
    return checked(arb.on_acquire(c, need, now));
  }
  Decisions release(ClientId c, std::optional<std::uint64_t> resident = std::nullopt, bool pinned = false) {
    return checked(arb.on_release(c, resident, now, pinned));
  }
  Decisions residency(ClientId c, std::uint64_t bytes, bool pinned = false) {
    return checked(arb.on_residency(c, bytes, now, pinned));
  }
  Decisions disconnect(ClientId c) { return checked(arb.on_disconnect(c, now)); }
  Decisions tick() { return checked(arb.on_tick(now)); }
  /// Keeps every client alive, then ticks.
  Decisions tick_alive() {
    for (const ClientSnapshot& c : arb.snapshot(now).clients) arb.on_heartbeat(c.client_id, now);
    return tick();
  }

  const ClientSnapshot client(ClientId id) const {
    for (const ClientSnapshot& c : arb.snapshot(now).clients)
      if (c.client_id == id) return c;
    FAIL("no client " << id);
    return {};
  }
  const DeviceSnapshot device(DeviceId id) const {
    for (const DeviceSnapshot& d : arb.snapshot(now).devices)
      if (d.device == id) return d;
    FAIL("no device " << id);
    return {};
  }
  ClientState state(ClientId id) const { return client(id).state; }
};

}  // namespace acb::broker::test
