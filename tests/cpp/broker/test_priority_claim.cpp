// A claim checked against "gid:N" entries of priority_classes, with the peer's
// groups read from this machine's user database (priority_claim.h).
#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <optional>
#include <string>
#include <vector>

#include "acb_catch.hpp"
#include "broker_server/config_priority.h"
#include "broker_server/priority_claim.h"

using namespace acb::broker;
using nlohmann::json;

namespace {

// A user of this machine other than the broker's own (whose uid may claim every
// class, so it would prove nothing), with its primary group; nullopt if none.
struct OtherUser { std::uint32_t uid; std::uint32_t gid; std::string name; };
std::optional<OtherUser> other_user() {
  ::setpwent();
  std::optional<OtherUser> found;
  while (const passwd* entry = ::getpwent()) {
    if (entry->pw_uid != ::geteuid() && entry->pw_gid != ::getegid()) {
      found = OtherUser{entry->pw_uid, entry->pw_gid, entry->pw_name};
      break;
    }
  }
  ::endpwent();
  return found;
}

}  // namespace

TEST_CASE("a gid:N entry lets a user of that group claim its classes; other users keep the default") {
  const auto user = other_user();
  if (!user) {
    WARN("skipped: no user other than the broker's own in this machine's user database");
    return;
  }
  INFO("user " << user->name << " uid " << user->uid << " gid " << user->gid);
  const auto rules = priority_rules_from_json({{"gid:" + std::to_string(user->gid), {"inference"}}});
  CHECK(priority_claim_refusal(rules, user->uid, Priority::inference).empty());
  CHECK(priority_claim_refusal(rules, user->uid, Priority::training).empty());

  // A group the user is not in allows it nothing more.
  const auto elsewhere = priority_rules_from_json({{"gid:" + std::to_string(user->gid + 100000), {"inference"}}});
  const std::string why = priority_claim_refusal(elsewhere, user->uid, Priority::inference);
  CHECK(why.find("\"inference\"") != std::string::npos);
  CHECK(why.find("uid " + std::to_string(user->uid)) != std::string::npos);

  // A uid without a user entry has no groups: the default only.
  const std::uint32_t unknown_uid = 3'999'999'999u;
  REQUIRE(::getpwuid(unknown_uid) == nullptr);
  CHECK_FALSE(priority_claim_refusal(rules, unknown_uid, Priority::inference).empty());
  CHECK(priority_claim_refusal(rules, unknown_uid, Priority::batch).empty());
}
