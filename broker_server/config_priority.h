// The config member "priority_classes": which classes each uid or group may
// claim (policy_priority.h, docs/operations.md "Priority policy").
//
//   "priority_classes": {"default": ["training", "batch"],
//                        "uid:1000": ["inference"], "gid:44": ["inference"]}
//
// Every key is "default", "uid:N" or "gid:N" (numbers, so that checking a
// claim never waits on a user database); every value a list of class names.
//
// Thread-safety: pure function.
#pragma once

#include <nlohmann/json.hpp>

#include "broker_server/policy_priority.h"

namespace acb::broker {

/// Throws ConfigError (config.h) naming the key or value that is wrong.
policy::PriorityRules priority_rules_from_json(const nlohmann::json& member);

}  // namespace acb::broker
