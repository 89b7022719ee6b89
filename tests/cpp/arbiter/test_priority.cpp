// Which priority classes a user may claim (policy_priority.h).
#include "acb_catch.hpp"
#include "broker_server/policy_priority.h"

using namespace acb::broker;
using namespace acb::broker::policy;

namespace {
constexpr std::uint32_t kBroker = 1000;
constexpr ClassSet kDefault = class_bit(Priority::training) | class_bit(Priority::batch);
}  // namespace

TEST_CASE("by default any user may claim training and batch, not inference", "[arbiter][priority]") {
  const PriorityRules rules;
  const Claimant other{2000, {}};
  CHECK(allowed_classes(rules, other, kBroker) == kDefault);
  CHECK(priority_refusal(rules, other, kBroker, Priority::training).empty());
  CHECK(priority_refusal(rules, other, kBroker, Priority::batch).empty());
  const std::string why = priority_refusal(rules, other, kBroker, Priority::inference);
  CHECK(why.find("\"inference\"") != std::string::npos);
  CHECK(why.find("uid 2000") != std::string::npos);
  CHECK(why.find("training, batch") != std::string::npos);  // what it may claim
  CHECK(why.find("priority_classes") != std::string::npos);  // how the operator allows more
  CHECK(why.find("\"uid:2000\"") != std::string::npos);
}

TEST_CASE("the broker's own uid may claim every class; an unknown peer gets the default",
          "[arbiter][priority]") {
  PriorityRules rules;
  rules.default_classes = class_bit(Priority::batch);
  CHECK(allowed_classes(rules, {kBroker, {}}, kBroker) == kAllClasses);
  CHECK(priority_refusal(rules, {kBroker, {}}, kBroker, Priority::inference).empty());
  CHECK(allowed_classes(rules, {std::nullopt, {}}, kBroker) == class_bit(Priority::batch));
  CHECK(priority_refusal(rules, {std::nullopt, {}}, kBroker, Priority::training).find("unknown uid") !=
        std::string::npos);
}

TEST_CASE("the operator's entries for a uid or a group add classes", "[arbiter][priority]") {
  PriorityRules rules;
  rules.uids[2000] = class_bit(Priority::inference);
  rules.gids[44] = class_bit(Priority::inference);
  CHECK(allowed_classes(rules, {2000, {}}, kBroker) == kAllClasses);
  CHECK(priority_refusal(rules, {2000, {}}, kBroker, Priority::inference).empty());
  CHECK_FALSE(priority_refusal(rules, {2001, {100}}, kBroker, Priority::inference).empty());
  CHECK(priority_refusal(rules, {2001, {100, 44}}, kBroker, Priority::inference).empty());
  CHECK(describe(0) == "none");
  CHECK(describe(kAllClasses) == "inference, training, batch");
}
