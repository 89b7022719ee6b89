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
  if (aging_ms == 0 || effective_class(p, wait_since_us, now_us, aging_ms) == 0)
    return std::nullopt;
  const std::uint64_t steps = aging_steps(wait_since_us, now_us, aging_ms);
  return wait_since_us + (steps + 1) * aging_ms * 1000;
}

namespace {
using Key = std::tuple<int, bool, TimeUs, std::uint64_t, ClientId>;
Key key_of(const Waiter& w, TimeUs now_us, std::uint64_t aging_ms) {
  return {effective_class(w.priority, w.wait_since_us, now_us, aging_ms), w.penalized,
          w.wait_since_us, w.seq, w.client};
}
}  // namespace

std::vector<ClientId> order_waiters(std::vector<Waiter> waiters, TimeUs now_us,
                                    std::uint64_t aging_ms) {
  std::vector<Key> keys;
  keys.reserve(waiters.size());
  for (const Waiter& w : waiters) keys.push_back(key_of(w, now_us, aging_ms));
  std::sort(keys.begin(), keys.end());
  std::vector<ClientId> out;
  out.reserve(keys.size());
  for (const Key& k : keys) out.push_back(std::get<4>(k));
  return out;
}

std::optional<ClientId> first_waiter(const std::vector<Waiter>& waiters, TimeUs now_us,
                                     std::uint64_t aging_ms) {
  std::optional<Key> best;
  for (const Waiter& w : waiters) {
    Key k = key_of(w, now_us, aging_ms);
    if (!best || k < *best) best = k;
  }
  if (!best) return std::nullopt;
  return std::get<4>(*best);
}

}  // namespace acb::broker::policy
