// Peer text: what a peer sent, made safe to repeat in a reply or a log line.
//
// Anything a peer controls (an op name, a hello name, a token-less frame's
// members, a reason the arbiter built from them) may be huge, may be invalid
// UTF-8 and may hold control characters. Two helpers, one for each place such
// text goes:
//   - bounded_text() for text that goes back to a peer inside a JSON frame:
//     at most max_bytes, cut at a UTF-8 character boundary, "..." appended
//     when cut. It never splits a character, so the cut itself cannot turn
//     valid UTF-8 into invalid (wire::encode_message replaces what a peer sent
//     invalid, so encoding never throws either way).
//   - log_text() for every log line that contains peer text: bounded the same
//     way, control characters and bytes that are not valid UTF-8 escaped as
//     \n, \t, \xNN, so that one line in the log is one event and a peer can
//     neither forge lines nor send escape sequences to the operator's terminal.
//
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace acb::broker {

/// Most bytes of peer text repeated in an error reply.
inline constexpr std::size_t kMaxEchoedPeerBytes = 64;
/// Most bytes of peer text (before escaping) in one log line.
inline constexpr std::size_t kMaxLoggedPeerBytes = 512;

/// The longest prefix of `text` of at most `max_bytes` that ends on a UTF-8
/// character boundary (a lead byte is never separated from its continuation
/// bytes), plus "..." when anything was cut.
std::string bounded_text(std::string_view text, std::size_t max_bytes = kMaxEchoedPeerBytes);

/// `text` bounded like bounded_text(), with control characters (below 0x20,
/// 0x7f) and bytes that are not part of valid UTF-8 escaped (\n, \r, \t, \\,
/// \xNN): printable, one line, never an escape sequence.
std::string log_text(std::string_view text, std::size_t max_bytes = kMaxLoggedPeerBytes);

}  // namespace acb::broker
