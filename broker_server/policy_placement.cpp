#include "broker_server/policy_placement.h"

namespace acb::broker::policy {

double contention_score(const DeviceLoad& load, std::uint64_t need_bytes) {
  const double memory = load.capacity_bytes == 0
                            ? 0.0
                            : static_cast<double>(load.placed_need_bytes + need_bytes) /
                                  static_cast<double>(load.capacity_bytes);
  return static_cast<double>(load.placed_clients + load.waiting_clients) + memory;
}

std::optional<DeviceId> choose_device(const std::vector<DeviceLoad>& loads,
                                      std::uint64_t need_bytes) {
  std::optional<DeviceId> best;
  double best_score = 0;
  for (const DeviceLoad& load : loads) {
    if (load.draining || load.capacity_bytes < need_bytes) continue;
    const double score = contention_score(load, need_bytes);
    if (!best || score < best_score || (score == best_score && load.device < *best)) {
      best = load.device;
      best_score = score;
    }
  }
  return best;
}

}  // namespace acb::broker::policy
