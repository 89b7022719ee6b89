// The driver contract's free functions that belong to no implementation:
// parsing the emulated device's specification (ACB_EMULATED_DEVICE).
#include "alloc/driver.h"

#include <cctype>
#include <cstdlib>
#include <limits>
#include <stdexcept>
#include <utility>

#include "alloc/emulated_driver.h"

namespace acb::alloc {

namespace {

/// "512MiB", "2GiB", "1048576", "64K": a positive byte count with an optional binary unit.
std::size_t parse_capacity(const std::string& text, const std::string& spec) {
  const auto fail = [&](const std::string& why) {
    return std::invalid_argument("emulated device \"" + spec + "\": capacity \"" + text + "\" " +
                                 why + " (expected a byte count like 1073741824, 512MiB or 2GiB)");
  };
  std::size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) ++digits;
  if (digits == 0) throw fail("does not start with a number");
  const std::string unit = text.substr(digits);
  static const std::pair<const char*, int> kUnits[] = {
      {"", 0},     {"B", 0},  {"K", 10},   {"KiB", 10}, {"M", 20},
      {"MiB", 20}, {"G", 30}, {"GiB", 30}, {"T", 40},   {"TiB", 40}};
  int shift = -1;
  for (const auto& [name, bits] : kUnits)
    if (unit == name) shift = bits;
  if (shift < 0) throw fail("has an unknown unit \"" + unit + "\"");
  std::size_t value = 0;
  for (std::size_t i = 0; i < digits; ++i) {
    const std::size_t digit = static_cast<std::size_t>(text[i] - '0');
    if (value > (std::numeric_limits<std::size_t>::max() - digit) / 10) throw fail("is too large");
    value = value * 10 + digit;
  }
  if (value > (std::numeric_limits<std::size_t>::max() >> shift)) throw fail("is too large");
  value <<= shift;
  if (value == 0) throw fail("is zero");
  return value;
}

}  // namespace

EmulatedDeviceOptions parse_emulated_device(const std::string& spec) {
  EmulatedDeviceOptions options;
  const auto colon = spec.find(':');
  options.name = spec.substr(0, colon);
  if (options.name.empty() || options.name.size() > 200)
    throw std::invalid_argument(
        "emulated device \"" + spec +
        "\": the name must have 1 to 200 characters (format name[:capacity])");
  for (char c : options.name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '.')
      throw std::invalid_argument("emulated device \"" + spec +
                                  "\": the name may hold only letters, digits, "
                                  "'_', '-' and '.' (it names /dev/shm/acb-emulated-<name>)");
  if (colon != std::string::npos)
    options.capacity_bytes = parse_capacity(spec.substr(colon + 1), spec);
  return options;
}

EmulatedDeviceOptions emulated_device_from_env() {
  const char* spec = std::getenv("ACB_EMULATED_DEVICE");
  if (spec == nullptr || *spec == '\0') return EmulatedDeviceOptions{};
  return parse_emulated_device(spec);
}

}  // namespace acb::alloc
