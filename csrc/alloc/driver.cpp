// The driver contract's free functions that belong to no implementation:
// parsing the emulated device's specification (ACB_EMULATED_DEVICE), and the
// default of Driver::copy_batch_async (one copy call per range).
#include "alloc/driver.h"

#include <cctype>
#include <cstdlib>
#include <stdexcept>
#include <utility>

#include "alloc/emulated_driver.h"
#include "common/byte_size.h"

namespace acb::alloc {

namespace {

/// A positive byte size (common/byte_size.h), named with the spec it came from.
std::size_t parse_capacity(const std::string& text, const std::string& spec) {
  std::uint64_t bytes = 0;
  try {
    bytes = parse_byte_size(text);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument("emulated device \"" + spec + "\": capacity " + e.what());
  }
  if (bytes == 0) throw std::invalid_argument("emulated device \"" + spec + "\": capacity \"" + text + "\" is zero");
  return static_cast<std::size_t>(bytes);
}

}  // namespace

void Driver::copy_batch_async(const CopyRange* ranges, std::size_t count, CopyDirection direction,
                              StreamHandle stream) {
  for (std::size_t i = 0; i < count; ++i) {
    const CopyRange& r = ranges[i];
    if (direction == CopyDirection::to_host)
      copy_to_host_async(r.host, r.device, r.bytes, stream);
    else
      copy_to_device_async(r.device, r.host, r.bytes, stream);
  }
}

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
