#include "broker_server/policy_priority.h"

namespace acb::broker::policy {

std::string describe(ClassSet classes) {
  std::string out;
  for (Priority p : {Priority::inference, Priority::training, Priority::batch}) {
    if ((classes & class_bit(p)) == 0) continue;
    if (!out.empty()) out += ", ";
    out += to_string(p);
  }
  return out.empty() ? "none" : out;
}

ClassSet allowed_classes(const PriorityRules& rules, const Claimant& who, std::uint32_t broker_uid) {
  if (!who.uid) return rules.default_classes;
  if (*who.uid == broker_uid) return kAllClasses;
  ClassSet allowed = rules.default_classes;
  if (auto it = rules.uids.find(*who.uid); it != rules.uids.end()) allowed |= it->second;
  for (std::uint32_t gid : who.gids)
    if (auto it = rules.gids.find(gid); it != rules.gids.end()) allowed |= it->second;
  return allowed;
}

std::string priority_refusal(const PriorityRules& rules, const Claimant& who, std::uint32_t broker_uid,
                             Priority wanted) {
  const ClassSet allowed = allowed_classes(rules, who, broker_uid);
  if ((allowed & class_bit(wanted)) != 0) return {};
  const std::string user = who.uid ? "uid " + std::to_string(*who.uid) : "a peer of unknown uid";
  return std::string("priority \"") + to_string(wanted) + "\" is not allowed for " + user + ", which may claim " +
         describe(allowed) + "; the broker's operator allows more with \"priority_classes\" in its --config file" +
         (who.uid ? " (e.g. {\"uid:" + std::to_string(*who.uid) + "\": [\"" + to_string(wanted) + "\"]})" : "") +
         ", see docs/operations.md";
}

}  // namespace acb::broker::policy
