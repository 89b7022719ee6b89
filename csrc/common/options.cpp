#include "common/options.h"

#include <cstdlib>

namespace acb::options {

std::string value(std::string_view name) {
  const Option& o = find(name);
  const std::string env(o.env);
  if (const char* set = std::getenv(env.c_str()); set && *set) return set;
  return std::string(o.default_value);
}

std::int64_t int_value(std::string_view name) {
  const std::string text = value(name);
  char* end = nullptr;
  const long long v = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || end == nullptr || *end != '\0') {
    throw std::invalid_argument(std::string(find(name).env) + "='" + text + "' is not an integer");
  }
  return v;
}

}  // namespace acb::options
