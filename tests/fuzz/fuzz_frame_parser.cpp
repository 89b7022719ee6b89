// Fuzzes what a broker connection does with the bytes it receives: split
// them into frames (FrameParser, small maximum so that the limit is hit),
// parse each payload (parse_message) and validate it (validate_message).
// Invariants checked: no crash or sanitizer report; a good frame is never
// above the maximum; after `bad` the parser stays bad; validation either
// yields a message or throws ProtocolError, nothing else.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "broker_server/message.h"
#include "common/frame.h"

namespace {
constexpr std::uint32_t kFuzzMaxFrameBytes = 4096;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  // The first byte picks how the bytes arrive: 1 to 256 bytes per read.
  const std::size_t chunk = std::size_t{data[0]} + 1;
  ++data;
  --size;

  acb::wire::FrameParser parser(kFuzzMaxFrameBytes);
  std::string payload;
  bool bad = false;
  for (std::size_t offset = 0; offset < size && !bad; offset += chunk) {
    const std::size_t n = std::min(chunk, size - offset);
    parser.feed(reinterpret_cast<const char*>(data + offset), n);
    for (;;) {
      const auto result = parser.next(payload);
      if (result == acb::wire::FrameParser::Result::incomplete) break;
      if (result == acb::wire::FrameParser::Result::bad) {
        if (parser.error().empty()) std::abort();
        if (parser.next(payload) != acb::wire::FrameParser::Result::bad) std::abort();
        bad = true;
        break;
      }
      if (payload.size() > kFuzzMaxFrameBytes) std::abort();
      std::string error;
      auto message = acb::wire::parse_message(payload, error);
      if (!message) {
        if (error.empty()) std::abort();
        continue;
      }
      try {
        const auto validated = acb::broker::validate_message(*message);
        (void)acb::broker::op_name(validated);
        (void)acb::broker::seq_of(validated);
        if (const auto* hello = std::get_if<acb::broker::HelloMessage>(&validated)) {
          (void)acb::broker::negotiate_version(hello->versions);
        }
      } catch (const acb::broker::ProtocolError&) {
        // expected for bad members
      }
    }
  }
  return 0;
}
