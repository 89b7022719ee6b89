// The options table (csrc/common/options.json), compiled in.
//
// One table for C++ and Python: name, ACB_* environment variable, default and
// doc. CMake generates acb_options_table.h from the JSON at configure time,
// so C++ and Python can never disagree about a default. Lookups are by name;
// an unknown name is a programming error (std::out_of_range naming it).
#pragma once

#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace acb::options {

struct Option {
  std::string_view name;
  std::string_view env;
  std::string_view type;          ///< "str" | "int" | "float" | "bool"
  std::string_view default_value;
  std::string_view doc;
};

}  // namespace acb::options

#include "acb_options_table.h"  // generated: inline constexpr std::array<Option, N> kOptions

namespace acb::options {

/// The entry named `name`. Throws std::out_of_range for an unknown name.
constexpr const Option& find(std::string_view name) {
  for (const auto& o : kOptions) {
    if (o.name == name) return o;
  }
  throw std::out_of_range("acb option not in csrc/common/options.json");
}

/// The option's value: its environment variable when set and not empty, else the default.
std::string value(std::string_view name);
/// The value as an integer. Throws std::invalid_argument naming the variable and its text.
std::int64_t int_value(std::string_view name);

}  // namespace acb::options
