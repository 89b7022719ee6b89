#include "broker_server/descriptor_limit.h"

#include <sys/resource.h>

#include <algorithm>

namespace acb::broker {

std::optional<std::size_t> connections_within_descriptor_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return std::nullopt;
  const auto soft = static_cast<std::size_t>(limit.rlim_cur);
  return soft > kReservedDescriptors + 1 ? soft - kReservedDescriptors : 1;
}

}  // namespace acb::broker
