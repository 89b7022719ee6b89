// Fixed-size byte strings as lowercase hex: how the handshake's nonces and
// proofs travel in JSON (docs/protocol.md, "Authentication and roles").
//
// One canonical spelling: exactly 2 * N characters from [0-9a-f]. Anything
// else (upper case, spaces, another length) is not a valid value, so the
// broker and every client agree on what a member means. No crypto here: the
// message validator and the fuzzer use it without OpenSSL.
//
// Thread-safety: pure functions.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace acb::wire {

/// The size of every nonce and proof of the handshake, in bytes.
inline constexpr std::size_t kHandshakeBytes = 32;
using Bytes32 = std::array<std::uint8_t, kHandshakeBytes>;

/// 64 lowercase hex digits.
std::string to_hex(const Bytes32& bytes);
/// The bytes of exactly 64 lowercase hex digits; nullopt for anything else.
std::optional<Bytes32> parse_hex32(std::string_view text);

}  // namespace acb::wire
