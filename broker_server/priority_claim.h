// A claimed priority class checked against the operator's rules for the
// peer behind a connection: policy_priority.h plus the I/O it needs, the
// broker's own uid and, only when the rules name groups and the uid alone is
// not enough, the peer's groups from the user database (getgrouplist; with
// a network user database that lookup may take a moment, on the event loop).
//
// Thread-safety: as getpwuid_r and getgrouplist (called from the one server thread).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "broker_server/policy_priority.h"

namespace acb::broker {

/// Empty when the peer of uid `uid` (nullopt: unknown) may claim `wanted`;
/// otherwise the error it is answered with.
std::string priority_claim_refusal(const policy::PriorityRules& rules, std::optional<std::uint32_t> uid,
                                   Priority wanted);

}  // namespace acb::broker
