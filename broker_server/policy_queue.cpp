#include "broker_server/policy_queue.h"

#include <algorithm>
#include <tuple>

namespace acb::broker::policy {

int class_of(Priority p) { return static_cast<int>(p); }

static std::uint64_t aging_steps(TimeUs wait_since_us, TimeUs now_us, std::uint64_t aging_ms) {
  if (aging_ms == 0 || now_us <= wait_since_us) return 0;
  return (now_us - wait_since_us) / (aging_ms * 1000);
}

int effective_class(Priority p, TimeUs wait_since_us, TimeUs now_us, std::uint64_t aging_ms) {
  const std::uint64_t base = static_cast<std::uint64_t>(class_of(p));
  const std::uint64_t steps = aging_steps(wait_since_us, now_us, aging_ms);
  return steps >= base ? 0 : static_cast<int>(base - steps);
}

std::optional<TimeUs> next_aging_step(Priority p, TimeUs wait_since_us, TimeUs now_us,
                                      std::uint64_t aging_ms) {
  if (aging_ms == 0 || effective_class(p, wait_since_us, now_us, aging_ms) == 0) return std::nullopt;
  const std::uint64_t steps = aging_steps(wait_since_us, now_us, aging_ms);
  return wait_since_us + (steps + 1) * aging_ms * 1000;
}

std::vector<ClientId> order_waiters(std::vector<Waiter> waiters, TimeUs now_us, std::uint64_t aging_ms) {
  auto key = [&](const Waiter& w) {
    return std::make_tuple(effective_class(w.priority, w.wait_since_us, now_us, aging_ms),
                           w.wait_since_us, w.seq);
  };
  std::sort(waiters.begin(), waiters.end(),
            [&](const Waiter& a, const Waiter& b) { return key(a) < key(b); });
  std::vector<ClientId> out;
  out.reserve(waiters.size());
  for (const Waiter& w : waiters) out.push_back(w.client);
  return out;
}

}  // namespace acb::broker::policy
