// Framing of the broker protocol (docs/protocol.md): a 4-byte big-endian
// payload length followed by a JSON object with a string "op".
//
// FrameParser knows bytes, not sockets: feed it whatever arrived and ask for
// the next frame; it answers good, incomplete or bad. It is not thread-safe;
// each connection owns one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace acb::wire {

/// Largest payload accepted or sent, in bytes.
inline constexpr std::uint32_t kMaxFrameBytes = 1u << 20;
/// Largest payload a broker accepts before the connection is authenticated
/// (its hello accepted), in bytes: enough for any hello, and small enough that
/// thousands of connections that never authenticate cost little memory.
inline constexpr std::uint32_t kMaxUnauthenticatedFrameBytes = 16u << 10;
/// Size of the length prefix, in bytes.
inline constexpr std::size_t kHeaderBytes = 4;
/// The protocol versions this build speaks: kOldestProtocolVersion to
/// kProtocolVersion. Version 1 sent the token in clear in hello and is
/// refused, since accepting it would keep the token leaking to whoever holds
/// the broker's port (docs/protocol.md, "Authentication and roles").
inline constexpr int kProtocolVersion = 2;
inline constexpr int kOldestProtocolVersion = 2;

/// Returns header + payload. Throws std::length_error when the payload is
/// larger than max_payload_bytes.
std::string encode_frame(std::string_view payload, std::uint32_t max_payload_bytes = kMaxFrameBytes);

/// Serialises a message and frames it. Invalid UTF-8 in strings is replaced
/// by U+FFFD, never thrown; throws std::length_error only for a payload above
/// kMaxFrameBytes.
std::string encode_message(const nlohmann::json& message);

/// Incremental frame splitter with a checked maximum payload size.
class FrameParser {
 public:
  enum class Result { good, incomplete, bad };

  explicit FrameParser(std::uint32_t max_payload_bytes = kMaxFrameBytes);

  /// Appends received bytes.
  void feed(const char* data, std::size_t size);

  /// Extracts the next complete frame into payload. After `bad` the parser
  /// stays bad (the connection must be closed); error() says why.
  Result next(std::string& payload);

  /// Changes the maximum for frames not yet extracted (a connection that
  /// authenticated gets the full kMaxFrameBytes).
  void set_max_payload_bytes(std::uint32_t max_payload_bytes) { max_payload_bytes_ = max_payload_bytes; }
  std::uint32_t max_payload_bytes() const { return max_payload_bytes_; }
  const std::string& error() const { return error_; }
  std::size_t buffered_bytes() const { return buffer_.size() - consumed_; }

 private:
  std::uint32_t max_payload_bytes_;
  std::string buffer_;
  std::size_t consumed_ = 0;
  std::string error_;
};

/// Parses a payload into a message: a JSON object with a string "op".
/// Returns nullopt and sets error on anything else.
std::optional<nlohmann::json> parse_message(std::string_view payload, std::string& error);

}  // namespace acb::wire
