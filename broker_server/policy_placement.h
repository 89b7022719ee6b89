// Placement of a new (or moved) client on the least contended device.
//
// Only devices that are not draining and whose capacity holds the client's
// need are candidates; among them the lowest score wins, ties to the lowest
// device id. score = placed clients + waiting clients + (sum of placed
// clients' need bytes + the newcomer's need) / capacity: a device with fewer
// clients, shorter queue and more free declared memory is preferred.
//
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "broker_server/arbiter.h"

namespace acb::broker::policy {

struct DeviceLoad {
  DeviceId device;
  std::uint64_t capacity_bytes;
  bool draining;
  std::size_t placed_clients;
  std::size_t waiting_clients;
  std::uint64_t placed_need_bytes;
};

double contention_score(const DeviceLoad& load, std::uint64_t need_bytes);

/// The least contended candidate; nullopt when no device can take `need_bytes`.
std::optional<DeviceId> choose_device(const std::vector<DeviceLoad>& loads,
                                      std::uint64_t need_bytes);

}  // namespace acb::broker::policy
