#include "broker_server/priority_claim.h"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <vector>

namespace acb::broker {

namespace {

// The uid's primary and supplementary groups; empty when it has no user entry.
std::vector<std::uint32_t> groups_of(std::uint32_t uid) {
  passwd entry{};
  passwd* found = nullptr;
  std::vector<char> buffer(16384);
  if (::getpwuid_r(uid, &entry, buffer.data(), buffer.size(), &found) != 0 || found == nullptr) return {};
  int count = 64;
  std::vector<gid_t> gids(static_cast<std::size_t>(count));
  if (::getgrouplist(entry.pw_name, entry.pw_gid, gids.data(), &count) < 0) {
    gids.resize(static_cast<std::size_t>(count));  // count now says how many there are
    if (::getgrouplist(entry.pw_name, entry.pw_gid, gids.data(), &count) < 0) return {entry.pw_gid};
  }
  return {gids.begin(), gids.begin() + count};
}

}  // namespace

std::string priority_claim_refusal(const policy::PriorityRules& rules, std::optional<std::uint32_t> uid,
                                   Priority wanted) {
  policy::Claimant who{uid, {}};
  const auto broker_uid = static_cast<std::uint32_t>(::geteuid());
  std::string why = policy::priority_refusal(rules, who, broker_uid, wanted);
  if (why.empty() || rules.gids.empty() || !uid) return why;
  who.gids = groups_of(*uid);
  return policy::priority_refusal(rules, who, broker_uid, wanted);
}

}  // namespace acb::broker
