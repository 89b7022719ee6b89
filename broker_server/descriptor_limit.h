// The broker's descriptor budget: how many connections fit under
// RLIMIT_NOFILE with room left for everything else.
//
// A broker that lets connections take its last descriptor cannot accept the
// next one even to refuse it, cannot open a netlink socket to learn a peer's
// uid, nor serve the metrics endpoint; accept then fails at once, again and
// again. So the server caps max_connections at the soft limit minus
// kReservedDescriptors: connections beyond that are refused with an error
// frame while descriptors remain to do it. (accept_backoff.h covers the
// descriptors that run out anyway, e.g. the system-wide ENFILE.)
//
// Thread-safety: pure functions (getrlimit).
#pragma once

#include <cstddef>
#include <optional>

namespace acb::broker {

/// Descriptors kept out of the connections' reach: listeners, the event
/// loop's own, netlink lookups, metrics requests, log and config files.
inline constexpr std::size_t kReservedDescriptors = 32;

/// RLIMIT_NOFILE's soft limit minus kReservedDescriptors (at least 1), or
/// nullopt when there is no finite limit.
std::optional<std::size_t> connections_within_descriptor_limit();

}  // namespace acb::broker
