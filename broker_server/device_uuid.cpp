// GPU identities (see device_uuid.h).
#include "broker_server/device_uuid.h"

#include <cctype>

namespace acb::broker {

namespace {
std::string lower(const std::string& text) {
  std::string out = text;
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// FNV-1a, 64 bits: a stable hash that needs no library.
std::uint64_t fnv1a(const std::string& text, std::uint64_t hash) {
  for (unsigned char c : text) hash = (hash ^ c) * 0x100000001b3ULL;
  return hash;
}
}  // namespace

std::string gpu_uuid_text(const std::array<std::uint8_t, 16>& bytes) {
  static const char kDigits[] = "0123456789abcdef";
  std::string text = "GPU-";
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) text += '-';
    text += kDigits[bytes[i] >> 4];
    text += kDigits[bytes[i] & 0xf];
  }
  return text;
}

std::string synthetic_gpu_uuid(const std::string& name) {
  const std::uint64_t high = fnv1a("acb emulated device " + name, 0xcbf29ce484222325ULL);
  const std::uint64_t low = fnv1a(name + " acb emulated device", high);
  std::array<std::uint8_t, 16> bytes{};
  for (int i = 0; i < 8; ++i) {
    bytes[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(high >> (56 - 8 * i));
    bytes[static_cast<std::size_t>(8 + i)] = static_cast<std::uint8_t>(low >> (56 - 8 * i));
  }
  return gpu_uuid_text(bytes);
}

int match_gpu_uuid(const std::string& wanted, const std::vector<std::string>& uuids) {
  const std::string prefix = lower(wanted);
  if (prefix.size() <= 4) return kNoUuidMatch;  // "GPU-" alone names nothing
  int found = kNoUuidMatch;
  for (std::size_t i = 0; i < uuids.size(); ++i) {
    if (lower(uuids[i]).compare(0, prefix.size(), prefix) != 0) continue;
    if (found != kNoUuidMatch) return kAmbiguousUuid;
    found = static_cast<int>(i);
  }
  return found;
}

}  // namespace acb::broker
