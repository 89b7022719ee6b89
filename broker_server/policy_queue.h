// Queue order of the arbiter: priority classes, FIFO inside a class, aging.
//
// A class is a number, 0 (inference) best. A waiter's effective class is its
// priority's class minus one for every full `aging_ms` it has waited, never
// below 0, so a batch waiter counts as training after aging_ms and as
// inference after 2 * aging_ms. The queue is ordered by (effective class,
// time of enqueue, enqueue sequence): FIFO inside a class, and an aged waiter
// goes before the younger ones of the class it reached.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "broker_server/arbiter.h"

namespace acb::broker::policy {

/// 0 for inference, 1 training, 2 batch.
int class_of(Priority p);

/// The class a waiter counts as after waiting since `wait_since_us`;
/// `aging_ms` 0 disables aging.
int effective_class(Priority p, TimeUs wait_since_us, TimeUs now_us, std::uint64_t aging_ms);

/// When the waiter's effective class next improves; nullopt when it is already 0
/// or aging is disabled.
std::optional<TimeUs> next_aging_step(Priority p, TimeUs wait_since_us, TimeUs now_us,
                                      std::uint64_t aging_ms);

struct Waiter {
  ClientId client;
  Priority priority;
  TimeUs wait_since_us;
  std::uint64_t seq;  ///< enqueue order; breaks ties between equal times
  /// A revoke offender (policy_penalty.h): behind every waiter of its effective class.
  bool penalized = false;
};

/// The waiters in grant order at `now_us`.
std::vector<ClientId> order_waiters(std::vector<Waiter> waiters, TimeUs now_us,
                                    std::uint64_t aging_ms);

/// The first of order_waiters, in linear time; nullopt when there is none.
std::optional<ClientId> first_waiter(const std::vector<Waiter>& waiters, TimeUs now_us,
                                     std::uint64_t aging_ms);

}  // namespace acb::broker::policy
