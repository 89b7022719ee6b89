#include "frame.h"

#include <stdexcept>

namespace acb::wire {

std::string encode_frame(std::string_view payload, std::uint32_t max_payload_bytes) {
  if (payload.size() > max_payload_bytes) {
    throw std::length_error("acb frame payload of " + std::to_string(payload.size()) +
                            " bytes exceeds the maximum of " + std::to_string(max_payload_bytes));
  }
  const auto size = static_cast<std::uint32_t>(payload.size());
  std::string frame;
  frame.reserve(kHeaderBytes + payload.size());
  frame.push_back(static_cast<char>((size >> 24) & 0xff));
  frame.push_back(static_cast<char>((size >> 16) & 0xff));
  frame.push_back(static_cast<char>((size >> 8) & 0xff));
  frame.push_back(static_cast<char>(size & 0xff));
  frame.append(payload);
  return frame;
}

std::string encode_message(const nlohmann::json& message) {
  // Strings can hold what a peer sent (names, echoed ops): bytes that are not
  // UTF-8 become U+FFFD instead of an exception, so no input makes encoding throw.
  return encode_frame(message.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

FrameParser::FrameParser(std::uint32_t max_payload_bytes) : max_payload_bytes_(max_payload_bytes) {}

void FrameParser::feed(const char* data, std::size_t size) {
  // Compact lazily so that a stream of small frames costs no quadratic copying.
  if (consumed_ > 0 && consumed_ >= buffer_.size() / 2) {
    buffer_.erase(0, consumed_);
    consumed_ = 0;
  }
  buffer_.append(data, size);
}

FrameParser::Result FrameParser::next(std::string& payload) {
  if (!error_.empty()) return Result::bad;
  const std::size_t available = buffer_.size() - consumed_;
  if (available < kHeaderBytes) return Result::incomplete;
  const auto* p = reinterpret_cast<const unsigned char*>(buffer_.data() + consumed_);
  const std::uint32_t size = (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) |
                             (std::uint32_t{p[2]} << 8) | std::uint32_t{p[3]};
  if (size > max_payload_bytes_) {
    error_ = "frame of " + std::to_string(size) + " bytes exceeds the maximum of " +
             std::to_string(max_payload_bytes_);
    return Result::bad;
  }
  if (available - kHeaderBytes < size) return Result::incomplete;
  payload.assign(buffer_, consumed_ + kHeaderBytes, size);
  consumed_ += kHeaderBytes + size;
  return Result::good;
}

std::optional<nlohmann::json> parse_message(std::string_view payload, std::string& error) {
  auto message = nlohmann::json::parse(payload, nullptr, /*allow_exceptions=*/false);
  if (message.is_discarded()) {
    error = "payload is not valid JSON";
    return std::nullopt;
  }
  if (!message.is_object()) {
    error = "payload is not a JSON object";
    return std::nullopt;
  }
  auto op = message.find("op");
  if (op == message.end() || !op->is_string()) {
    error = "message has no string member \"op\"";
    return std::nullopt;
  }
  return message;
}

}  // namespace acb::wire
