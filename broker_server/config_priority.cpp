#include "broker_server/config_priority.h"

#include <cctype>
#include <limits>
#include <string>

#include "broker_server/config.h"

namespace acb::broker {

namespace {

using nlohmann::json;

[[noreturn]] void bad(const std::string& what) {
  throw ConfigError("config member \"priority_classes\": " + what +
                    " (expected {\"default\"|\"uid:N\"|\"gid:N\": [\"inference\"|\"training\"|\"batch\", ...]})");
}

std::uint32_t id_of(const std::string& key, std::size_t prefix) {
  const std::string digits = key.substr(prefix);
  if (digits.empty() || digits.size() > 10) bad("key \"" + key + "\" has no valid number");
  std::uint64_t value = 0;
  for (char c : digits) {
    if (!std::isdigit(static_cast<unsigned char>(c))) bad("key \"" + key + "\" has no valid number");
    value = value * 10 + static_cast<std::uint64_t>(c - '0');
  }
  if (value > std::numeric_limits<std::uint32_t>::max()) bad("key \"" + key + "\" is out of range");
  return static_cast<std::uint32_t>(value);
}

policy::ClassSet classes_of(const std::string& key, const json& value) {
  if (!value.is_array()) bad("\"" + key + "\" must be a list of classes");
  policy::ClassSet classes = 0;
  for (const auto& entry : value) {
    const auto p = entry.is_string() ? parse_priority(entry.get<std::string>()) : std::nullopt;
    if (!p) bad("\"" + key + "\" lists " + entry.dump() + ", which is not a class");
    classes |= policy::class_bit(*p);
  }
  return classes;
}

}  // namespace

policy::PriorityRules priority_rules_from_json(const json& member) {
  policy::PriorityRules rules;
  if (member.is_null()) return rules;
  if (!member.is_object()) bad("must be an object");
  for (const auto& [key, value] : member.items()) {
    if (key == "default") {
      rules.default_classes = classes_of(key, value);
    } else if (key.rfind("uid:", 0) == 0) {
      rules.uids[id_of(key, 4)] = classes_of(key, value);
    } else if (key.rfind("gid:", 0) == 0) {
      rules.gids[id_of(key, 4)] = classes_of(key, value);
    } else {
      bad("unknown key \"" + key + "\"");
    }
  }
  return rules;
}

}  // namespace acb::broker
