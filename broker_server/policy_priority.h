// Which priority classes a user may claim.
//
// Priority is declared by the client, so without a rule any job could say
// "inference" and preempt everyone. The operator's rules (the config member
// "priority_classes", docs/operations.md) say which classes each uid or group
// may claim; everyone gets the default (training and batch unless the rules
// say otherwise) plus what their uid's entry and their groups' entries add.
// The broker's own uid may claim every class: it is the operator, or the user
// whose job started an embedded broker for itself. A peer whose uid is not
// known (not on this host) gets the default only.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "broker_server/arbiter.h"

namespace acb::broker::policy {

/// A set of priority classes, one bit per Priority.
using ClassSet = std::uint8_t;
inline constexpr ClassSet class_bit(Priority p) { return static_cast<ClassSet>(1u << static_cast<unsigned>(p)); }
inline constexpr ClassSet kAllClasses = class_bit(Priority::inference) | class_bit(Priority::training) |
                                        class_bit(Priority::batch);
/// "inference, training, batch" (best first); "none" when empty.
std::string describe(ClassSet classes);

struct PriorityRules {
  ClassSet default_classes = class_bit(Priority::training) | class_bit(Priority::batch);
  std::map<std::uint32_t, ClassSet> uids;  ///< added to the default for that uid
  std::map<std::uint32_t, ClassSet> gids;  ///< added for every member of that group
};

/// Who claims a class: the peer's uid (nullopt: unknown) and its groups
/// (primary and supplementary; only looked at when the rules name groups).
struct Claimant {
  std::optional<std::uint32_t> uid;
  std::vector<std::uint32_t> gids;
};

/// The classes `who` may claim from a broker running as `broker_uid`.
ClassSet allowed_classes(const PriorityRules& rules, const Claimant& who, std::uint32_t broker_uid);

/// Empty when `who` may claim `wanted`; otherwise why not, the classes it may
/// claim, and how the operator allows more.
std::string priority_refusal(const PriorityRules& rules, const Claimant& who, std::uint32_t broker_uid,
                             Priority wanted);

}  // namespace acb::broker::policy
